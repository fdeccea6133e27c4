"""`verify`: recompute every checksum of a store and check its structure.

Finds flipped bytes, truncated or missing shard files, misplaced keys and undone shards, and
names the shard (and, through the per-row crc32c, the rows) each problem is in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from .errors import CorruptDataError
from .reader import FeatureStore, open_store
from .status import checksum, keys_checksum, row_crcs

__all__ = ["VerifyReport", "verify_store"]


@dataclass
class VerifyReport:
    url: str
    shards_checked: int = 0
    shards_total: int = 0
    problems: list[str] = field(default_factory=list)
    bad_shards: set[int] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, shard: int | None, msg: str) -> None:
        if shard is not None:
            self.bad_shards.add(shard)
        self.problems.append(msg if shard is None else f"shard {shard}: {msg}")


def _check_structure(st: FeatureStore, rep: VerifyReport) -> None:
    lay, n = st.meta.layout, len(st)
    for name in lay.arrays():
        arr = st.group[name]
        want_shape = (n,) + lay.item_shape(name)
        want_dtype = np.dtype("int32" if name == "grid_hw" else lay.dtype)
        if tuple(arr.shape) != want_shape:
            rep.add(None, f"{name}: shape {tuple(arr.shape)}, layout says {want_shape}")
        if np.dtype(arr.dtype) != want_dtype:
            rep.add(None, f"{name}: dtype {arr.dtype}, layout says {want_dtype}")
    if st.group["keys"].shape != (n,):
        rep.add(None, f"keys: shape {st.group['keys'].shape}, expected ({n},)")
    keys = st.keys
    if len(set(keys)) != len(keys):
        rep.add(None, "keys: duplicate keys")
    if any(k == "" for k in keys):
        rep.add(None, f"keys: {sum(k == '' for k in keys)} empty keys")
    if st.group["shard_status"].shape != (st.meta.shards.count,):
        rep.add(None, f"shard_status: {st.group['shard_status'].shape[0]} records for {st.meta.shards.count} shards")


def _bad_rows(values: np.ndarray, expected: list[int], start: int) -> list[int]:
    got = row_crcs(values)
    return [start + i for i, (a, b) in enumerate(zip(got, expected)) if a != b]


def _check_shard(st: FeatureStore, k: int, rep: VerifyReport) -> None:
    rec = st.shard_status()[k]
    rows = st.meta.shards.rows(k, len(st))
    if rec is None or not rec.done:
        if st.meta.status == "complete":
            rep.add(k, "not done, but the store is marked complete")
        return
    if (rec.start, rec.stop) != (rows.start, rows.stop):
        rep.add(k, f"status record covers rows {rec.start}..{rec.stop - 1}, expected {rows.start}..{rows.stop - 1}")
        return
    if keys_checksum(st.keys[rows.start : rows.stop]) != rec.checksums.get("keys"):
        rep.add(k, "keys differ from those the shard was written with")
    for name in st.meta.layout.arrays():
        reader = st._reader(name)
        try:
            vals = reader.read(np.arange(rows.start, rows.stop))
        except CorruptDataError as e:
            rep.add(k, f"{e}{_missing_hint(reader, k)}")
            continue
        if checksum(vals) != rec.checksums.get(name):
            bad = _bad_rows(vals, rec.row_crc32c.get(name, []), rows.start)
            shown = ", ".join(map(str, bad[:10])) + (" …" if len(bad) > 10 else "")
            rep.add(k, f"{name}: checksum mismatch in rows {shown or 'unknown'}{_missing_hint(reader, k)}")


def _missing_hint(reader, k: int) -> str:
    if reader.fast and reader.shard_index(k) is None:
        return f" (shard file {reader.name}/{reader.array.metadata.encode_chunk_key((k,) + (0,) * len(reader.item_shape))} is missing)"
    return ""


def verify_store(url: str, *, progress: bool = True) -> VerifyReport:
    """Check structure and every done shard's checksums. Opens partial stores too."""
    st = open_store(url, allow_partial=True)
    rep = VerifyReport(url=url, shards_total=st.meta.shards.count)
    try:
        _check_structure(st, rep)
        for k in tqdm(range(st.meta.shards.count), desc="verify", unit="shard", disable=not progress):
            try:
                _check_shard(st, k, rep)
            except CorruptDataError as e:
                rep.add(k, str(e))
            rep.shards_checked += 1
    finally:
        st.close()
    return rep
