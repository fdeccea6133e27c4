"""Errors a user can act on. Each message is one line that says what to do.

The CLI turns every `ClipfeatError` into `Error: <message>` and exit code 2, without a
traceback; anything else is a bug and keeps its traceback. `ClipfeatError` itself lives in
`clipfeat.common` (every layer raises it) and is re-exported here; the store's errors follow.
"""

from __future__ import annotations

from clipfeat.common import ClipfeatError

__all__ = [
    "ClipfeatError",
    "NotAStoreError",
    "SchemaVersionError",
    "IncompleteStoreError",
    "StoreMismatchError",
    "StoreLockedError",
    "FormatError",
    "OutputExistsError",
    "UnreachableError",
    "RowNotAvailableError",
    "CorruptDataError",
]


class NotAStoreError(ClipfeatError):
    """The path exists (or not) but holds no clipfeat store."""


class SchemaVersionError(ClipfeatError):
    """The store was written by a newer clipfeat schema than this version reads."""


class IncompleteStoreError(ClipfeatError):
    """The store is still being written (or the job died) and `allow_partial` was not given."""


class StoreMismatchError(ClipfeatError):
    """An existing store was written with another configuration (different `store_id`)."""


class StoreLockedError(ClipfeatError):
    """Another job holds the store's write lock (or left a stale one)."""


class FormatError(ClipfeatError):
    """An interchange format cannot hold the data, or a file is not in the expected format."""


class OutputExistsError(ClipfeatError):
    """The output exists and `--overwrite` was not given."""


class UnreachableError(ClipfeatError):
    """A URL or path cannot be reached."""


class RowNotAvailableError(ClipfeatError, IndexError):
    """A row was asked for that lies in a shard not yet done (or out of range)."""


class CorruptDataError(ClipfeatError):
    """Stored bytes fail an integrity check (shard index crc, codec, or value checksum)."""
