#!/usr/bin/env bash
# The paper's Table 1 (data variants; Mistral-7B, global batch 2048): train the four variants, evaluate
# each on MTEB(eng, v1) (56 tasks) across the node's GPUs, and build the table beside the paper's.
# Needs GPUs (conf/experiment/paper/_base.yaml: 8 GPUs x 256 with GradCache), the synthetic data of
# embedforge-generate (runs/synth/default) and the public datasets (hub, or local copies: docs/data.md).
# On a SLURM cluster, scripts/slurm_train.sbatch runs one variant per job.
set -euo pipefail
cd "$(dirname "$0")/../.."
EVAL_ARGS='eval=mteb_eng eval.workers=auto' \
  experiments/run_grid.sh paper full_data synthetic_only synthetic_msmarco no_synthetic
bin=${EMBEDFORGE_BIN:+${EMBEDFORGE_BIN%/}/}  # empty = embedforge-report on PATH; DRY_RUN=1 prints commands
if [[ -n ${DRY_RUN:-} ]]; then
  echo "${bin}embedforge-report 'runs=[experiments/paper/records/*/*]' output_dir=experiments/paper/table1"
else
  "${bin}embedforge-report" 'runs=[experiments/paper/records/*/*]' output_dir=experiments/paper/table1
fi
