"""A plan from a composed training config: what runs per device, its memory and its time."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from embedforge.plan.arch import Arch, PlanError, describe
from embedforge.plan.cards import card
from embedforge.plan.memory import FRAMEWORK_OVERHEAD_BYTES, GiB, Memory, Workload, estimate
from embedforge.data.settings import DataSettings
from embedforge.model.settings import EncoderGroups
from embedforge.train.settings import accumulation, activation_checkpointing, bind_loss, global_batch as batch_of_step
from embedforge.train.strategies import strategy_target
from embedforge.train.throughput import training_flops_per_token

SHARDED_STRATEGIES = ("FSDP", "DeepSpeed")


@dataclass
class Plan:
    arch: Arch
    workload: Workload
    memory: Memory
    gpu: str
    gpu_memory: int
    nodes: int
    devices: int
    batch_size: int
    accumulate: int
    global_batch: int
    declared_global_batch: int | None
    steps: int | None          # optimiser steps of the run (None: data size unknown)
    steps_per_epoch: int | None
    flops_per_step: float
    mfu: float
    peak_flops: float
    checkpointing: bool

    @property
    def per_gpu(self) -> int:
        return self.memory.total + FRAMEWORK_OVERHEAD_BYTES

    @property
    def fits(self) -> bool:
        return self.per_gpu <= self.gpu_memory

    @property
    def seconds_per_step(self) -> float:
        return self.flops_per_step / (self.nodes * self.devices * self.peak_flops * self.mfu)

    @property
    def hours(self) -> float | None:
        return None if self.steps is None else self.steps * self.seconds_per_step / 3600

    @property
    def batch_refused(self) -> bool:
        return self.declared_global_batch is not None and self.declared_global_batch != self.global_batch


def _strategy_shards(cfg: DictConfig) -> bool:
    target = strategy_target(cfg.trainer).lower()  # a class path, or a name such as "fsdp"
    return any(name.lower() in target for name in SHARDED_STRATEGIES)


def make_plan(cfg: DictConfig, *, gpu: str = "H100", mfu: float = 0.4, num_examples: int | None = None,
              devices: int | None = None) -> Plan:
    """The plan of `cfg` (conf/train.yaml composed as training composes it) on `gpu` cards."""
    if not 0 < mfu <= 1:
        raise PlanError(f"config key 'plan.mfu': must be in (0, 1], got {mfu!r}")
    gpu, gpu_memory, peak, _ = card(gpu)
    groups = EncoderGroups.from_config(cfg)
    data = DataSettings.from_config(cfg.data, check_files=False)  # the data may live on the cluster only
    loss = bind_loss(cfg.loss)
    lora = groups.lora.settings()
    arch = describe(groups.model.pretrained, lora)
    nodes = int(cfg.trainer.get("num_nodes") or 1)
    dev = devices if devices is not None else cfg.trainer.get("devices", 1)
    if not isinstance(dev, int):
        raise PlanError(f"config key 'trainer.devices': '{dev}' cannot be planned; give a number (trainer.devices=8)")
    batch = data.batch_size
    accumulate = accumulation(cfg.trainer)
    negatives = data.hard_negatives
    chunk = loss.grad_cache_chunk
    checkpointing = activation_checkpointing(groups.model, loss)
    world = nodes * dev
    dtype = groups.model.torch_dtype
    weight_bytes = 4 if dtype in ("float32", "fp32") else 2
    # On the GPU, trainer.precision=auto computes in bf16 (fp16 on V100s): 2-byte activations.
    act_bytes = 4 if str(cfg.trainer.get("precision", "auto")).startswith("32") else 2
    attn = str(groups.model.attn_implementation or "sdpa")
    workload = Workload(sequences=batch * (2 + negatives), length=groups.model.max_length, queries=batch,
                        world=world, act_bytes=act_bytes, weight_bytes=weight_bytes,
                        chunk=int(chunk) if chunk is not None else None, checkpointing=checkpointing,
                        lora_r=lora.r if lora else None, lora_dropout=lora.dropout if lora else 0.0,
                        shard_weights=_strategy_shards(cfg), flash_attention=attn == "flash_attention_2",
                        embedding_dim=arch.hidden)
    # the figure training checks
    global_batch = batch_of_step(data, accumulate, num_nodes=nodes, devices=dev)
    declared = data.global_batch_size
    examples = num_examples if num_examples is not None else data.max_train_examples
    steps_per_epoch = -(-int(examples) // global_batch) if examples else None
    max_steps = int(cfg.trainer.get("max_steps") or -1)
    epochs = int(cfg.trainer.get("max_epochs") or 1)
    if max_steps > 0:
        steps = max_steps if steps_per_epoch is None or epochs < 0 else min(max_steps, steps_per_epoch * epochs)
    else:
        steps = steps_per_epoch * epochs if steps_per_epoch is not None and epochs > 0 else None
    tokens_per_step = global_batch * (2 + negatives) * workload.length
    flops = training_flops_per_token(arch.matmul, checkpointing=checkpointing, grad_cache=chunk is not None)
    return Plan(arch=arch, workload=workload, memory=estimate(arch, workload), gpu=gpu, gpu_memory=gpu_memory,
                nodes=nodes, devices=dev, batch_size=batch, accumulate=accumulate, global_batch=global_batch,
                declared_global_batch=int(declared) if declared is not None else None, steps=steps,
                steps_per_epoch=steps_per_epoch, flops_per_step=flops * tokens_per_step, mfu=mfu, peak_flops=peak,
                checkpointing=checkpointing)


def fixes(plan: Plan) -> list[str]:
    """Overrides that would make a plan that does not fit fit, cheapest first (each checked)."""
    from dataclasses import replace

    out = []
    w = plan.workload
    chunk = w.chunk
    if chunk is None:
        # Turning GradCache on turns checkpointing off (train/settings.activation_checkpointing) unless asked.
        for size in (64, 32, 16, 8, 4, 2, 1):
            if size < w.sequences and _fits(plan, replace(w, chunk=size, checkpointing=False)):
                out.append(f"loss.grad_cache.chunk_size={size}")
                break
            if size < w.sequences and w.checkpointing and _fits(plan, replace(w, chunk=size)):
                out.append(f"loss.grad_cache.chunk_size={size} model.checkpointing_with_grad_cache=true")
                break
    else:
        size = chunk // 2
        while size >= 1 and not _fits(plan, replace(w, chunk=size)):
            size //= 2
        if size >= 1:
            out.append(f"loss.grad_cache.chunk_size={size}")
        if not w.checkpointing and _fits(plan, replace(w, checkpointing=True)):
            out.append("model.checkpointing_with_grad_cache=true (one more forward: 6N -> 8N FLOPs)")
    if not w.shard_weights and _fits(plan, replace(w, shard_weights=True)):
        out.append("trainer=fsdp or trainer=deepspeed_zero3 (weights sharded by world size)")
    return out


def _fits(plan: Plan, workload: Workload) -> bool:
    return estimate(plan.arch, workload).total + FRAMEWORK_OVERHEAD_BYTES <= plan.gpu_memory


def render(plan: Plan) -> list[str]:
    """The plan as printed lines."""
    a, w = plan.arch, plan.workload

    def gib(n: float) -> str:
        return f"{n / GiB:.1f} GiB"

    lines = [f"model: {a.model_type}, {a.layers} layers, hidden {a.hidden}, {a.total_params / 1e9:.3f}B parameters, "
             f"{a.trainable_params / 1e6:.1f}M trainable",
             f"global batch: {plan.nodes} nodes x {plan.devices} devices x {plan.batch_size} per device x "
             f"{plan.accumulate} accumulation = {plan.global_batch}"
             + (f" (declared data.global_batch_size={plan.declared_global_batch})" if plan.declared_global_batch else ""),
             f"per device and step: {w.sequences} sequences x {w.length} tokens; GradCache chunk: {w.chunk or 'off'}; "
             f"activation checkpointing: {'on' if plan.checkpointing else 'off'}; "
             f"{'sharded' if w.shard_weights else 'replicated'} weights",
             f"memory per GPU ({plan.gpu}, {plan.gpu_memory / 1e9:.0f} GB = {gib(plan.gpu_memory)}):"]
    for name, value in plan.memory.terms.items():
        lines.append(f"  {name:<40} {gib(value):>10}")
    lines.append(f"  {'framework/CUDA overhead (constant)':<40} {gib(FRAMEWORK_OVERHEAD_BYTES):>10}")
    lines.append(f"  {'total':<40} {gib(plan.per_gpu):>10}  -> {'fits' if plan.fits else 'WILL NOT FIT'}")
    lines.append(f"FLOPs per step: {plan.flops_per_step:.3e}; {plan.seconds_per_step:.1f} s per step at MFU "
                 f"{plan.mfu:.2f} on {plan.nodes * plan.devices} x {plan.gpu}")
    if plan.steps is not None:
        lines.append(f"steps: {plan.steps}" + (f" ({plan.steps_per_epoch} per epoch)" if plan.steps_per_epoch else "")
                     + f"; run: {plan.hours:.2f} h")
    else:
        lines.append(f"steps: unknown (pass plan.num_examples=N); {plan.seconds_per_step * 1000 / 3600:.2f} h "
                     "per 1000 steps")
    if not plan.fits:
        suggestions = fixes(plan)
        lines.append("will not fit: try " + ("; or ".join(suggestions) if suggestions else "more GPUs"))
    return lines
