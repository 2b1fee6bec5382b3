"""Helpers for sharded strategies (conf/trainer/fsdp*.yaml, deepspeed_zero3.yaml)."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import tempfile

import torch
from pytorch_lightning.plugins.precision.fsdp import FSDPPrecision
from pytorch_lightning.strategies import FSDPStrategy
from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher, _WorkerOutput
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn

from embedforge.errors import ServiceError
from embedforge.model.builder import check_trainable_keys


def _wrap_by_class_name(module: nn.Module, recurse: bool, nonwrapped_numel: int, names: frozenset[str]) -> bool:
    # FSDP asks twice per module: recurse=True ("look inside?") and recurse=False ("wrap this one?").
    return True if recurse else type(module).__name__ in names


def layer_wrap_policy(layer_names: list[str]):
    """An FSDP auto-wrap policy that makes every transformer layer (by class name, so no model import
    is needed in the config) its own sharded unit."""
    return functools.partial(_wrap_by_class_name, names=frozenset(layer_names))


# ---------------------------------------------------------------------------------------------- FSDP
class FSDPTrainStrategy(FSDPStrategy):
    """Lightning's FSDPStrategy, changed where it stops FSDP from training this project's models:

    - it runs on CPU processes too (gloo). Lightning refuses FSDP without a GPU by the strategy's exact
      type (`type(strategy) is FSDPStrategy` in its accelerator connector), not because torch's FSDP
      needs one: given device_id=cpu it shards and all-gathers over gloo as well. trainer=fsdp_sim uses
      that to test the sharded code paths on a machine without GPUs.
    - `start_method="spawn"` starts the ranks as worker processes (as ddp_sim does), so a run inside
      pytest or a notebook works; the default (None) re-runs the script per rank, as Lightning does.
    - gradient clipping by norm works: Lightning's FSDPPrecision refuses it (torch's clip_grad_norm_
      would see only this rank's shard), so it is done by the root FSDP module's clip_grad_norm_,
      which reduces the norm over all shards.
    - full state dicts are gathered in place on the CPU, and a resumed checkpoint's adapter keys are
      checked (see the methods).
    """

    def __init__(self, *args, start_method: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._start_method = start_method

    def _configure_launcher(self) -> None:
        if self._start_method is None:
            return super()._configure_launcher()
        self._launcher = _FSDPSpawnLauncher(self, start_method=self._start_method)

    def _setup_model(self, model: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import FullyShardedDataParallel

        if self.root_device.type != "cpu" or any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
            return super()._setup_model(model)
        # Lightning passes device_id=root_device.index, None for the CPU, and torch's FSDP then looks for an
        # accelerator and refuses; given the CPU device itself it shards on the CPU. Wrapped here, the rest
        # (metrics, activation checkpointing) is Lightning's own set-up of an already wrapped model.
        model = FullyShardedDataParallel(module=model, cpu_offload=self.cpu_offload,
                                         mixed_precision=self.mixed_precision_config,
                                         sharding_strategy=self.sharding_strategy, device_id=self.root_device,
                                         **self.kwargs)
        policy = self.kwargs.pop("auto_wrap_policy", None)  # applied above: Lightning would warn it is ignored
        try:
            return super()._setup_model(model)
        finally:
            if policy is not None:
                self.kwargs["auto_wrap_policy"] = policy

    # Full (gathered) state dicts: Lightning asks torch for them with offload_to_cpu=True, which on the
    # CPU frees the gathered tensors it was to copy from (the "move to CPU" is no copy there): the save
    # reads freed memory and the process dies with SIGSEGV. On the CPU they are gathered in place.
    def lightning_module_state_dict(self):
        with _gathered_in_place(self.root_device):
            return super().lightning_module_state_dict()

    def optimizer_state(self, optimizer):
        with _gathered_in_place(self.root_device):
            return super().optimizer_state(optimizer)

    def load_checkpoint(self, checkpoint_path, weights_only=None):
        # Lightning's FSDP loads the weights itself, non-strictly (checkpoints hold only the adapter), and
        # drops them before the module's on_load_checkpoint could check them: checked here, first.
        module = self.lightning_module
        if hasattr(module, "trainable_names") and os.path.isfile(checkpoint_path):
            stored = torch.load(checkpoint_path, map_location="cpu", mmap=True, weights_only=True)["state_dict"]
            check_trainable_keys(module.trainable_names(), set(stored), "ckpt_path")
        with _gathered_in_place(self.root_device):
            return super().load_checkpoint(checkpoint_path, weights_only=weights_only)

    @property
    def precision_plugin(self):
        return super().precision_plugin

    @precision_plugin.setter
    def precision_plugin(self, plugin) -> None:
        if type(plugin) is FSDPPrecision:  # the one the accelerator connector makes for FSDP
            plugin = _RootClippingPrecision(plugin.precision, plugin.scaler, strategy=self)
        self._precision_plugin = plugin


def through_fsdp_root(strategy: FSDPStrategy, method_name: str):
    """The LightningModule's `method_name`, called through the root FSDP module's forward.

    FSDP finishes a backward pass (gradients into the shards, every unit back to idle) from a hook that
    its root's forward puts on its outputs. GradCache backpropagates chunk by chunk inside the training
    step, itself inside the root's forward; a chunk embedded by a plain call would carry no such hook,
    leaving the units mid-backward. Each chunk passed through the root gets it, as a whole step does."""
    model, module = strategy.model, strategy.lightning_module
    return lambda *args: strategy._forward_redirection(model, module, method_name, *args)


@contextlib.contextmanager
def _gathered_in_place(device: torch.device):
    """On the CPU, Lightning's full-state-dict settings (pytorch_lightning and lightning_fabric look the
    helper up by module name at call time) with offload_to_cpu off; elsewhere unchanged."""
    if device.type != "cpu":
        yield
        return
    import lightning_fabric.strategies.fsdp as fabric_fsdp
    import pytorch_lightning.strategies.fsdp as pl_fsdp
    from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    def in_place(module, world_size, rank0_only=True):
        return FSDP.state_dict_type(module, StateDictType.FULL_STATE_DICT,
                                    FullStateDictConfig(offload_to_cpu=False, rank0_only=rank0_only),
                                    FullOptimStateDictConfig(offload_to_cpu=False, rank0_only=rank0_only))

    saved = pl_fsdp._get_full_state_dict_context, fabric_fsdp._get_full_state_dict_context
    pl_fsdp._get_full_state_dict_context = fabric_fsdp._get_full_state_dict_context = in_place
    try:
        yield
    finally:
        pl_fsdp._get_full_state_dict_context, fabric_fsdp._get_full_state_dict_context = saved


class _RootClippingPrecision(FSDPPrecision):
    def __init__(self, precision, scaler=None, *, strategy: FSDPStrategy):
        super().__init__(precision, scaler)
        self._strategy = strategy

    def clip_grad_by_norm(self, optimizer, clip_val) -> None:
        self._strategy.model.clip_grad_norm_(clip_val)  # the root FSDP module: the norm over every shard


class _FSDPSpawnLauncher(_MultiProcessingLauncher):
    def _collect_rank_zero_results(self, trainer, results):
        # Lightning's version reads the inner module's state_dict(), which under FSDP holds this rank's
        # shards under wrapped names; the strategy's full state dict gathers them (every rank takes part).
        checkpoint_callback = trainer.checkpoint_callback
        best_model_path = getattr(checkpoint_callback, "best_model_path", None) if checkpoint_callback else None
        state_dict = trainer.strategy.lightning_module_state_dict()
        if self._strategy.local_rank != 0:
            return None
        weights_path = None
        if trainer.state.fn == TrainerFn.FITTING:
            weights_path = os.path.join(tempfile.mkdtemp(), ".temp.ckpt")
            self._strategy.checkpoint_io.save_checkpoint(state_dict, weights_path)
        return _WorkerOutput(best_model_path, weights_path, trainer.state, results, self.get_extra_results(trainer))


# ---------------------------------------------------------------------------------------------- DeepSpeed
def strategy_target(trainer_cfg) -> str:
    """The trainer config's strategy: its `_target_` class path, or the name given as a string ("" if none)."""
    strategy = trainer_cfg.get("strategy")
    return str(strategy.get("_target_", "")) if hasattr(strategy, "get") else str(strategy or "")


def check_deepspeed_ready(trainer_cfg) -> None:
    """Refuses a DeepSpeed trainer config at start, before data or weights load, with one line naming what
    this machine lacks (the package, or the CUDA GPUs that trainer=deepspeed_zero3 trains on)."""
    if "deepspeed" not in strategy_target(trainer_cfg).lower():
        return
    if importlib.util.find_spec("deepspeed") is None:
        raise ServiceError("trainer=deepspeed_zero3: deepspeed is not installed (pip install -e '.[deepspeed]')")
    if not torch.cuda.is_available():
        raise ServiceError("trainer=deepspeed_zero3: needs CUDA GPUs; this machine has none "
                           "(on CPU, trainer=fsdp_sim tests the sharded code paths)")
