#!/usr/bin/env bash
# The decoder learning curve (#17; experiments/README.md): SmolLM2-135M-Instruct trained for 150 steps
# with the paper's recipe (conf/experiment/decoder_curve/paper_recipe.yaml), scored every 30 steps on
# STSBenchmark, a fixed 1,500-pair sample of SICK-R and the held-out demo records, beside the untrained
# model under each pooling. Everything at 64 tokens (the training length). On 2 CPU cores, alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
export EMBEDFORGE_EVAL_DATA=${EMBEDFORGE_EVAL_DATA:-../shared/data/eval}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} WANDB_MODE=${WANDB_MODE:-offline} HF_HUB_OFFLINE=1

[[ -f data/scifact_train_mined.jsonl ]] || .venv/bin/embedforge-mine input="$EMBEDFORGE_EVAL_DATA/SciFact" split=train \
  out=data/scifact_train_mined.jsonl query.mode=none \
  'query.instruction="Given a scientific claim, retrieve documents that support or refute the claim"'

# The trained run; its record holds the curve (mteb_eval.history, val_history). Its encoder is evaluated
# once more after training, keeping item scores for the paired bootstrap against the untrained rows.
TASKS='[STSBenchmark,SICK-R]' EVAL_LENGTH=64 EVAL_ARGS='eval.subsample={SICK-R:1500}' \
  DECONTAM_TRAIN='[data/demo/train/*.jsonl,data/scifact_train_mined.jsonl]' \
  experiments/run_grid.sh decoder_curve paper_recipe
# The untrained model under each pooling: STSBenchmark and the SICK-R sample ...
export TASKS='[STSBenchmark,SICK-R]' EVAL_LENGTH=64 EVAL_ARGS='eval.subsample={SICK-R:1500}'
BASE_ARGS='model=smollm2-135m pooling=last_token lora=none' experiments/run_grid.sh decoder_curve base_last_token
BASE_ARGS='model=smollm2-135m pooling=mean lora=none' experiments/run_grid.sh decoder_curve base_mean
BASE_ARGS='model=smollm2-135m pooling=weighted_mean lora=none' experiments/run_grid.sh decoder_curve base_weighted_mean
BASE_ARGS='model=smollm2-135m pooling=cls lora=none' experiments/run_grid.sh decoder_curve base_cls
unset TASKS EVAL_LENGTH EVAL_ARGS
# ... and the held-out demo records (0-step runs: validation only; last-token is paper_recipe's step 0)
TRAIN_ONLY='step0_mean step0_weighted_mean step0_cls' \
  experiments/run_grid.sh decoder_curve step0_mean step0_weighted_mean step0_cls

# The report: every row against the untrained model with mean pooling (the final last-token vs mean
# comparison, with 95% paired-bootstrap intervals over STSBenchmark's pairs and the SICK-R sample), and the
# learning curve (report.md section + learning_curve.png) with each untrained pooling as a line.
.venv/bin/embedforge-report 'runs=[experiments/decoder_curve/records/paper_recipe/*,experiments/decoder_curve/records/base_*/evaluate]' \
  baseline=base_mean "data_dirs=[$EMBEDFORGE_EVAL_DATA]" output_dir=experiments/decoder_curve \
  'title="Decoder learning curve: SmolLM2-135M-Instruct + LoRA r16, 150 steps of 32"' \
  curve.run=experiments/decoder_curve/records/paper_recipe/train \
  'curve.untrained=[experiments/decoder_curve/records/base_*/evaluate,experiments/decoder_curve/records/step0_*/train]' \
  'decontam=[experiments/decoder_curve/records/decontam.json]'
