#!/usr/bin/env bash
# The paper's Table 5 (ablations on synthetic + MS-MARCO, and contrastive pre-training before the full
# data): train and evaluate each row on MTEB(eng, v1), then build the ablation deltas beside the paper's.
# Each delta is taken against the row the paper compares with (synthetic_msmarco; full_data for the
# pre-training row), so run table1.sh first or list those rows here too. GPUs as for table1.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
TRAIN_ONLY=pretrain_weak EVAL_ARGS='eval=mteb_eng eval.workers=auto' \
  experiments/run_grid.sh paper synthetic_msmarco msmarco_only ablation_pooling_mean ablation_pooling_weighted_mean \
  ablation_lora_r8 ablation_lora_r32 ablation_no_instruction ablation_task_type_prefix ablation_llama2_init \
  full_data pretrain_weak pretrain_then_full_data
.venv/bin/embedforge-report 'runs=[experiments/paper/records/*/*]' output_dir=experiments/paper/table5
