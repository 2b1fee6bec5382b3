#!/usr/bin/env bash
# Train and evaluate the rows of a grid, one after another, and keep each row's finished run records
# under experiments/<grid>/records/<row>/ (train/ and evaluate/; written once, never edited).
# A row whose records exist is skipped, so an interrupted grid continues where it stopped.
#
#   experiments/run_grid.sh <grid> <row>...        rows are conf/experiment/<grid>/<row>.yaml
#   rows "base*" evaluate the untrained model (BASE_ARGS); rows listed in TRAIN_ONLY (stage-1 runs) are not evaluated.
#
# Settings (environment): TASKS (eval.tasks list, or EVAL_ARGS such as eval=mteb_eng), EVAL_LENGTH
# (encoder_max_length at evaluation; empty = the encoder's own), EVAL_ARGS (more embedforge-evaluate
# arguments), BASE_ARGS (embedforge-evaluate arguments for the base row), TRAIN_ONLY (space-separated rows),
# EMBEDFORGE_EVAL_DATA (the evaluation task folders; our copy is ../shared/data/eval).
set -euo pipefail
cd "$(dirname "$0")/.."
grid=$1; shift
bin=.venv/bin
: "${TASKS:=}" "${EVAL_LENGTH:=}" "${EVAL_ARGS:=}" "${BASE_ARGS:=}" "${TRAIN_ONLY:=}"
eval_args=()
[[ -n $TASKS ]] && eval_args+=("eval.tasks=$TASKS")
[[ -n $EVAL_LENGTH ]] && eval_args+=("encoder_max_length=$EVAL_LENGTH")
# shellcheck disable=SC2206
eval_args+=($EVAL_ARGS)
records=experiments/$grid/records

evaluate() {  # row, then embedforge-evaluate arguments
  local row=$1; shift
  local out=$records/$row/evaluate
  [[ -f $out/run_record.json ]] && { echo "[$grid/$row] evaluation recorded: skipped"; return; }
  local tmp; tmp=$(mktemp -d "runs/evaluate_${grid}_${row}.XXXX")
  $bin/embedforge-evaluate "$@" "${eval_args[@]}" "record_dir=$tmp" "hydra.run.dir=$tmp/hydra"
  mkdir -p "$out" && cp "$tmp/run_record.json" "$out/"
}

for row in "$@"; do
  start=$(date +%s)
  if [[ $row == base* ]]; then
    # shellcheck disable=SC2086
    evaluate "$row" $BASE_ARGS
  else
    if [[ ! -f $records/$row/train/run_record.json ]]; then
      $bin/embedforge-train "experiment=$grid/$row"
      run=$(ls -td "runs/${grid}_${row}"/*/ | head -1)
      mkdir -p "$records/$row/train" && cp "$run/run_record.json" "$records/$row/train/"
    fi
    if [[ " $TRAIN_ONLY " != *" $row "* ]]; then  # the encoder the recorded training run wrote
      encoder=$($bin/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["encoder_dir"])' \
        "$records/$row/train/run_record.json")
      evaluate "$row" "checkpoint=$encoder"
    fi
  fi
  echo "[$grid/$row] done in $(( $(date +%s) - start )) s"
done
