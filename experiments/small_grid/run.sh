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
# states, under seeds 1, 2 and 3 (records under <row>/seed<s>/), evaluated on SciFact and STSBenchmark.
# Banking77 is left out of these: on this CPU it took 387 s of an evaluation's 477 s (STSBenchmark 90 s),
# which 3 seeds x 5 rows could not afford in one session.
if [[ ${PART:-} == seeds ]]; then
  TASKS='[SciFact,STSBenchmark]' EVAL_LENGTH=256 SEEDS=${SEEDS:-1 2 3} \
    experiments/run_grid.sh small_grid ${SEED_ROWS:-default no_instruction pooling_last_token lora_r8 lora_r32}
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

[[ -n ${LANE:-} ]] || .venv/bin/embedforge-report 'runs=[experiments/small_grid/records/*/*]' baseline=default \
  "data_dirs=[$EMBEDFORGE_EVAL_DATA]" output_dir=experiments/small_grid 'title="Small grid: all-MiniLM-L6-v2 + LoRA, beside the paper"' \
  'decontam=[experiments/small_grid/records/decontam.json]'
