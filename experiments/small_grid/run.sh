#!/usr/bin/env bash
# The small-scale ablation grid on all-MiniLM-L6-v2 (experiments/README.md), as it was run: the mined
# SciFact train file, then every row (train, then evaluate on SciFact, STSBenchmark and Banking77),
# then the report. On 2 CPU cores, one torch thread per process: the rows ran in two lanes, one of them
# after the decoder grid (LANE=1 / LANE=2; no LANE runs all rows in one).
set -euo pipefail
cd "$(dirname "$0")/../.."
export EMBEDFORGE_EVAL_DATA=${EMBEDFORGE_EVAL_DATA:-../shared/data/eval}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=${WANDB_MODE:-offline} HF_HUB_OFFLINE=1

[[ -f data/scifact_train_mined.jsonl ]] || .venv/bin/embedforge-mine input="$EMBEDFORGE_EVAL_DATA/SciFact" split=train \
  out=data/scifact_train_mined.jsonl query.mode=none \
  'query.instruction="Given a scientific claim, retrieve documents that support or refute the claim"'

# The seeded rows (#17; PART=seeds runs only these): the rows whose direction experiments/README.md
# stated, under seeds 1, 2 and 3 (records under <row>/seed<s>/), evaluated on STSBenchmark only. On this
# 2-core machine, shared with other work, one evaluation took SciFact 557 s and STSBenchmark 29 s (Banking77:
# 387 s in an earlier run), against about 250 s of training: 3 seeds x 5 rows fit in a session only so.
if [[ ${PART:-} == seeds ]]; then
  TASKS='[STSBenchmark]' EVAL_LENGTH=256 SEEDS=${SEEDS:-1 2 3} \
    experiments/run_grid.sh small_grid ${SEED_ROWS:-default no_instruction pooling_last_token lora_r8 lora_r32}
  # their report: the seeds pooled per row, 95% paired-bootstrap intervals on each delta vs default; the
  # untrained rows beside them (base_instructions keeps item scores, base predates them)
  seeded=(${SEED_ROWS:-default no_instruction pooling_last_token lora_r8 lora_r32})
  runs=$(printf 'experiments/small_grid/records/%s/seed*/*,' "${seeded[@]}")
  .venv/bin/embedforge-report "runs=[${runs}experiments/small_grid/records/base*/evaluate]" \
    baseline=default "data_dirs=[$EMBEDFORGE_EVAL_DATA]" output_dir=experiments/small_grid/seeds \
    'title="Small grid, seeded rows (STSBenchmark; seeds 1-3), beside the paper"'
  exit 0
fi

# The matched pre-training comparison (#17; PART=pretrain): stage 1 (16 steps of SciFact title -> body
# pairs) then the default recipe (37 steps), against the default recipe for 53 steps; seeds 1-3,
# evaluated on STSBenchmark only (SciFact, whose corpus stage 1 reads, is not evaluated).
if [[ ${PART:-} == pretrain ]]; then
  TASKS='[STSBenchmark]' EVAL_LENGTH=256 SEEDS=${SEEDS:-1 2 3} TRAIN_ONLY=pretrain_matched \
    experiments/run_grid.sh small_grid default_matched pretrain_matched pretrain_matched_then_default
  .venv/bin/embedforge-report 'runs=[experiments/small_grid/records/default_matched/seed*/*,experiments/small_grid/records/pretrain_matched_then_default/seed*/*]' \
    baseline=default_matched "data_dirs=[$EMBEDFORGE_EVAL_DATA]" output_dir=experiments/small_grid/pretrain_matched \
    'title="Small grid, pre-training at equal steps (STSBenchmark; seeds 1-3), beside the paper"'
  exit 0
fi

lane1=(default base no_instruction task_type_prefix no_hard_negatives lora_r8 pooling_last_token lora_r32)
lane2=(temperature_005 pretrain pretrain_then_default)
case ${LANE:-} in
  1) rows=("${lane1[@]}") ;;
  2) rows=("${lane2[@]}") ;;
  *) rows=("${lane1[@]}" "${lane2[@]}") ;;
esac
TASKS='[SciFact,STSBenchmark,Banking77Classification]' EVAL_LENGTH=256 TRAIN_ONLY=pretrain \
DECONTAM_TRAIN='[data/demo/train/*.jsonl,data/scifact_train_mined.jsonl]' \
BASE_ARGS='model=minilm-l6 pooling=mean lora=none instructions.mode=none' \
  experiments/run_grid.sh small_grid "${rows[@]}"

# A diagnostic row: the untrained model evaluated with the instructions (STS and Banking77), to tell the
# effect of instructions at evaluation from the effect of training with them.
[[ ${LANE:-1} == 1 ]] && TASKS='[STSBenchmark,Banking77Classification]' EVAL_LENGTH=256 \
  BASE_ARGS='model=minilm-l6 pooling=mean lora=none instructions.mode=instruction' \
  experiments/run_grid.sh small_grid base_instructions

[[ -n ${LANE:-} ]] || .venv/bin/embedforge-report 'runs=[experiments/small_grid/records/*/train,experiments/small_grid/records/*/evaluate]' baseline=default \
  "data_dirs=[$EMBEDFORGE_EVAL_DATA]" output_dir=experiments/small_grid 'title="Small grid: all-MiniLM-L6-v2 + LoRA, beside the paper"' \
  'decontam=[experiments/small_grid/records/decontam.json]'
