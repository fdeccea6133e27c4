"""torch access to a store: a batched Dataset and a shard-aware shuffling sampler.

    loader = make_loader(store, batch_size=256, fields=("grid",), rows=train_rows)
    for batch in loader:            # {"rows": [B] int64, "grid": [B, H*W, C] float16, ...}
        ...

Random access over a sharded store is fast already (see shardio), but reads that stay inside
a few shards reuse cached shard indexes and hit the page cache / object store sequentially.
`ShardShuffleSampler` gives that locality while keeping SGD's randomness: shards are visited
in random order, and rows are shuffled within a sliding buffer of `buffer_shards` shards
(the same idea as webdataset's shard + buffer shuffle).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .reader import FeatureStore, open_store

__all__ = ["FeatureDataset", "ShardShuffleSampler", "make_loader", "shard_shuffle"]


class FeatureDataset(Dataset):
    """Map-style dataset indexed by store row. `__getitems__` reads a whole batch at once and
    returns it already collated: {"rows": LongTensor[B], field: Tensor[B, ...], ...}."""

    def __init__(self, store: FeatureStore | str, fields: Sequence[str] = ("grid",)) -> None:
        self._store = store if isinstance(store, FeatureStore) else None
        self.url = store.url if isinstance(store, FeatureStore) else str(store)
        self.allow_partial = store.allow_partial if isinstance(store, FeatureStore) else False
        self.fields = tuple(fields)

    @property
    def store(self) -> FeatureStore:
        if self._store is None:  # reopened lazily in each DataLoader worker process
            self._store = open_store(self.url, allow_partial=self.allow_partial)
        return self._store

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_store"] = None  # thread pools and file descriptors do not cross processes
        return d

    def __len__(self) -> int:
        return len(self.store)

    def __getitems__(self, rows: Sequence[int]) -> dict[str, torch.Tensor]:
        rows = np.asarray(rows, dtype=np.int64)
        out = {k: torch.from_numpy(v) for k, v in self.store.batch(rows, self.fields).items()}
        out["rows"] = torch.from_numpy(rows)
        return out

    def __getitem__(self, row: int) -> dict[str, torch.Tensor]:
        b = self.__getitems__([row])
        return {k: v[0] for k, v in b.items()}


def shard_shuffle(
    rows: np.ndarray, shard_size: int, *, buffer_shards: int = 4, shuffle: bool = True, seed: int = 0, epoch: int = 0
) -> np.ndarray:
    """Positions into `rows` (store rows, repeats allowed: e.g. one per question of an image)
    in shard-local random order: shards in random order, positions shuffled within a buffer
    of `buffer_shards` shards. A function of (rows, seed, epoch) only. int64 [len(rows)]."""
    rows = np.asarray(rows, dtype=np.int64)
    shard_of = rows // shard_size
    order = np.argsort(shard_of, kind="stable")
    cuts = np.flatnonzero(np.diff(shard_of[order])) + 1
    groups = np.split(order, cuts) if len(rows) else []
    rng = np.random.default_rng([seed, epoch])
    if shuffle:
        groups = [groups[i] for i in rng.permutation(len(groups))]
    buffer_shards = max(1, int(buffer_shards))
    out = []
    for i in range(0, len(groups), buffer_shards):
        buf = np.concatenate(groups[i : i + buffer_shards])
        out.append(buf[rng.permutation(len(buf))] if shuffle else buf)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


class ShardShuffleSampler(Sampler[int]):
    """Yields store rows: random shard order, rows shuffled within a buffer of shards.

    rows: the rows to draw from (a split, or `store.done_rows()`); default all rows.
    buffer_shards: shards whose rows are mixed together (1 = shard-local order only).
    Call `set_epoch(e)` each epoch for a new order (as with DistributedSampler).
    """

    def __init__(
        self,
        store: FeatureStore,
        *,
        rows: Sequence[int] | np.ndarray | None = None,
        buffer_shards: int = 4,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        self.rows = store.done_rows() if rows is None else np.asarray(rows, dtype=np.int64)
        self.shard_size = store.meta.shards.size
        self.buffer_shards = buffer_shards
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        pos = shard_shuffle(self.rows, self.shard_size, buffer_shards=self.buffer_shards,
                            shuffle=self.shuffle, seed=self.seed, epoch=self.epoch)
        yield from self.rows[pos].tolist()

    def __len__(self) -> int:
        return len(self.rows)


def _already_collated(batch):
    return batch


def make_loader(
    store: FeatureStore,
    *,
    batch_size: int,
    fields: Sequence[str] = ("grid",),
    rows: Sequence[int] | np.ndarray | None = None,
    buffer_shards: int = 4,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    num_workers: int = 0,
) -> DataLoader:
    """A DataLoader over `store` with the shard-shuffle sampler and whole-batch reads.

    num_workers=0 is usually fastest: batch reads already decode in a thread pool (the codecs
    release the GIL), and worker processes would add a copy of every batch through shared
    memory.
    """
    sampler = ShardShuffleSampler(store, rows=rows, buffer_shards=buffer_shards, shuffle=shuffle, seed=seed)
    return DataLoader(
        FeatureDataset(store, fields),
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        collate_fn=_already_collated,
        persistent_workers=num_workers > 0,
    )
