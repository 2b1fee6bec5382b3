"""DataModule: a mixture of sources (conf/data/*.yaml) -> contrastive batches, plus validation batches.

`setup()` loads and validates ALL data (every source, every line), so it can run before the model is
built; the batches come from data/batching.py (`data.batching`: mixed | same_source).
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset

from embedforge.data.batching import SourceBatchSampler
from embedforge.data.collate import ContrastiveCollator
from embedforge.data.jsonl import load_examples
from embedforge.data.mixture import Mixture, build_mixture, print_counts
from embedforge.data.schema import Example
from embedforge.data.settings import DataSettings
from embedforge.data.sources.files import expand_files

log = logging.getLogger(__name__)

AUTO_GPU_WORKERS = 2  # data.num_workers=auto on a GPU: enough to tokenise ahead of a step of milliseconds


def load_all(patterns, key: str, on_error: str) -> list[Example]:
    examples: list[Example] = []
    rejected = 0
    for path in expand_files(patterns, key):
        report = load_examples(path, on_error=on_error)
        examples += report.examples
        rejected += len(report.errors)
    if rejected:
        log.warning("%s: %d records rejected and reported above; %d kept", key, rejected, len(examples))
    return examples


class ExampleDataset(Dataset):
    """Examples by index, or a list of them by a list of indices (one batch, see SourceBatchSampler)."""

    def __init__(self, examples: list[Example]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index):
        if isinstance(index, (list, tuple)):
            return [self.examples[i] for i in index]
        return self.examples[index]


class ValidationCollator:
    """Queries and their positives, plus each positive's id among the distinct positives."""

    def __init__(self, collator: ContrastiveCollator, positive_ids: dict[str, int]):
        self.collator = collator
        self.positive_ids = positive_ids

    def __call__(self, examples: list[Example]) -> dict:
        batch = self.collator(examples)
        batch["positive_ids"] = torch.tensor([self.positive_ids[e.positive] for e in examples])
        return batch


class EmbeddingDataModule(pl.LightningDataModule):
    def __init__(self, data: DataSettings | DictConfig, tokenizer, seed: int = 0):
        super().__init__()
        # Checked settings (train/settings.py); a composed `data` group is checked here the same way.
        self.cfg = DataSettings.from_config(data)
        self.tokenizer = tokenizer
        self.seed = seed
        self.train_examples: list[Example] = []
        self.val_examples: list[Example] = []
        self.mixture: Mixture | None = None
        self.sampler: SourceBatchSampler | None = None
        self._resume: dict | None = None

    def collator(self, hard_negatives: int) -> ContrastiveCollator:
        return ContrastiveCollator(
            tokenizer=self.tokenizer,
            query_max_length=self.cfg.query_max_length,
            doc_max_length=self.cfg.doc_max_length,
            hard_negatives=hard_negatives,
            template=self.cfg.query_template,
            instruction_mode=self.cfg.instruction_mode,
        )

    def setup(self, stage: str | None = None) -> None:
        """Load, validate and sample all training and validation data (idempotent)."""
        if self.mixture is None:
            self.mixture = build_mixture(self.cfg, self.seed)
            self.train_examples = self.mixture.examples
            rank_zero_only(print_counts)(self.mixture.counts)
        if not self.val_examples and self.cfg.val_files:
            self.val_examples = load_all(self.cfg.val_files, "data.val_files", self.cfg.on_error)

    def mixture_counts(self) -> dict[str, dict]:
        """Per-source counts (loaded, rejected, filtered, ratio, cap, used, share) for logs and the run record."""
        return {name: dict(c) for name, c in self.mixture.counts.items()} if self.mixture else {}

    def train_sampler(self) -> SourceBatchSampler:
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = SourceBatchSampler(self.mixture.source_ids, self.cfg.batch_size, self.seed,
                                     mode=self.cfg.batching, drop_last=self.cfg.drop_last, num_replicas=world,
                                     rank=rank, lengths=self.record_lengths() if self.cfg.group_by_length else None,
                                     length_window=self.cfg.length_window)
        if sampler.mode == "same_source":
            covered = set().union(*sampler.source_of_batches()) if len(sampler) else set()
            for index, name in enumerate(self.mixture.names):
                if index not in covered:
                    log.warning("data.batching=same_source: source %s has fewer records than one global batch "
                                "(%d) and is not trained on", name, sampler.batch_size * world)
        return sampler

    def record_lengths(self) -> list[int]:
        """A record's size for length grouping: characters of its query and documents (a cheap stand-in
        for tokens that needs no tokenisation of the whole mixture)."""
        return [len(e.query) + len(e.positive) + sum(len(n) for n in e.negatives) for e in self.train_examples]

    def train_dataloader(self) -> DataLoader:
        self.sampler = self.train_sampler()
        self._resume_sampler()
        return DataLoader(
            ExampleDataset(self.train_examples),
            batch_size=None,  # each item the sampler yields is one batch
            sampler=self.sampler,
            collate_fn=self.collator(self.cfg.hard_negatives),
            **self.loader_options(),
        )

    def on_gpu(self) -> bool:
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def loader_options(self) -> dict:
        """DataLoader settings from `data.num_workers` and `data.pin_memory` (conf/data/base/common.yaml).

        auto workers: tokenisation and collation leave the main process on a GPU, where a step takes
        milliseconds; on CPU they stay in it (they are a small part of a CPU step, and worker processes
        would take cores from it). Pinned batches let Lightning's non-blocking copies overlap the step.
        """
        workers, pin = self.cfg.num_workers, self.cfg.pin_memory  # types checked by DataSettings
        if workers == "auto":
            workers = AUTO_GPU_WORKERS if self.on_gpu() else 0
        if pin == "auto":
            pin = self.on_gpu()
        # Persistent workers: forked once per fit, not once per epoch and validation pass.
        return {"num_workers": workers, "pin_memory": pin, "persistent_workers": workers > 0}

    # -- exact resume: Lightning stores this in every checkpoint and hands it back on resume ----------
    def state_dict(self) -> dict:
        trainer = getattr(self, "trainer", None)
        if trainer is None or self.sampler is None:
            return {}
        # Step checkpoints are written at the end of a batch: it is processed, not yet counted as completed.
        # The loop's count, not the sampler's: the DataLoader fetches ahead of training.
        trained = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"seed": self.seed, "mode": self.sampler.mode, "epoch": trainer.current_epoch,
                "batches_trained": int(trained), "batches_in_epoch": len(self.sampler)}

    def load_state_dict(self, state: dict) -> None:
        self._resume = dict(state) if state else None
        if self.sampler is not None:
            # FSDP restores after its set-up, which has already built the train loader (the scheduler
            # counts its batches): that loader's sampler resumes, as it has not been iterated yet.
            self._resume_sampler()

    def _resume_sampler(self) -> None:
        state, self._resume = self._resume, None
        if state and 0 < state["batches_trained"] < state["batches_in_epoch"]:
            # A mid-epoch checkpoint: this epoch's order again, without the batches already trained.
            self.sampler.load_state_dict({"seed": state["seed"], "mode": state["mode"], "epoch": state["epoch"],
                                          "batches_yielded": state["batches_trained"]})

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_examples:
            return []
        positive_ids: dict[str, int] = {}
        for example in self.val_examples:
            positive_ids.setdefault(example.positive, len(positive_ids))
        return DataLoader(
            ExampleDataset(self.val_examples),
            batch_size=self.cfg.val_batch_size,
            shuffle=False,
            collate_fn=ValidationCollator(self.collator(0), positive_ids),
            **self.loader_options(),
        )
