"""The LightningModule: the contrastive step (embed -> gather -> loss, or GradCache chunks), validation
metrics, the optimiser from its settings, and what checkpoints hold (trainable weights, RNG states, the
W&B run to continue). Encoder, loss and optimiser are built elsewhere, from ModuleSettings."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from lightning_fabric.utilities.seed import reset_seed
from omegaconf import DictConfig

from embedforge.losses.duplicates import duplicate_pair_mask
from embedforge.losses.gradcache import GradCache
from embedforge.losses.infonce import ranking_accuracy
from embedforge.model.builder import build_encoder, check_trainable_keys
from embedforge.model.encoder import Encoder
from embedforge.train.callbacks import logs_this_step
from embedforge.train.metrics import retrieval_metrics
from embedforge.train.settings import ModuleSettings, TrainSettings

FSDP_PREFIX = "_fsdp_wrapped_module."  # inserted into parameter names by FSDP, absent from its full state dict


class EmbeddingModule(pl.LightningModule):
    """Contrastive fine-tuning of an Encoder.

    Takes ModuleSettings (train/settings.py): the encoder to build, the loss, the optimiser. Saved in
    every checkpoint: the resolved config and the run's lineage, so `embedforge.model.builder.load_encoder`
    can rebuild the encoder. The backbone is built in `configure_model`, so sharded strategies can build it
    sharded and the data is read and checked before any weights load.
    """

    def __init__(self, settings: ModuleSettings | TrainSettings | DictConfig, encoder: Encoder | None = None, *,
                 run_id: str | None = None, parent_run_id: str | None = None):
        super().__init__()
        if isinstance(settings, DictConfig):  # a composed config (scripts, tests): checked as training checks it
            settings = TrainSettings.from_config(settings)
        if isinstance(settings, TrainSettings):
            settings = settings.module(run_id=run_id, parent_run_id=parent_run_id)
        self.settings = settings
        self.trained_with = settings.trained_with
        # Kept in checkpoints only; run.py logs the redacted config to the experiment logger itself.
        self.save_hyperparameters(settings.hparams, logger=False)
        self.encoder = encoder
        self.loss_fn = settings.loss.build()
        self.share_negatives = settings.loss.share_negatives
        self.mask_duplicates = settings.loss.mask_duplicates
        chunk_size = settings.loss.grad_cache_chunk
        self.grad_cache = GradCache(chunk_size) if chunk_size is not None else None
        # GradCache backpropagates chunk by chunk inside one step: the step is driven by hand.
        self.automatic_optimization = self.grad_cache is None
        self.gradient_clip_val = settings.gradient_clip_val  # GradCache clips here (train/settings.py)
        # Checkpoints hold only trainable weights (LoRA); on_load_checkpoint checks that every one is there.
        self.strict_loading = False
        self._val_outputs: list[dict] = []
        # every validation's metrics with the step it ran at (before fit, every val_check_interval, after
        # fit): the run record's learning curve on the held-out records
        self.val_history: list[dict] = []

    def encoder_settings(self):
        return self.settings.encoder

    def configure_model(self) -> None:
        if self.encoder is None:
            self.encoder = build_encoder(self.encoder_settings())
            if self.settings.compile:
                # In place (nn.Module.compile), so parameter and state-dict names stay the same.
                self.encoder.backbone.compile()
            # Dropout then draws from the seed afresh, wherever the weights were built: in the main process
            # before spawned ranks reseed (trainer=ddp_sim) or in each rank after (torchrun, srun).
            reset_seed()
        self.encoder.trained_with = dict(self.trained_with)
        # HF loads models in eval mode; training needs LoRA dropout active (Lightning keeps modes).
        self.encoder.train()
        if hasattr(self.loss_fn, "check_dim"):
            self.loss_fn.check_dim(self.encoder.embedding_dim)

    # ------------------------------------------------------------------ steps
    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids, attention_mask)

    def _gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """All ranks' rows, keeping gradients for the local ones (and, via all_gather's backward,
        sending other ranks' gradients home)."""
        if self._trainer is None or self.trainer.world_size == 1 or not self.share_negatives:
            return tensor
        gathered = self.all_gather(tensor, sync_grads=tensor.requires_grad)
        return gathered.reshape(-1, *tensor.shape[1:])

    def embed_batch(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Query embeddings (B, H) and document-slot embeddings (B * (1 + n), H); empty slots are zero."""
        queries = self.embed(batch["query_input_ids"], batch["query_attention_mask"])
        filled = self.embed(batch["doc_input_ids"], batch["doc_attention_mask"])
        return queries, into_slots(filled, batch["doc_mask"])

    def loss_from_embeddings(self, queries: torch.Tensor, docs: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The configured loss of local queries against every rank's document slots."""
        doc_mask = batch["doc_mask"]
        all_docs, all_mask = self._gather(docs), self._gather(doc_mask)
        rank = self.global_rank if all_docs.shape[0] != docs.shape[0] else 0
        labels = torch.arange(queries.shape[0], device=queries.device) + rank * docs.shape[0]
        pair_mask = None
        if self.mask_duplicates and "doc_hash" in batch:
            all_hashes = self._gather(batch["doc_hash"])
            pair_mask = duplicate_pair_mask(batch["doc_hash"][: queries.shape[0]], all_hashes, labels)
        loss = self.loss_fn(queries, all_docs, labels=labels, doc_mask=all_mask, pair_mask=pair_mask)
        with torch.no_grad():
            acc = ranking_accuracy(queries, all_docs, labels=labels, doc_mask=all_mask, pair_mask=pair_mask)
        return loss, acc

    def contrastive_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        queries, docs = self.embed_batch(batch)
        return self.loss_from_embeddings(queries, docs, batch)

    def grad_cache_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step with GradCache (manual optimisation): chunked embedding, full-batch loss."""
        optimizer = self.optimizers()
        optimizer.zero_grad()

        def loss_from(embeddings):
            queries, filled = embeddings
            return self.loss_from_embeddings(queries, into_slots(filled, batch["doc_mask"]), batch)

        groups = [{"input_ids": batch["query_input_ids"], "attention_mask": batch["query_attention_mask"]},
                  {"input_ids": batch["doc_input_ids"], "attention_mask": batch["doc_attention_mask"]}]
        embed = self.embed
        if self._is_fsdp():
            from embedforge.train.strategies import through_fsdp_root

            embed = through_fsdp_root(self.trainer.strategy, "embed")
        loss, acc = self.grad_cache.step(lambda c: embed(c["input_ids"], c["attention_mask"]), groups, loss_from,
                                         backward=self.manual_backward, no_sync=self._no_sync, device=self.device)
        optimizer.step()  # clipping: on_before_optimizer_step
        self.lr_schedulers().step()
        return loss, acc

    def on_before_optimizer_step(self, optimizer) -> None:
        # GradCache's clipping (manual optimisation) runs here: after fp16's loss scaler has unscaled the
        # gradients (clipping scaled ones would shrink every update by the scale).
        if not self.automatic_optimization and self.gradient_clip_val:
            self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm")

    def _is_fsdp(self) -> bool:
        from torch.distributed.fsdp import FullyShardedDataParallel

        return self._trainer is not None and isinstance(self.trainer.model, FullyShardedDataParallel)

    def _no_sync(self):
        model = self.trainer.model if self._trainer is not None else None
        if self._is_fsdp():
            # FSDP allows no_sync only outside its forward, and this step runs inside it: each chunk's
            # (adapter-sized) gradients are reduce-scattered and accumulate in the shards instead.
            return contextlib.nullcontext()
        return model.no_sync() if hasattr(model, "no_sync") else contextlib.nullcontext()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, acc = self.grad_cache_step(batch) if self.grad_cache is not None else self.contrastive_step(batch)
        size = batch["query_input_ids"].shape[0]
        # No host sync per step: device tensors become numbers only when the logger writes, and Python
        # numbers go in as CPU tensors (self.log would copy them to the GPU). The progress bar turns its
        # metrics into numbers every step, so it gets CPU copies made on the logged steps only.
        self.log("train/loss", loss, batch_size=size)
        self.log("train/acc", acc, batch_size=size)
        self.log("train/lr", torch.tensor(self.trainer.optimizers[0].param_groups[0]["lr"]), batch_size=size)
        if logs_this_step(self.trainer):
            self.log("loss", loss.detach().cpu(), prog_bar=True, logger=False, batch_size=size)
            self.log("acc", acc.detach().cpu(), prog_bar=True, logger=False, batch_size=size)
        return loss

    def on_train_batch_end(self, outputs, batch: dict, batch_idx: int) -> None:
        # The step count as a metric: spawned ranks hand their metrics back to the main process, not
        # their loop state, and the run record must say how many steps were really trained.
        size = batch["query_input_ids"].shape[0]
        self.log("train/global_step", torch.tensor(float(self.global_step)), batch_size=size)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._val_outputs.append({
            "q": self.embed(batch["query_input_ids"], batch["query_attention_mask"]),
            "d": self.embed(batch["doc_input_ids"], batch["doc_attention_mask"]),
            "pos_id": batch["positive_ids"],
        })

    def on_validation_epoch_start(self) -> None:
        self._val_outputs.clear()

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        q = torch.cat([o["q"] for o in self._val_outputs])
        d = torch.cat([o["d"] for o in self._val_outputs])
        ids = torch.cat([o["pos_id"] for o in self._val_outputs]).to(q.device)
        if self.trainer.world_size > 1:
            q, d, ids = (self.all_gather(t).reshape(-1, *t.shape[1:]) for t in (q, d, ids))
        # Corpus = the distinct validation positives, one row per positive id.
        corpus = d.new_zeros(int(ids.max()) + 1, d.shape[-1])
        corpus[ids] = d
        metrics = retrieval_metrics(q, corpus, ids, k=10)
        for name, value in metrics.items():
            self.log(f"val/{name}", value, sync_dist=False, rank_zero_only=False)
        self._val_outputs.clear()
        if not self.trainer.sanity_checking and (not self.val_history or self.val_history[-1]["step"] != self.global_step):
            self.val_history.append({"step": int(self.global_step), **{k: float(v) for k, v in metrics.items()}})

    # ------------------------------------------------------------------ optimiser
    def configure_optimizers(self):
        """`optim.optimizer` and `optim.scheduler` are partial targets (conf/optim/*.yaml)."""
        optimizer = instantiate(self.settings.optim.optimizer)(self.parameters())
        scheduler = instantiate(self.settings.optim.scheduler)(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ checkpoints
    def trainable_names(self) -> set[str]:
        """State-dict names of the trainable tensors (FSDP's wrapper prefixes removed)."""
        return {name.replace(FSDP_PREFIX, "") for name, p in self.named_parameters() if p.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        trainable = self.trainable_names()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        # RNG states, so dropout after a resume draws what the uninterrupted run would have drawn. One per
        # rank: ranks draw different numbers of dropout values (their batches differ in length).
        checkpoint["rng_states"] = capture_rng_states()
        if self._trainer is not None and self.trainer.world_size > 1:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():  # every rank takes part in saving
                per_rank = [None] * dist.get_world_size()
                dist.all_gather_object(per_rank, checkpoint["rng_states"])
                checkpoint["rng_states_per_rank"] = per_rank
        # Where a resume must put them back: a step checkpoint mid-epoch is followed directly by the next
        # batch, an epoch-end one first by a new DataLoader iterator, whose creation draws from the RNG.
        trainer = self._trainer
        mid_epoch = trainer is not None and (
            trainer.fit_loop.epoch_loop.batch_progress.current.processed < trainer.num_training_batches)
        checkpoint["rng_restore_at"] = "next_batch" if mid_epoch else "load"
        # The W&B run to continue after a resume (run.py reopens it with resume="allow").
        logger = self._trainer.logger if self._trainer is not None else None
        if type(logger).__name__ == "WandbLogger":
            checkpoint["wandb_run_id"] = logger.experiment.id

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Called before Lightning loads the weights (non-strictly): every trainable tensor must be there.
        if "state_dict" in checkpoint:  # absent under FSDP, whose strategy loads (and checks) the weights first
            check_trainable_keys(self.trainable_names(), set(checkpoint["state_dict"]), "ckpt_path")
        if "rng_states" in checkpoint:
            states = checkpoint["rng_states"]
            per_rank = checkpoint.get("rng_states_per_rank")
            if per_rank and self._trainer is not None and len(per_rank) == self.trainer.world_size:
                states = per_rank[self.global_rank]
            if checkpoint.get("rng_restore_at") == "next_batch":
                self._rng_on_next_batch = states
            else:
                restore_rng_states(states)

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        states, self._rng_on_next_batch = getattr(self, "_rng_on_next_batch", None), None
        if states is not None:
            restore_rng_states(states)


def into_slots(filled: torch.Tensor, doc_mask: torch.Tensor) -> torch.Tensor:
    """Encoded documents (filled slots only) placed into the batch's slot layout; empty slots are zero.
    A gather, not nonzero(): that would make the host wait for the GPU to learn its output's size."""
    row = (doc_mask.long().cumsum(0) - 1).clamp(min=0)  # a filled slot's row in `filled`
    return torch.where(doc_mask.unsqueeze(1), filled[row], filled.new_zeros(()))


def capture_rng_states() -> dict:
    # Plain tensors, ints and tuples only: torch.load(weights_only=True) can read our checkpoints
    # (builder.load_encoder does), where a numpy array would need an unsafe unpickler.
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])

