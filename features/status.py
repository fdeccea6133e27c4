"""Per-shard status records and the value checksums they carry.

A shard counts only once its record says `done`; the record is written after the data, so a
crash between the two leaves a shard that is simply recomputed. The checksum is over the
decoded values (not the compressed bytes), so it survives recompression and copies, and
`verify` can recompute it through any reader.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import numpy as np

__all__ = ["ShardStatus", "checksum", "keys_checksum", "row_crcs"]


def checksum(values: np.ndarray) -> str:
    """sha256 of the values' little-endian C-order bytes, prefixed with dtype and shape."""
    a = np.ascontiguousarray(values)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def row_crcs(values: np.ndarray) -> list[int]:
    """crc32c of each row's bytes: lets `verify` name the bad rows of a bad shard."""
    import google_crc32c

    a = np.ascontiguousarray(values)
    return [google_crc32c.value(a[i].tobytes()) for i in range(len(a))]


def keys_checksum(keys: Iterable[str]) -> str:
    return hashlib.sha256(json.dumps(list(keys), ensure_ascii=False).encode()).hexdigest()


@dataclass
class ShardStatus:
    shard: int
    start: int  # first row
    stop: int  # one past the last row
    done: bool = False
    checksums: dict[str, str] = field(default_factory=dict)  # array name -> checksum()
    row_crc32c: dict[str, list[int]] = field(default_factory=dict)  # array name -> crc32c per row
    failed: dict[int, str] = field(default_factory=dict)  # row -> reason (values are zeros)
    written_at: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds, for logs

    def to_json(self) -> str:
        d: dict[str, Any] = asdict(self)
        d["failed"] = {str(k): v for k, v in self.failed.items()}  # JSON object keys are str
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> "ShardStatus | None":
        if not s:
            return None
        d = json.loads(s)
        d["failed"] = {int(k): v for k, v in d.get("failed", {}).items()}
        return cls(**d)
