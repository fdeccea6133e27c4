"""Read a feature store: `open_store(url) -> FeatureStore`.

    fs = open_store("features/coco-RN50x4.zarr")          # or https://…/x.zarr, s3://…
    rows = [fs.index(k) for k in ("139", "285")]
    grid = fs.grid(rows)                                   # [B, H*W, C] float16
    pooled = fs.pooled(rows)                               # [B, D]

Stores are opened read-only. An incomplete store (a job still writing, or one that died)
opens only with `allow_partial=True`, and then only rows of done shards can be read.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from .errors import (
    IncompleteStoreError,
    NotAStoreError,
    RowNotAvailableError,
    UnreachableError,
)
from .location import Location
from .schema import ATTR, StoreMeta
from .shardio import ArrayReader, default_threads
from .status import ShardStatus

__all__ = ["FeatureStore", "open_store"]

RowsLike = int | slice | Sequence[int] | np.ndarray


class FeatureStore:
    """A read-only view of one store. Thread-safe for reads."""

    def __init__(self, loc: Location, group, meta: StoreMeta, *, allow_partial: bool, threads: int) -> None:
        self.loc = loc
        self.url = loc.url
        self.meta = meta
        self.group = group
        self.allow_partial = allow_partial
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="clipfeat-read")
        self._readers: dict[str, ArrayReader] = {}
        self._keys: list[str] | None = None
        self._key_index: dict[str, int] | None = None
        self._status: list[ShardStatus | None] | None = None
        self._done_mask: np.ndarray | None = None

    # -- identity and layout --------------------------------------------------------------
    def __len__(self) -> int:
        return self.meta.dataset.num_items

    def __repr__(self) -> str:
        m = self.meta
        return (
            f"FeatureStore({self.url!r}, dataset={m.dataset.name}, model={m.encoder.model}, "
            f"items={len(self)}, status={m.status})"
        )

    @property
    def arrays(self) -> list[str]:
        return self.meta.layout.arrays()

    @property
    def keys(self) -> list[str]:
        """Row keys in row order (COCO/VG image id, R2R `{scan}_{viewpoint}`)."""
        if self._keys is None:
            self._keys = [str(k) for k in self.group["keys"][:]]
        return self._keys

    def index(self, key: str | int) -> int:
        """Row of `key`; KeyError if the store has no such key."""
        if self._key_index is None:
            self._key_index = {k: i for i, k in enumerate(self.keys)}
        try:
            return self._key_index[str(key)]
        except KeyError:
            raise KeyError(f"key {key!r} is not in {self.url}") from None

    # -- progress -------------------------------------------------------------------------
    def shard_status(self) -> list[ShardStatus | None]:
        """One record per shard (None: never written). Read once and cached."""
        if self._status is None:
            raw = self.group["shard_status"][:]
            self._status = [ShardStatus.from_json(str(r)) for r in raw]
        return self._status

    def done_shards(self) -> list[int]:
        return [k for k, r in enumerate(self.shard_status()) if r is not None and r.done]

    def _done(self) -> np.ndarray:
        if self._done_mask is None:
            mask = np.zeros(len(self), dtype=bool)
            for r in self.shard_status():
                if r is not None and r.done:
                    mask[r.start : r.stop] = True
            self._done_mask = mask
        return self._done_mask

    def failed_rows(self) -> dict[int, str]:
        """row -> reason, over done shards (those rows hold zeros)."""
        out: dict[int, str] = {}
        for r in self.shard_status():
            if r is not None and r.done:
                out.update(r.failed)
        return out

    def done_rows(self) -> np.ndarray:
        """Rows whose features are available: in done shards and not failed. int64 [M]."""
        mask = self._done().copy()
        failed = list(self.failed_rows())
        if failed:
            mask[failed] = False
        return np.flatnonzero(mask)

    # -- reads ----------------------------------------------------------------------------
    def _rows(self, rows: RowsLike) -> tuple[np.ndarray, bool]:
        """Normalise to a 1-D int64 array; also say whether the caller passed a scalar."""
        if isinstance(rows, (int, np.integer)):
            arr, scalar = np.array([int(rows)], dtype=np.int64), True
        elif isinstance(rows, slice):
            arr, scalar = np.arange(*rows.indices(len(self)), dtype=np.int64), False
        else:
            arr, scalar = np.asarray(rows, dtype=np.int64).reshape(-1), False
        if len(arr):
            arr = np.where(arr < 0, arr + len(self), arr)
            if arr.min() < 0 or arr.max() >= len(self):
                raise RowNotAvailableError(f"row out of range 0..{len(self) - 1}")
            if self.meta.status != "complete":  # complete stores have every shard done
                done = self._done()
                if not done[arr].all():
                    r = int(arr[~done[arr]][0])
                    raise RowNotAvailableError(
                        f"row {r} (shard {r // self.meta.shards.size}) of {self.url} is not written yet; "
                        "use done_rows() to pick readable rows"
                    )
        return arr, scalar

    def _reader(self, name: str) -> ArrayReader:
        rd = self._readers.get(name)
        if rd is None:
            if name not in self.arrays:
                raise KeyError(f"{self.url} has no `{name}` array (it has: {', '.join(self.arrays)})")
            rd = ArrayReader(self.loc, name, self.group[name], self._pool)
            self._readers[name] = rd
        return rd

    def read(self, name: str, rows: RowsLike) -> np.ndarray:
        """Raw rows of array `name` ('pooled', 'grid', 'grid_hw'), padding included."""
        arr, scalar = self._rows(rows)
        if name == "grid_hw" and not self.meta.layout.variable_grid:
            hw = self.meta.layout.grid_hw
            out = np.tile(np.asarray(hw, dtype=np.int32), (len(arr), 1))
        else:
            out = self._reader(name).read(arr)
        return out[0] if scalar else out

    def pooled(self, rows: RowsLike) -> np.ndarray:
        """CLIP image embeddings: [B, (V,) D] (or [(V,) D] for a scalar row)."""
        return self.read("pooled", rows)

    def grid(self, rows: RowsLike) -> np.ndarray:
        """Grid features [B, (V,) cells, C]. Variable grids are trimmed to the batch's largest
        grid (cells = max h*w over the batch); pair with `grid_hw(rows)` for the mask."""
        arr, scalar = self._rows(rows)
        g = self._reader("grid").read(arr)
        if self.meta.layout.variable_grid and len(arr):
            hw = self.read("grid_hw", arr)
            g = g[:, : int((hw[:, 0] * hw[:, 1]).max())]
        return g[0] if scalar else g

    def grid_hw(self, rows: RowsLike) -> np.ndarray:
        """[B, 2] int32 grid height and width of each row (constant for fixed grids)."""
        return self.read("grid_hw", rows)

    def batch(self, rows: RowsLike, fields: Sequence[str] = ("pooled", "grid")) -> dict[str, np.ndarray]:
        """Several arrays for the same rows. For variable grids adds 'grid_hw' and a boolean
        'grid_mask' [B, cells] (True = real cell)."""
        arr, _ = self._rows(rows)
        out = {}
        for f in fields:
            out[f] = self.grid(arr) if f == "grid" else self.read(f, arr)
        if "grid" in fields and self.meta.layout.variable_grid:
            hw = self.read("grid_hw", arr)
            cells = out["grid"].shape[1]
            out["grid_hw"] = hw
            out["grid_mask"] = np.arange(cells)[None, :] < (hw[:, 0] * hw[:, 1])[:, None]
        return out

    def to_dask(self, name: str = "grid"):
        """A dask array over `name`, one dask chunk per store shard, read with the fast reader."""
        import dask.array as da

        rd = self._reader(name)
        return da.from_array(_DaskAdapter(self, name, rd), chunks=(self.meta.shards.size,) + rd.item_shape, asarray=True)

    def close(self) -> None:
        for rd in self._readers.values():
            rd.close()
        self._pool.shutdown(wait=False)

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _DaskAdapter:
    """Array-like that dask slices along axis 0; other axes are sliced after the read."""

    def __init__(self, store: FeatureStore, name: str, rd: ArrayReader) -> None:
        self.store, self.name = store, name
        self.shape = (len(store),) + rd.item_shape
        self.dtype = rd.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, sel):
        sel = sel if isinstance(sel, tuple) else (sel,)
        head, rest = sel[0], sel[1:]
        rows = np.arange(*head.indices(self.shape[0])) if isinstance(head, slice) else np.asarray(head)
        vals = self.store.read(self.name, rows)
        return vals[(slice(None),) + rest] if rest else vals


def open_store(
    url: str,
    *,
    allow_partial: bool = False,
    threads: int | None = None,
    storage_options: dict | None = None,
) -> FeatureStore:
    """Open the store at `url` (a path or any fsspec URL) read-only.

    allow_partial: open a store that is still being written; only done shards are readable.
    threads: decode threads for batch reads (default: CPU count, at most 8).
    """
    import zarr

    loc = Location.parse(url, storage_options)
    raw = loc.read_bytes("zarr.json")
    if raw is None:
        if loc.local and not loc.fs.exists(loc.root):
            raise NotAStoreError(f"{url} does not exist; check the path")
        raise NotAStoreError(f"{url} is not a clipfeat store (no zarr.json); check the path")
    try:
        doc = json.loads(raw)
    except ValueError:
        raise NotAStoreError(f"{url}: zarr.json is not valid JSON; the store is damaged") from None
    if doc.get("zarr_format") != 3 or doc.get("node_type") != "group":
        raise NotAStoreError(f"{url} is not a Zarr v3 group; clipfeat stores are Zarr v3")
    attrs = doc.get("attributes", {})
    if ATTR not in attrs:
        raise NotAStoreError(f"{url} is a Zarr group but not a clipfeat store (no `{ATTR}` attribute)")
    meta = StoreMeta.from_json(attrs[ATTR], where=url)
    if meta.status != "complete" and not allow_partial:
        raise IncompleteStoreError(
            f"{url} is still being written (status {meta.status!r}); wait for the job, or pass "
            "allow_partial=True / --allow-partial to read its done shards"
        )
    try:
        group = zarr.open_group(loc.zarr_store(read_only=True), mode="r", use_consolidated=None)
    except FileNotFoundError:
        raise NotAStoreError(f"{url}: group metadata unreadable; the store is damaged") from None
    except OSError as e:
        raise UnreachableError(f"cannot open {url}: {e}") from None
    for name in ["keys", "shard_status", *meta.layout.arrays()]:
        if name not in group:
            raise NotAStoreError(f"{url} lacks the `{name}` array its layout promises; the store is damaged")
    return FeatureStore(loc, group, meta, allow_partial=allow_partial, threads=threads or default_threads())
