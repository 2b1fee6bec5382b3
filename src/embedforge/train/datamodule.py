"""DataModule: Example JSONL files -> shuffled contrastive batches and validation batches."""

from __future__ import annotations

import glob
import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from embedforge.data.collate import ContrastiveCollator
from embedforge.data.jsonl import DataFileError, load_examples
from embedforge.data.schema import Example
from embedforge.paths import REPO_ROOT

log = logging.getLogger(__name__)


def expand_files(patterns, key: str) -> list[Path]:
    """Resolve file names and globs (relative to the working directory, then the repository)."""
    if isinstance(patterns, (str, Path)):
        patterns = [patterns]
    files: list[Path] = []
    for pattern in patterns:
        pattern = str(pattern)
        matches = sorted(glob.glob(pattern)) or sorted(glob.glob(str(REPO_ROOT / pattern)))
        if not matches:
            raise DataFileError(f"{key}: no data file matches '{pattern}'")
        files += [Path(m) for m in matches]
    return files


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
    def __init__(self, examples: list[Example]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Example:
        return self.examples[index]


class EpochShuffleSampler(Sampler[int]):
    """A permutation that depends only on (seed, epoch), so a run resumed at an epoch boundary
    sees exactly the order an uninterrupted run would. Lightning calls set_epoch each epoch."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())


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
    def __init__(self, data_cfg, tokenizer, seed: int = 0):
        super().__init__()
        self.cfg = data_cfg
        self.tokenizer = tokenizer
        self.seed = seed
        self.train_examples: list[Example] = []
        self.val_examples: list[Example] = []

    def collator(self, hard_negatives: int) -> ContrastiveCollator:
        return ContrastiveCollator(
            tokenizer=self.tokenizer,
            query_max_length=int(self.cfg.query_max_length),
            doc_max_length=int(self.cfg.doc_max_length),
            hard_negatives=hard_negatives,
            template=self.cfg.query_template,
            instruction_mode=self.cfg.instruction_mode,
        )

    def setup(self, stage: str | None = None) -> None:
        if not self.train_examples:
            self.train_examples = load_all(self.cfg.train_files, "data.train_files", self.cfg.on_error)
            if self.cfg.get("max_train_examples"):
                self.train_examples = self.train_examples[: int(self.cfg.max_train_examples)]
        if not self.val_examples and self.cfg.get("val_files"):
            self.val_examples = load_all(self.cfg.val_files, "data.val_files", self.cfg.on_error)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            ExampleDataset(self.train_examples),
            batch_size=int(self.cfg.batch_size),
            sampler=EpochShuffleSampler(len(self.train_examples), self.seed),
            drop_last=bool(self.cfg.get("drop_last", True)),
            collate_fn=self.collator(int(self.cfg.hard_negatives)),
            num_workers=int(self.cfg.get("num_workers", 0)),
        )

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_examples:
            return []
        positive_ids: dict[str, int] = {}
        for example in self.val_examples:
            positive_ids.setdefault(example.positive, len(positive_ids))
        return DataLoader(
            ExampleDataset(self.val_examples),
            batch_size=int(self.cfg.get("val_batch_size", self.cfg.batch_size)),
            shuffle=False,
            collate_fn=ValidationCollator(self.collator(0), positive_ids),
            num_workers=int(self.cfg.get("num_workers", 0)),
        )
