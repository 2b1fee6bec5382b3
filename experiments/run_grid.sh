#!/usr/bin/env bash
# Train and evaluate the rows of a grid, one after another, and keep each row's finished run records
# under experiments/<grid>/records/<row>/ (train/ and evaluate/; written once, never edited).
# A row whose records exist is skipped, and a row whose training stopped part-way resumes from its last
# checkpoint (ckpt_path=last), so an interrupted grid continues where it stopped.
#
#   experiments/run_grid.sh <grid> <row>...        rows are conf/experiment/<grid>/<row>.yaml
#   rows "base*" evaluate the untrained model (BASE_ARGS); rows listed in TRAIN_ONLY (stage-1 runs) are not evaluated.
#
# Settings (environment): TASKS (eval.tasks list, or EVAL_ARGS such as eval=mteb_eng), EVAL_LENGTH
# (encoder_max_length at evaluation; empty = the encoder's own), EVAL_ARGS (more embedforge-evaluate
# arguments), BASE_ARGS (embedforge-evaluate arguments for the base row), TRAIN_ONLY (space-separated rows),
# TRAIN_ARGS (more embedforge-train arguments for every row), TRAIN_ARGS_<row> (for one row, e.g.
# TRAIN_ARGS_pretrain_weak='data.sources.weak.path=/data/weak'), EMBEDFORGE_EVAL_DATA (the evaluation
# task folders; our copy is ../shared/data/eval), EMBEDFORGE_BIN (the folder holding embedforge-train and
# embedforge-evaluate; empty = found on PATH), PYTHON (reads the records; default python3), RUNS (where
# runs write, default runs), RECORDS (default experiments/<grid>/records), DRY_RUN=1 (print the
# commands, run nothing), SEEDS (e.g. "1 2 3": each trained row once per seed, `seed=<s>`, records under
# <row>/seed<s>/, runs under $RUNS/seed<s>/; embedforge-report pools a row's seeds; empty = one run with the
# config's seed, records under <row>/), DECONTAM_TRAIN (the grid's training files as a Hydra list, e.g.
# '[data/demo/train/*.jsonl,data/x.jsonl]': before any row, embedforge-decontam checks them against the
# evaluation tasks (TASKS) into <records>/decontam.json, which embedforge-report links; once per grid).
set -euo pipefail
cd "$(dirname "$0")/.."
grid=$1; shift
: "${TASKS:=}" "${EVAL_LENGTH:=}" "${EVAL_ARGS:=}" "${BASE_ARGS:=}" "${TRAIN_ONLY:=}" "${TRAIN_ARGS:=}"
: "${SEEDS:=}" "${DECONTAM_TRAIN:=}" "${EMBEDFORGE_BIN:=}" "${PYTHON:=python3}" "${RUNS:=runs}" "${RECORDS:=experiments/$grid/records}" "${DRY_RUN:=}"
bin=${EMBEDFORGE_BIN:+${EMBEDFORGE_BIN%/}/}
eval_args=()
[[ -n $TASKS ]] && eval_args+=("eval.tasks=$TASKS")
[[ -n $EVAL_LENGTH ]] && eval_args+=("encoder_max_length=$EVAL_LENGTH")
# shellcheck disable=SC2206
eval_args+=($EVAL_ARGS)
records=$RECORDS

run() {  # a command, or under DRY_RUN=1 its shell-quoted line
  if [[ -n $DRY_RUN ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

evaluate() {  # row, its record folder, then embedforge-evaluate arguments
  local row=$1 rec=$2; shift 2
  local out=$rec/evaluate
  [[ -f $out/run_record.json ]] && { echo "[$grid/$row] evaluation recorded: skipped"; return; }
  local tmp=$RUNS/evaluate_${grid}_${row}.DRYRUN
  if [[ -z $DRY_RUN ]]; then
    mkdir -p "$RUNS"  # a fresh clone has no runs/ yet (the first row may be evaluation-only)
    tmp=$(mktemp -d "$RUNS/evaluate_${grid}_${row}.XXXX")
  fi
  run "${bin}embedforge-evaluate" "$@" "${eval_args[@]}" "output_dir=$RUNS/evaluate/results" "record_dir=$tmp" \
    "hydra.run.dir=$tmp/hydra"
  run mkdir -p "$out"
  run cp "$tmp/run_record.json" "$out/"
}

newest() {  # the newest path matching a glob pattern, or nothing
  # shellcheck disable=SC2086
  ls -td $1 2>/dev/null | head -1 || true
}

train_and_evaluate() {  # row, its record folder, the runs folder, then more embedforge-train arguments
  local row=$1 rec=$2 runs=$3; shift 3
  if [[ ! -f $rec/train/run_record.json ]]; then
    local row_args_name=TRAIN_ARGS_${row//[^A-Za-z0-9_]/_}
    # shellcheck disable=SC2206
    local train_args=($TRAIN_ARGS ${!row_args_name:-} "$@")
    local finished
    finished=$(newest "$runs/${grid}_${row}/*/run_record.json")
    if [[ -z $finished ]]; then  # not trained, or stopped part-way: resume from its last checkpoint
      [[ -n $(newest "$runs/${grid}_${row}/*/checkpoints/last.ckpt") ]] && train_args+=(ckpt_path=last)
      run "${bin}embedforge-train" "experiment=$grid/$row" "paths.output_root=$runs" "${train_args[@]}"
      finished=$(newest "$runs/${grid}_${row}/*/run_record.json")
    fi
    run mkdir -p "$rec/train"
    run cp "${finished:-$runs/${grid}_${row}/<run>/run_record.json}" "$rec/train/"
  fi
  if [[ " $TRAIN_ONLY " != *" $row "* ]]; then  # the encoder the recorded training run wrote
    local encoder
    if [[ -n $DRY_RUN && ! -f $rec/train/run_record.json ]]; then
      encoder="<encoder_dir of $row's train record>"
    else
      encoder=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["encoder_dir"])' \
        "$rec/train/run_record.json")
    fi
    evaluate "$row" "$rec" "checkpoint=$encoder"
  fi
}

if [[ -n $DECONTAM_TRAIN && ! -f $records/decontam.json ]]; then  # the training data vs what the grid evaluates
  dc_tmp=$RUNS/decontam_${grid}.DRYRUN
  if [[ -z $DRY_RUN ]]; then mkdir -p "$RUNS"; dc_tmp=$(mktemp -d "$RUNS/decontam_${grid}.XXXX"); fi
  dc_tasks=()
  [[ -n $TASKS ]] && dc_tasks+=("eval.tasks=$TASKS")
  run "${bin}embedforge-decontam" "train=$DECONTAM_TRAIN" "eval.data_dir=${EMBEDFORGE_EVAL_DATA:-../shared/data/eval}" \
    "${dc_tasks[@]}" max_listed_matches=100 "output=$dc_tmp/decontam.json" "hydra.run.dir=$dc_tmp/hydra"
  run mkdir -p "$records"
  run cp "$dc_tmp/decontam.json" "$records/"
fi

for row in "$@"; do
  start=$(date +%s)
  if [[ $row == base* ]]; then  # the untrained model: no seed to vary
    # shellcheck disable=SC2086
    evaluate "$row" "$records/$row" $BASE_ARGS
  elif [[ -z $SEEDS ]]; then
    train_and_evaluate "$row" "$records/$row" "$RUNS"
  else  # one run per seed: its own runs folder (a two-stage chain finds its own seed's stage 1 there)
    for seed in $SEEDS; do
      train_and_evaluate "$row" "$records/$row/seed$seed" "$RUNS/seed$seed" "seed=$seed"
    done
  fi
  echo "[$grid/$row] done in $(( $(date +%s) - start )) s"
done
