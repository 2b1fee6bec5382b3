"""Which records form each training batch: `mixed` (one shuffled order over all sources) or
`same_source` (every batch from one source, sources drawn in proportion to their size, so in-batch
negatives come from the same task).

The order depends only on (seed, epoch): a run resumed mid-epoch skips the batches it already
trained (`load_state_dict`). Under DDP every rank builds the same global batches of
`batch_size * world_size` records and takes its own slice, so at any step all ranks hold records of
the same source. With one process, `mixed` gives exactly the batches of
DataLoader(sampler=randperm(seed * 100003 + epoch), batch_size, drop_last): the order the data
module has always used.
"""

from __future__ import annotations

import torch
from torch.utils.data import DistributedSampler

from embedforge.errors import ConfigError

BATCHING_MODES = ("mixed", "same_source")


def _generator(*parts: int) -> torch.Generator:
    seed = 0
    for part in parts:
        seed = (seed * 1_000_003 + int(part)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


class SourceBatchSampler(DistributedSampler):
    """Yields this rank's list of record indices for each step of an epoch.

    It is a DistributedSampler only so that Lightning leaves it in place under DDP (it shards by
    itself, rank by rank); it is used with DataLoader(batch_size=None), so each item is one batch.
    Lightning calls `set_epoch` at the start of every epoch.
    """

    def __init__(self, source_ids: list[int], batch_size: int, seed: int, mode: str = "mixed",
                 drop_last: bool = True, num_replicas: int = 1, rank: int = 0,
                 lengths: list[int] | None = None, length_window: int = 64):
        if mode not in BATCHING_MODES:
            raise ConfigError(f"data.batching: unknown mode '{mode}' (expected one of: {', '.join(BATCHING_MODES)})")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} out of range for {num_replicas} replicas")
        self.source_ids = torch.as_tensor(source_ids, dtype=torch.long)
        self.batch_size, self.seed, self.mode = int(batch_size), int(seed), mode
        # With several ranks an incomplete global batch cannot be split evenly: it is always dropped.
        self.drop_last = bool(drop_last) or num_replicas > 1
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch, self.shuffle = 0, True
        # Length grouping: within windows of `length_window` global batches of the shuffled order,
        # records are sorted by length before batching, so a batch pads to similar lengths; the
        # batches are then shuffled, so long and short ones still alternate.
        self.lengths = None if lengths is None else torch.as_tensor(lengths, dtype=torch.long)
        if self.lengths is not None and len(self.lengths) != len(self.source_ids):
            raise ValueError(f"lengths: {len(self.lengths)} values for {len(self.source_ids)} records")
        if int(length_window) < 1:
            raise ConfigError(f"data.length_window: must be >= 1, got {length_window}")
        self.length_window = int(length_window)
        self._yielded = 0        # batches handed out in the current pass
        self._skip_next = 0      # batches to skip at the start of the next pass (resume)

    # -- the order ---------------------------------------------------------------------------------

    def global_batches(self, epoch: int | None = None) -> list[torch.Tensor]:
        """All global batches (index tensors of up to batch_size * world records) of an epoch, in order."""
        epoch = self.epoch if epoch is None else epoch
        size = self.batch_size * self.num_replicas
        if self.mode == "mixed":
            order = torch.randperm(len(self.source_ids), generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
            if self.lengths is None:
                return self._chunks(order, size)
            batches = self._chunks(self._length_grouped(order, size), size)
            shuffle = torch.randperm(len(batches), generator=_generator(self.seed, epoch, 0))
            return [batches[i] for i in shuffle.tolist()]
        batches: list[torch.Tensor] = []
        for source in torch.unique(self.source_ids).tolist():
            members = (self.source_ids == source).nonzero(as_tuple=True)[0]
            shuffled = members[torch.randperm(len(members), generator=_generator(self.seed, epoch, source + 1))]
            if self.lengths is not None:
                shuffled = self._length_grouped(shuffled, size)
            batches += self._chunks(shuffled, size)
        # Shuffling the list of batches draws each source in proportion to its number of batches.
        order = torch.randperm(len(batches), generator=_generator(self.seed, epoch, 0))
        return [batches[i] for i in order.tolist()]

    def _length_grouped(self, order: torch.Tensor, size: int) -> torch.Tensor:
        window = size * self.length_window
        parts = []
        for start in range(0, len(order), window):
            part = order[start:start + window]
            parts.append(part[torch.argsort(self.lengths[part], descending=True, stable=True)])
        return torch.cat(parts) if parts else order

    def _chunks(self, indices: torch.Tensor, size: int) -> list[torch.Tensor]:
        chunks = list(torch.split(indices, size))
        if chunks and self.drop_last and len(chunks[-1]) < size:
            chunks.pop()
        return chunks

    def rank_slice(self, batch: torch.Tensor) -> list[int]:
        return batch[self.rank * self.batch_size:(self.rank + 1) * self.batch_size].tolist()

    # -- the Sampler protocol ------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.global_batches())

    def __iter__(self):
        skip, self._skip_next = self._skip_next, 0
        self._yielded = skip
        for batch in self.global_batches()[skip:]:
            self._yielded += 1
            yield self.rank_slice(batch)

    # -- resume ----------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Epoch and batches handed out so far in it. Note that a DataLoader fetches ahead, so the
        number of batches *trained* (e.g. the loop's batch index) is the safer value to store."""
        return {"seed": self.seed, "epoch": self.epoch, "batches_yielded": self._yielded, "mode": self.mode}

    def load_state_dict(self, state: dict) -> None:
        """The next pass starts at batch `batches_yielded` of epoch `epoch` (same seed and data)."""
        if int(state.get("seed", self.seed)) != self.seed or state.get("mode", self.mode) != self.mode:
            raise ValueError(f"sampler state is for seed={state.get('seed')} mode={state.get('mode')}, "
                             f"this run has seed={self.seed} mode={self.mode}")
        self.epoch = int(state["epoch"])
        self._skip_next = int(state["batches_yielded"])

    def source_of_batches(self, epoch: int | None = None) -> list[set[int]]:
        """The set of sources in each global batch (for checks and logs)."""
        return [set(self.source_ids[b].tolist()) for b in self.global_batches(epoch)]
