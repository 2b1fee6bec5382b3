#!/usr/bin/env bash
# The decoder grid on SmolLM2-135M-Instruct (experiments/README.md), as it was run: every row (train,
# then evaluate), then the report. On 2 CPU cores with the small grid beside it (one torch thread each).
# The base row was evaluated on STSBenchmark and Banking77; the trained rows on STSBenchmark only:
# Banking77 takes about 14 min per SmolLM2 row on one thread, more than the session could spend on six.
# The held-out demo records' retrieval metrics (validation before/after) are in each train record.
# The pre-training chain (pretrain: 512 SciFact title -> body pairs, then pretrain_then_default) ran last,
# alone on the machine with OMP_NUM_THREADS=2.
set -euo pipefail
cd "$(dirname "$0")/../.."
export EMBEDFORGE_EVAL_DATA=${EMBEDFORGE_EVAL_DATA:-../shared/data/eval}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=${WANDB_MODE:-offline} HF_HUB_OFFLINE=1

TASKS='[STSBenchmark,Banking77Classification]' EVAL_LENGTH=128 BASE_ARGS='model=smollm2-135m pooling=last_token lora=none' \
  DECONTAM_TRAIN='[data/demo/train/*.jsonl]' \
  experiments/run_grid.sh decoder_grid base
TASKS='[STSBenchmark]' EVAL_LENGTH=128 \
  experiments/run_grid.sh decoder_grid default pooling_mean no_instruction lora_r8
# The untrained model without instructions (#17): separates the prompt's effect at evaluation from training's.
TASKS='[STSBenchmark]' EVAL_LENGTH=128 BASE_ARGS='model=smollm2-135m pooling=last_token lora=none instructions.mode=none' \
  experiments/run_grid.sh decoder_grid base_no_instruction
TASKS='[STSBenchmark]' EVAL_LENGTH=128 TRAIN_ONLY=pretrain OMP_NUM_THREADS=2 \
  experiments/run_grid.sh decoder_grid pretrain pretrain_then_default

.venv/bin/embedforge-report 'runs=[experiments/decoder_grid/records/*/*]' baseline=default \
  "data_dirs=[$EMBEDFORGE_EVAL_DATA]" output_dir=experiments/decoder_grid 'title="Decoder grid: SmolLM2-135M + LoRA, beside the paper"' \
  'decontam=[experiments/decoder_grid/records/decontam.json]'
