"""What every trainer over per-image grid stores shares: reading a batch of images' grids once,
their cell boxes, the per-channel feature normalisation, and a string <-> id vocabulary.

    feats = read_grids(store, rows)    # {"grid" [B, N, C] f16, "mask" [B, N] | None, "pos" [B, N, 4]}
    model.v_norm.fit(feats["grid"], feats["mask"])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from clipfeat.features import FeatureStore
from clipfeat.features.torch_data import shard_shuffle

from .config import ConfigError

__all__ = ["FeatureNorm", "RowBatches", "Vocab", "cell_positions", "read_grids", "require_grids", "store_rows"]


@dataclass
class Vocab:
    """Index <-> string."""

    itos: list[str]
    stoi: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)


def cell_positions(hw: torch.Tensor, cells: int) -> torch.Tensor:
    """Grid cell boxes [B, cells, 4] = (x0, y0, x1, y1) in [0, 1] from grid sizes hw [B, 2]
    (row-major cells, as the store flattens H×W). Padding cells get zeros."""
    i = torch.arange(cells).unsqueeze(0)  # [1, cells]
    h, w = hw[:, :1].float(), hw[:, 1:].float()  # [B, 1]
    r, c = torch.div(i, hw[:, 1:], rounding_mode="floor").float(), (i % hw[:, 1:]).float()
    pos = torch.stack([c / w, r / h, (c + 1) / w, (r + 1) / h], dim=-1)
    return pos * (i < hw[:, :1] * hw[:, 1:]).unsqueeze(-1)


def require_grids(store: FeatureStore) -> int:
    """The grid channels C of a store with one grid per image (COCO, VG, Flickr30k stores);
    a one-line error for stores without grids or with several views per item (R2R)."""
    layout = store.meta.layout
    if layout.grid_channels is None or layout.views:
        raise ConfigError(f"{store.url} has no per-image grid features; extract an image dataset with --grid")
    return layout.grid_channels


def store_rows(store: FeatureStore, keys) -> tuple[np.ndarray, np.ndarray]:
    """Which of `keys` (image ids, one per sample) have features in the store, and their rows:
    (positions into keys [K], store rows [K]). Keys not in the store, failed or not yet
    extracted are left out (the caller counts them, or fails with --strict)."""
    available = np.zeros(len(store), dtype=bool)
    available[store.done_rows()] = True
    keep, rows = [], []
    for j, key in enumerate(keys):
        try:
            r = store.index(key)
        except KeyError:
            continue
        if available[r]:
            keep.append(j)
            rows.append(r)
    return np.array(keep, dtype=np.int64), np.array(rows, dtype=np.int64)


def read_grids(store: FeatureStore, rows: np.ndarray, *, pooled: bool = False) -> dict[str, torch.Tensor | None]:
    """Grids of store rows `rows` [B] (repeats allowed: each distinct row is read once).

    Returns "grid" [B, N, C] (store dtype), "mask" [B, N] bool (True = real cell; None for
    fixed-size grids, where every cell is real), "pos" [B, N, 4] cell boxes, and with `pooled`
    also "pooled" [B, D].
    """
    uniq, inverse = np.unique(rows, return_inverse=True)
    feats = store.batch(uniq, ("grid", "pooled") if pooled else ("grid",))
    inv = torch.from_numpy(inverse)
    grid = torch.from_numpy(feats["grid"])[inv]
    if "grid_mask" in feats:
        mask = torch.from_numpy(feats["grid_mask"])[inv]
        hw = torch.from_numpy(feats["grid_hw"]).long()[inv]
    else:
        mask = None
        hw = torch.tensor(store.meta.layout.grid_hw).expand(len(rows), 2)
    out = {"grid": grid, "mask": mask, "pos": cell_positions(hw, grid.shape[1])}
    if pooled:
        out["pooled"] = torch.from_numpy(feats["pooled"])[inv]
    return out


class RowBatches:
    """What the task loaders share: a split whose samples are store rows (`split.rows` [S]),
    cut into batches of `batch_size` samples. Training order: `shard_shuffle` over the rows (a
    function of (seed, epoch), reading a few shards at a time); evaluation order: the split's."""

    def __init__(self, split, store: FeatureStore, *, batch_size: int, shuffle: bool, seed: int = 0,
                 buffer_shards: int = 4) -> None:
        self.split, self.store = split, store
        self.batch_size, self.shuffle, self.seed, self.buffer_shards = batch_size, shuffle, seed, buffer_shards

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.split))
        return shard_shuffle(self.split.rows, self.store.meta.shards.size, buffer_shards=self.buffer_shards,
                             seed=self.seed, epoch=epoch)


class FeatureNorm(nn.Module):
    """Per-channel standardisation with statistics of the training features, kept as buffers
    so checkpoints carry them. CLIP layer4 activations are large and uncentred (and a random
    tiny encoder's are ~1e-4, below LayerNorm's eps), so a fixed-scale norm would not do."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    @torch.no_grad()
    def fit(self, grid: torch.Tensor, mask: torch.Tensor | None) -> None:
        """grid [B, N, C] sample of training features, mask [B, N] True = real cell.
        A pooled sample [B, C] works too (every row real)."""
        cells = grid.float().reshape(-1, grid.shape[-1]) if mask is None else grid.float()[mask]  # [M, C]
        self.mean.copy_(cells.mean(0))
        self.std.copy_(cells.std(0).clamp_min(1e-3 * float(cells.std()) + 1e-12))  # dead channels stay finite

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
