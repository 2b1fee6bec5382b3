"""Encode many texts through Lightning's predict loop, so one command uses every GPU and node.

Texts are tokenised once and grouped into length-sorted batches (as `Encoder.encode` does); each
dataset item is one whole batch, so Lightning's distributed sampler hands whole batches to ranks.
Every rank writes its (row indices, embeddings) to a shard file; rank 0 assembles them in order.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from embedforge.model.tokenize import pad, token_ids


class _Batches(Dataset):
    """Item i = (row indices, padded features) of the i-th length-sorted batch."""

    def __init__(self, tokenizer, ids: list[list[int]], batch_size: int):
        order = np.argsort([-len(row) for row in ids], kind="stable")
        self.tokenizer, self.ids = tokenizer, ids
        self.groups = [order[start:start + batch_size] for start in range(0, len(ids), batch_size)]

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int):
        rows = self.groups[i]
        return torch.as_tensor(rows), pad(self.tokenizer, [self.ids[r] for r in rows])


class EncodeModule(pl.LightningModule):
    """predict_step = the encoder's forward (pooling + normalisation) on one padded batch."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def predict_step(self, batch, batch_idx: int):
        rows, features = batch
        device = self.device
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            emb = self.encoder(features["input_ids"], features["attention_mask"])
        return rows.cpu(), emb.float().cpu()


class _ShardWriter(BasePredictionWriter):
    def __init__(self, folder: Path):
        super().__init__(write_interval="epoch")
        self.folder = folder

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
        rows = torch.cat([r for r, _ in predictions]) if predictions else torch.empty(0, dtype=torch.long)
        embs = torch.cat([e for _, e in predictions]) if predictions else torch.empty(0)
        torch.save({"rows": rows, "embeddings": embs}, self.folder / f"shard-{trainer.global_rank}.pt")


def encode_texts(encoder, texts: list[str], *, work_dir: Path, batch_size: int, max_length: int | None = None,
                 trainer_kwargs: dict | None = None) -> np.ndarray | None:
    """Embeddings of `texts` (float32, row i = texts[i]) on global rank 0; None on other ranks.

    `work_dir` holds the per-rank shards while they are assembled: it must be the same path on
    every rank (on several nodes: a shared file system). It is removed afterwards.
    """
    if not texts:
        raise ValueError("encode_texts: no texts to encode")
    ids = token_ids(encoder.tokenizer, list(texts), max_length or encoder.max_length)
    loader = DataLoader(_Batches(encoder.tokenizer, ids, batch_size), batch_size=None, shuffle=False)
    kwargs = {"accelerator": "auto", "devices": "auto", "logger": False, "enable_checkpointing": False,
              "enable_model_summary": False, "enable_progress_bar": False, **(trainer_kwargs or {})}
    was_training = encoder.training
    shard_dir = Path(work_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    for stale in shard_dir.glob("shard-*.pt"):  # left by an interrupted run
        stale.unlink()
    trainer = pl.Trainer(callbacks=[_ShardWriter(shard_dir)], **kwargs)
    with warnings.catch_warnings():
        # Each loader item is a whole batch (batch_size=None), so Lightning cannot infer batch indices; the
        # rows travel inside the batch instead.
        warnings.filterwarnings("ignore", message=".*Couldn't infer the batch indices.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
        trainer.predict(EncodeModule(encoder), dataloaders=loader, return_predictions=False)
    encoder.train(was_training)
    trainer.strategy.barrier()
    if not trainer.is_global_zero:
        return None
    result, seen = None, np.zeros(len(texts), dtype=bool)
    for shard in sorted(shard_dir.glob("shard-*.pt")):
        data = torch.load(shard)
        if result is None:
            result = np.zeros((len(texts), data["embeddings"].shape[-1]), dtype=np.float32)
        if len(data["rows"]):
            rows = data["rows"].numpy()
            result[rows] = data["embeddings"].numpy()
            seen[rows] = True
    shutil.rmtree(shard_dir, ignore_errors=True)
    if result is None or not seen.all():
        raise RuntimeError(f"encode_texts: the predict loop returned {int(seen.sum())} of {len(texts)} embeddings")
    return result
