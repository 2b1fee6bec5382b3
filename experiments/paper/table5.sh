#!/usr/bin/env bash
# The paper's Table 5 (ablations on synthetic + MS-MARCO, and contrastive pre-training before the full
# data): train and evaluate each row on MTEB(eng, v1), then build the ablation deltas beside the paper's.
# Each delta is taken against the row the paper compares with (synthetic_msmarco; full_data for the
# pre-training row), so run table1.sh first or list those rows here too. GPUs as for table1.sh.
#
# Environment:
#   EMBEDFORGE_WEAK_DATA  required: the weakly supervised pairs of the pre-training row (pretrain_weak),
#                         a BEIR-layout corpus folder (title -> body; docs/data.md); the paper's own
#                         corpus is not released. Passed as data.sources.weak.path.
#   EMBEDFORGE_BIN        the folder holding embedforge-train/-evaluate/-report (empty = found on PATH,
#                         e.g. after `source .venv/bin/activate`)
#   DRY_RUN=1             print the commands, run nothing
#   and experiments/run_grid.sh's settings. An interrupted run continues: finished rows are skipped and
#   a row that stopped part-way resumes from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -z ${EMBEDFORGE_WEAK_DATA:-} ]]; then
  echo "table5.sh: set EMBEDFORGE_WEAK_DATA to the pre-training row's weak-pair corpus (data.sources.weak.path)" >&2
  exit 2
fi
bin=${EMBEDFORGE_BIN:+${EMBEDFORGE_BIN%/}/}
TRAIN_ONLY=pretrain_weak EVAL_ARGS='eval=mteb_eng eval.workers=auto' \
TRAIN_ARGS_pretrain_weak="data.sources.weak.path=$EMBEDFORGE_WEAK_DATA" \
  experiments/run_grid.sh paper synthetic_msmarco msmarco_only ablation_pooling_mean ablation_pooling_weighted_mean \
  ablation_lora_r8 ablation_lora_r32 ablation_no_instruction ablation_task_type_prefix ablation_llama2_init \
  full_data pretrain_weak pretrain_then_full_data
if [[ -n ${DRY_RUN:-} ]]; then
  echo "${bin}embedforge-report 'runs=[experiments/paper/records/*/*]' output_dir=experiments/paper/table5"
else
  "${bin}embedforge-report" 'runs=[experiments/paper/records/*/*]' output_dir=experiments/paper/table5
fi
