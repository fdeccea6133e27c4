"""Create a feature store and write it one pipeline shard at a time.

    writer = create_store("features/coco-RN50x4.zarr", meta=meta, keys=manifest_keys)
    for k in writer.pending_shards():
        writer.write_shard(k, pooled=p, grid=g, failed={row: "truncated JPEG"})
    writer.finalize()

Rules that make concurrent, resumable writing safe (zarr-python 3 loses data on concurrent
partial-shard writes, so alignment is a correctness rule):
  * every call writes whole Zarr shards (one pipeline shard = one Zarr shard per array);
  * the shard's status record is written after its data, so a crash in between only means
    the shard is recomputed;
  * re-writing a shard writes the same bytes (idempotent);
  * one job holds the store lock; its workers attach with `open_writer(..., lock=False)`.
No Ray in here: the pipeline distributes, the writer only writes.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import warnings
from typing import Mapping, Sequence

import numpy as np

from .errors import (
    ClipfeatError,
    IncompleteStoreError,
    NotAStoreError,
    OutputExistsError,
    StoreMismatchError,
)
from .location import Location
from .lock import StoreLock
from .schema import ATTR, StoreMeta, clipfeat_version, describe_difference
from .status import ShardStatus, checksum, keys_checksum, row_crcs

__all__ = ["StoreWriter", "create_store", "open_writer", "CODECS"]

# Compressor of the feature arrays. zstd (byte-shuffled, via blosc) reaches ~0.56x of the raw
# float16 bytes on ReLU-sparse CLIP grids; lz4 decodes ~3x faster at ~0.9x; none is a plain copy.
CODECS = ("zstd", "lz4", "none")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _compressor(codec: str, item_nbytes: int):
    from zarr.codecs import BloscCodec

    if codec == "none":
        return None
    if codec not in CODECS:
        raise ClipfeatError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
    # One blosc block per item (<= 1 MiB) compresses better and decodes faster than blosc's
    # default 256 KiB blocks; byte shuffle groups the float16 exponent bytes together.
    block = int(min(max(item_nbytes, 1 << 16), 1 << 20))
    return BloscCodec(cname=codec, clevel=1, shuffle="shuffle", blocksize=block)


def _store_exists(loc: Location) -> bool:
    return loc.read_bytes("zarr.json") is not None


def _read_meta(loc: Location) -> StoreMeta:
    raw = loc.read_bytes("zarr.json")
    if raw is None:
        raise NotAStoreError(f"{loc.url} is not a clipfeat store (no zarr.json); check the path")
    attrs = json.loads(raw).get("attributes", {})
    if ATTR not in attrs:
        raise NotAStoreError(f"{loc.url} is a Zarr group but not a clipfeat store (no `{ATTR}` attribute)")
    return StoreMeta.from_json(attrs[ATTR], where=loc.url)


class StoreWriter:
    """Writes shards of one store. Get one from `create_store` or `open_writer`."""

    def __init__(self, loc: Location, meta: StoreMeta, lock: StoreLock | None) -> None:
        import zarr

        self.loc = loc
        self.meta = meta
        self._lock = lock
        self.group = zarr.open_group(loc.zarr_store(read_only=False), mode="r+")
        self._keys: np.ndarray | None = None
        self._encoders: dict = {}  # array name -> ShardEncoder (fast whole-shard writes)
        self._pool = None

    # -- state ----------------------------------------------------------------------------
    def shard_status(self, k: int) -> ShardStatus | None:
        return ShardStatus.from_json(str(self.group["shard_status"][k]))

    def shard_statuses(self) -> list[ShardStatus | None]:
        """Every shard's status record (None: never written), in one read."""
        return [ShardStatus.from_json(str(r)) for r in self.group["shard_status"][:]]

    def done_shards(self) -> set[int]:
        return {k for k, r in enumerate(self.shard_statuses()) if r is not None and r.done}

    def pending_shards(self) -> list[int]:
        done = self.done_shards()
        return [k for k in range(self.meta.shards.count) if k not in done]

    def shard_rows(self, k: int) -> range:
        return self.meta.shards.rows(k, self.meta.dataset.num_items)

    def keys(self) -> np.ndarray:
        if self._keys is None:
            self._keys = np.asarray(self.group["keys"][:], dtype=object)
        return self._keys

    # -- writing --------------------------------------------------------------------------
    def write_shard(
        self,
        k: int,
        *,
        pooled: np.ndarray,
        grid: np.ndarray | None = None,
        grid_hw: np.ndarray | None = None,
        keys: Sequence[str] | None = None,
        failed: Mapping[int, str] | None = None,
        timings: Mapping[str, float] | None = None,
    ) -> ShardStatus:
        """Write shard `k` whole, then its status record. Rows of `failed` are stored as zeros.

        pooled [n, (V,) D]; grid [n, (V,) cells, C]; grid_hw [n, 2] (variable grids only),
        where n is the shard's row count. `keys`, when given, must equal the store's keys
        for these rows (catches a shard written at the wrong place). `failed` maps global
        row -> reason.
        """
        lay = self.meta.layout
        if not 0 <= k < self.meta.shards.count:
            raise IndexError(f"shard {k} out of range 0..{self.meta.shards.count - 1}")
        rows = self.shard_rows(k)
        n = len(rows)
        if keys is not None and list(keys) != list(self.keys()[rows.start : rows.stop]):
            raise ValueError(f"shard {k}: keys do not match the store's keys for rows {rows.start}..{rows.stop - 1}")
        failed = dict(failed or {})
        bad = [r for r in failed if r not in rows]
        if bad:
            raise ValueError(f"shard {k}: failed rows {bad[:5]} are outside its rows {rows.start}..{rows.stop - 1}")
        values = {"pooled": pooled}
        if lay.has_grid:
            if grid is None:
                raise ValueError("this store has a grid: pass grid=")
            values["grid"] = grid
            if lay.variable_grid:
                if grid_hw is None:
                    raise ValueError("this store has variable grids: pass grid_hw=")
                values["grid_hw"] = grid_hw
        elif grid is not None:
            raise ValueError("this store has no grid array; its layout says grid_channels=None")
        t0 = time.perf_counter()
        record = ShardStatus(shard=k, start=rows.start, stop=rows.stop, done=True, failed=failed, written_at=_now())
        record.checksums["keys"] = keys_checksum(self.keys()[rows.start : rows.stop])
        local_failed = np.array(sorted(failed), dtype=np.int64) - rows.start
        for name in lay.arrays():
            dtype = np.int32 if name == "grid_hw" else np.dtype(lay.dtype)
            want = (n,) + lay.item_shape(name)
            v = np.asarray(values[name])
            if v.shape != want:
                raise ValueError(f"shard {k}: {name} has shape {v.shape}, expected {want}")
            v = v.astype(dtype, copy=True)
            if len(local_failed):
                v[local_failed] = 0
            self._write_whole_shard(name, k, rows, v)
            record.checksums[name] = checksum(v)
            record.row_crc32c[name] = row_crcs(v)
        record.timings = dict(timings or {}, write=time.perf_counter() - t0)
        # Last: the status record makes the shard count.
        self.group["shard_status"][k] = record.to_json()
        return record

    def _write_whole_shard(self, name: str, k: int, rows: range, v: np.ndarray) -> None:
        """Shard k of array `name` in one object write (never a read-modify-write)."""
        enc = self._encoders.get(name)
        if enc is None and name != "grid_hw":
            from .shardio import ShardEncoder, default_threads

            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(default_threads(), thread_name_prefix="encode")
            enc = self._encoders[name] = ShardEncoder(self.loc, name, self.group[name], self._pool)
        if enc is not None and enc.ok:
            enc.write(k, np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<")))
        else:
            self.group[name][rows.start : rows.stop] = v

    def finalize(self) -> StoreMeta:
        """Mark the store complete and consolidate its metadata (for read-only HTTP/S3 access)."""
        import zarr

        pending = self.pending_shards()
        if pending:
            raise IncompleteStoreError(
                f"{self.loc.url}: {len(pending)} of {self.meta.shards.count} shards are not done "
                f"(first: {pending[:5]}); rerun the job to finish them"
            )
        created = dataclasses.replace(self.meta.created_by, finished=_now())
        self.meta = dataclasses.replace(self.meta, status="complete", created_by=created)
        self.group.attrs.update({ATTR: self.meta.to_json()})
        with warnings.catch_warnings():
            # Consolidated metadata lives in the root zarr.json, where spec readers ignore it;
            # the lock object is not a Zarr node. Neither warning is news to us.
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
            warnings.filterwarnings("ignore", message=".*not recognized as a component.*")
            zarr.consolidate_metadata(self.loc.zarr_store(read_only=False))
        self.close()
        return self.meta

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _create_arrays(group, meta: StoreMeta, keys: Sequence[str], codec: str) -> None:
    lay, n, s = meta.layout, meta.dataset.num_items, meta.shards.size
    for name in lay.arrays():
        item = lay.item_shape(name)
        dtype = "int32" if name == "grid_hw" else lay.dtype
        if name == "grid_hw":  # tiny: one plain chunk per pipeline shard
            group.create_array(name, shape=(n, 2), chunks=(s, 2), dtype=dtype, fill_value=0)
            continue
        item_nbytes = int(np.prod(item)) * np.dtype(dtype).itemsize
        comp = _compressor(codec, item_nbytes)
        group.create_array(
            name,
            shape=(n,) + item,
            chunks=(1,) + item,  # one item per chunk: a random read touches one item
            shards=(s,) + item,  # one pipeline shard per Zarr shard
            dtype=dtype,
            compressors=comp if comp is not None else None,
            fill_value=0,
        )
    karr = group.create_array("keys", shape=(n,), chunks=(s,), dtype=str, fill_value="")
    karr[:] = np.asarray(list(keys), dtype=object)
    group.create_array("shard_status", shape=(meta.shards.count,), chunks=(1,), dtype=str, fill_value="")


def create_store(
    url: str,
    *,
    meta: StoreMeta,
    keys: Sequence[str],
    codec: str = "zstd",
    overwrite: bool = False,
    lock: bool = True,
    storage_options: dict | None = None,
) -> StoreWriter:
    """Create the store at `url`, or reopen it for resuming when it has the same `store_id`.

    A store with another `store_id` is refused (StoreMismatchError) unless `overwrite`.
    A non-store at `url` is refused (OutputExistsError) unless `overwrite`.
    """
    import zarr

    loc = Location.parse(url, storage_options)
    if len(keys) != meta.dataset.num_items:
        raise ValueError(f"{len(keys)} keys but meta.dataset.num_items = {meta.dataset.num_items}")
    if len(set(keys)) != len(keys):
        raise ValueError("keys must be unique")
    exists = loc.fs.exists(loc.root)
    if exists and not overwrite:
        if _store_exists(loc):
            old = _read_meta(loc)
            if old.store_id != meta.store_id:
                raise StoreMismatchError(
                    f"{url} holds another configuration (store_id {old.store_id}, this job {meta.store_id}: "
                    f"{describe_difference(old, meta)}); choose another --out or pass --overwrite"
                )
            return open_writer(url, lock=lock, storage_options=storage_options)
        if loc.fs.isdir(loc.root) and not loc.fs.ls(loc.root):
            pass  # an empty folder is fine to create into
        else:
            raise OutputExistsError(f"{url} exists and is not a clipfeat store; choose another path or pass --overwrite")
    if exists and overwrite:
        loc.fs.rm(loc.root, recursive=True)
    created = meta.created_by
    meta = dataclasses.replace(
        meta,
        created_by=dataclasses.replace(
            created, started=created.started or _now(), clipfeat_version=clipfeat_version(), command=created.command or " ".join(sys.argv)
        ),
    )
    store = loc.zarr_store(read_only=False)
    group = zarr.create_group(store, overwrite=True, attributes={ATTR: meta.to_json()})
    writer_lock = StoreLock(loc) if lock else None
    if writer_lock:
        writer_lock.acquire()
    try:
        _create_arrays(group, meta, keys, codec)
    except BaseException:
        if writer_lock:
            writer_lock.release()
        raise
    return StoreWriter(loc, meta, writer_lock)


def open_writer(url: str, *, lock: bool = True, storage_options: dict | None = None) -> StoreWriter:
    """Open an existing store to write more shards (a resumed job, or a worker with lock=False)."""
    loc = Location.parse(url, storage_options)
    meta = _read_meta(loc)
    writer_lock = StoreLock(loc) if lock else None
    if writer_lock:
        writer_lock.acquire()
    return StoreWriter(loc, meta, writer_lock)
