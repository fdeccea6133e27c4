"""clipfeat.features: the feature store (Zarr v3) and everything that reads or writes it.

No torch or ray at import time; `clipfeat.features.torch_data` imports torch when used.
"""

from .errors import (
    ClipfeatError,
    CorruptDataError,
    FormatError,
    IncompleteStoreError,
    NotAStoreError,
    OutputExistsError,
    RowNotAvailableError,
    SchemaVersionError,
    StoreLockedError,
    StoreMismatchError,
    UnreachableError,
)
from .reader import FeatureStore, open_store
from .schema import (
    SCHEMA_VERSION,
    CreatedBy,
    DatasetInfo,
    EncoderInfo,
    Layout,
    PreprocessInfo,
    ShardsInfo,
    StoreMeta,
)
from .status import ShardStatus
from .writer import CODECS, StoreWriter, create_store, open_writer

__all__ = [
    "SCHEMA_VERSION",
    "CODECS",
    "StoreMeta",
    "DatasetInfo",
    "EncoderInfo",
    "PreprocessInfo",
    "Layout",
    "ShardsInfo",
    "CreatedBy",
    "ShardStatus",
    "FeatureStore",
    "open_store",
    "StoreWriter",
    "create_store",
    "open_writer",
    "ClipfeatError",
    "CorruptDataError",
    "FormatError",
    "IncompleteStoreError",
    "NotAStoreError",
    "OutputExistsError",
    "RowNotAvailableError",
    "SchemaVersionError",
    "StoreLockedError",
    "StoreMismatchError",
    "UnreachableError",
]
