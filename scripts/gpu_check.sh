#!/usr/bin/env bash
# The scale issue's GPU checks as one script, for a machine with NVIDIA GPUs and embedforge installed
# (.venv, or PYTHON=...). Each check prints one PASS/FAIL line; logs go under $OUT (default runs/gpu_check).
#   1. benchmarks/gpu_step.py: Mistral-7B-shaped LoRA r16 step at length 512 (tokens/s, MFU, peak memory),
#      with the preflight plan's prediction for each row printed under it (embedforge-plan's memory model;
#      tokens/s at MFU 0.4), so the first GPU run checks the model
#   2. trainer=fsdp on the tiny decoder: 4 steps, checkpoint holds adapter weights only, resume continues
#   3. trainer=ddp with GradCache (chunk 4) on every visible GPU
#   4. trainer=deepspeed_zero3, when deepspeed is importable
# Budget: about 6-8 minutes on one H100/H200 (the step table dominates); CHECKS="2 3" runs a subset.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/gpu_check}
CHECKS=${CHECKS:-1 2 3 4}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpus.txt"
status=0
report() { if [[ $2 == 0 ]]; then echo "PASS $1"; else echo "FAIL $1 (exit $2; log $OUT/$3)"; status=1; fi; }
TINY=(model=tiny-mistral model.pretrained=tiny:mistral pooling=last_token lora=r8 data.batch_size=8
      data.max_train_examples=64 model.max_length=64 validate_before_fit=false logger=none save_encoder=false
      trainer.max_steps=4 "paths.output_root=$OUT/runs")

if [[ " $CHECKS " == *" 1 "* ]]; then
  timeout 480 "$PY" benchmarks/gpu_step.py > "$OUT/gpu_step.log" 2>&1
  report "gpu_step table ($OUT/gpu_step.log)" $? gpu_step.log; tail -12 "$OUT/gpu_step.log"
  CARD=H100; grep -qi h200 "$OUT/gpus.txt" && CARD=H200
  "$PY" benchmarks/preflight_memory.py --gpu-step "$CARD" 2>/dev/null | tee "$OUT/plan.log"
fi
if [[ " $CHECKS " == *" 2 "* ]]; then
  timeout 300 "$PY" -m embedforge.cli.train "${TINY[@]}" trainer=fsdp run_name=fsdp \
    callbacks.model_checkpoint.every_n_train_steps=2 > "$OUT/fsdp.log" 2>&1
  code=$?
  if [[ $code == 0 ]]; then  # the checkpoint holds LoRA tensors only, under unwrapped names
    "$PY" - "$OUT/runs/fsdp" >> "$OUT/fsdp.log" 2>&1 <<'EOF'
import sys, glob, torch
ckpt = torch.load(sorted(glob.glob(f"{sys.argv[1]}/*/checkpoints/last.ckpt"))[-1], map_location="cpu", weights_only=True)
keys = list(ckpt["state_dict"])
assert keys and all("lora_" in k for k in keys), keys[:5]
assert not any("_fsdp_wrapped_module" in k or "_flat_param" in k for k in keys), keys[:5]
print(f"fsdp checkpoint: {len(keys)} LoRA tensors, step {ckpt['global_step']}")
EOF
    code=$?
  fi
  if [[ $code == 0 ]]; then  # resume from the step-4 checkpoint to step 6
    timeout 300 "$PY" -m embedforge.cli.train "${TINY[@]}" trainer=fsdp run_name=fsdp \
      trainer.max_steps=6 ckpt_path=last >> "$OUT/fsdp.log" 2>&1
    code=$?
  fi
  report "fsdp: train, adapter-only checkpoint, resume" "$code" fsdp.log
fi
if [[ " $CHECKS " == *" 3 "* ]]; then
  timeout 300 "$PY" -m embedforge.cli.train "${TINY[@]}" trainer=ddp trainer.devices=auto run_name=ddp_gradcache \
    loss.grad_cache.chunk_size=4 > "$OUT/ddp_gradcache.log" 2>&1
  report "ddp + GradCache on every visible GPU" $? ddp_gradcache.log
fi
if [[ " $CHECKS " == *" 4 "* ]]; then
  if "$PY" -c "import deepspeed" 2>/dev/null; then
    timeout 300 "$PY" -m embedforge.cli.train "${TINY[@]}" trainer=deepspeed_zero3 run_name=zero3 > "$OUT/zero3.log" 2>&1
    report "deepspeed ZeRO-3" $? zero3.log
  else
    echo "SKIP deepspeed ZeRO-3 (deepspeed not installed: pip install -e '.[deepspeed]')"
  fi
fi
exit $status
