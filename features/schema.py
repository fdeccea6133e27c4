"""The store's typed metadata: the `clipfeat` group attribute, and the array layout it implies.

A store is a Zarr v3 group. Its `clipfeat` attribute (JSON) is `StoreMeta.to_json()`; arrays:

    keys        [N]                str (vlen-utf8)   chunk = one pipeline shard of keys
    pooled      [N, (V,) D]        float16           chunk = one item, Zarr shard = one pipeline shard
    grid        [N, (V,) H*W, C]   float16           idem; padded to `grid_max_cells` when variable
    grid_hw     [N, 2]             int32             only for variable grids (aspect preprocessing)
    shard_status[S]                str (JSON)        one record per pipeline shard, chunk = 1

Everything that determines the stored values goes into `store_id`; a writer refuses to add
shards to a store whose `store_id` differs from its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import NotAStoreError, SchemaVersionError

__all__ = [
    "SCHEMA_VERSION",
    "ATTR",
    "DatasetInfo",
    "EncoderInfo",
    "PreprocessInfo",
    "Layout",
    "ShardsInfo",
    "CreatedBy",
    "StoreMeta",
    "compute_store_id",
    "canonical_sha256",
    "clipfeat_version",
]

SCHEMA_VERSION = 1
ATTR = "clipfeat"  # name of the group attribute holding StoreMeta


def clipfeat_version() -> str:
    """The installed clipfeat version (recorded in every store's `created_by`)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clipfeat")
    except PackageNotFoundError:
        return "unknown"


def canonical_sha256(obj: Any) -> str:
    """sha256 of the canonical JSON of `obj` (sorted keys, no whitespace)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class DatasetInfo:
    name: str  # "coco", "vg", "r2r", or the name given at import
    manifest_sha256: str  # content hash of the manifest rows (see clipfeat.manifests)
    num_items: int  # N, the number of rows
    splits: dict[str, int] = field(default_factory=dict)  # split name -> row count


@dataclass(frozen=True)
class EncoderInfo:
    model: str  # open_clip model name, e.g. "RN50x4"
    pretrained: str | None = None  # open_clip pretrained tag, e.g. "openai"
    checkpoint: str | None = None  # local checkpoint path, when weights came from a file
    weights_sha256: str | None = None  # hash of the state dict actually loaded
    open_clip_version: str | None = None
    torch_version: str | None = None


@dataclass(frozen=True)
class PreprocessInfo:
    mode: Literal["fixed", "aspect", "squash", "unknown"] = "fixed"
    size: int | None = None  # fixed: square input side
    shorter_side: int | None = None  # aspect, squash: resize shorter side to this
    max_side: int | None = None  # aspect, squash: cap on the longer side
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    # panorama stores: how the V views were made, e.g. "matterport-skybox bilinear 640x480 vfov60"
    # (rendered by clipfeat.pipeline.panorama) or "prerendered 640x480" (the user's images)
    render: str | None = None
    # squash: the fixed input every image is resized to after the shorter-side resize
    height: int | None = None
    width: int | None = None
    preset: str | None = None  # the `clipfeat extract --preset` these values come from


@dataclass(frozen=True)
class Layout:
    pooled_dim: int  # D
    grid_channels: int | None = None  # C; None when the store has no grid
    grid_hw: tuple[int, int] | None = None  # fixed grid size (H, W); None when variable/absent
    grid_max_cells: int | None = None  # variable grids: padded length of the cell axis
    views: int | None = None  # V per item (36 for R2R panoramas); None for single images
    dtype: str = "float16"

    @property
    def has_grid(self) -> bool:
        return self.grid_channels is not None

    @property
    def variable_grid(self) -> bool:
        return self.has_grid and self.grid_hw is None

    @property
    def grid_cells(self) -> int | None:
        """Length of the stored cell axis (H*W, or the padded maximum)."""
        if not self.has_grid:
            return None
        if self.grid_hw is not None:
            return self.grid_hw[0] * self.grid_hw[1]
        return self.grid_max_cells

    def item_shape(self, name: str) -> tuple[int, ...]:
        """Shape of one row of array `name` (without the leading N)."""
        v = (self.views,) if self.views else ()
        if name == "pooled":
            return v + (self.pooled_dim,)
        if name == "grid":
            return v + (self.grid_cells, self.grid_channels)
        if name == "grid_hw":
            return (2,)
        raise KeyError(name)

    def arrays(self) -> list[str]:
        """Feature arrays this layout stores, in checksum order."""
        names = ["pooled"]
        if self.has_grid:
            names.append("grid")
            if self.variable_grid:
                names.append("grid_hw")
        return names

    def validate(self) -> None:
        if self.pooled_dim <= 0:
            raise ValueError("pooled_dim must be positive")
        if self.has_grid and self.grid_hw is None and not self.grid_max_cells:
            raise ValueError("a variable grid needs grid_max_cells")
        if self.variable_grid and self.views:
            raise ValueError("variable grids are supported for single-view items only")


@dataclass(frozen=True)
class ShardsInfo:
    size: int  # items per pipeline shard == items per Zarr shard
    count: int

    def rows(self, k: int, num_items: int) -> range:
        return range(k * self.size, min((k + 1) * self.size, num_items))


@dataclass(frozen=True)
class CreatedBy:
    clipfeat_version: str = "unknown"
    command: str = ""
    started: str | None = None  # ISO 8601 UTC
    finished: str | None = None


@dataclass(frozen=True)
class StoreMeta:
    dataset: DatasetInfo
    encoder: EncoderInfo
    preprocess: PreprocessInfo
    layout: Layout
    shards: ShardsInfo
    created_by: CreatedBy = field(default_factory=CreatedBy)
    status: Literal["writing", "complete"] = "writing"
    schema_version: int = SCHEMA_VERSION
    store_id: str = ""

    @classmethod
    def build(
        cls,
        *,
        dataset: DatasetInfo,
        encoder: EncoderInfo,
        preprocess: PreprocessInfo,
        layout: Layout,
        shard_size: int,
        created_by: CreatedBy | None = None,
    ) -> "StoreMeta":
        """A new store's meta with `store_id` and shard count derived from the rest."""
        layout.validate()
        if shard_size <= 0:
            raise ValueError("shard_size must be positive")
        count = -(-dataset.num_items // shard_size)
        return cls(
            dataset=dataset,
            encoder=encoder,
            preprocess=preprocess,
            layout=layout,
            shards=ShardsInfo(size=shard_size, count=count),
            created_by=created_by or CreatedBy(),
            store_id=compute_store_id(dataset, encoder, preprocess, layout, shard_size),
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any], *, where: str = "store") -> "StoreMeta":
        if not isinstance(d, dict) or "schema_version" not in d:
            raise NotAStoreError(f"{where}: the `{ATTR}` attribute is malformed; is this a clipfeat store?")
        version = d["schema_version"]
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{where} was written with store schema {version}; this clipfeat reads up to "
                f"{SCHEMA_VERSION}: upgrade clipfeat (pip install -U clipfeat)"
            )
        try:
            lay = dict(d["layout"])
            if lay.get("grid_hw") is not None:
                lay["grid_hw"] = tuple(lay["grid_hw"])
            pre = dict(d["preprocess"])
            pre["mean"], pre["std"] = tuple(pre.get("mean", ())), tuple(pre.get("std", ()))
            return cls(
                dataset=DatasetInfo(**d["dataset"]),
                encoder=EncoderInfo(**d["encoder"]),
                preprocess=PreprocessInfo(**pre),
                layout=Layout(**lay),
                shards=ShardsInfo(**d["shards"]),
                created_by=CreatedBy(**d.get("created_by", {})),
                status=d["status"],
                schema_version=version,
                store_id=d["store_id"],
            )
        except (KeyError, TypeError) as e:
            raise NotAStoreError(f"{where}: the `{ATTR}` attribute is missing field {e}; the store is damaged") from None


def compute_store_id(
    dataset: DatasetInfo,
    encoder: EncoderInfo,
    preprocess: PreprocessInfo,
    layout: Layout,
    shard_size: int,
) -> str:
    """Hash of everything that determines the stored values and their row placement.

    Versions of torch/open_clip are recorded in the meta but kept out of the id: a library
    upgrade must not make a half-written store unresumable.
    """
    ident = {
        "manifest_sha256": dataset.manifest_sha256,
        "num_items": dataset.num_items,
        "model": encoder.model,
        "pretrained": encoder.pretrained,
        "weights_sha256": encoder.weights_sha256,
        "preprocess": _without_none(dataclasses.asdict(preprocess), "render", "height", "width", "preset"),
        "layout": dataclasses.asdict(layout),
        "shard_size": shard_size,
    }
    return canonical_sha256(ident)[:16]


def _without_none(d: dict[str, Any], *optional: str) -> dict[str, Any]:
    """Drop optional fields that are unset, so fields added later leave old stores' ids unchanged."""
    return {k: v for k, v in d.items() if not (k in optional and v is None)}


def describe_difference(a: StoreMeta, b: StoreMeta) -> str:
    """Which identity fields differ between two metas, for a one-line refusal."""
    pairs = [
        ("manifest", a.dataset.manifest_sha256[:12], b.dataset.manifest_sha256[:12]),
        ("items", a.dataset.num_items, b.dataset.num_items),
        ("model", a.encoder.model, b.encoder.model),
        ("pretrained", a.encoder.pretrained, b.encoder.pretrained),
        ("weights", (a.encoder.weights_sha256 or "")[:12], (b.encoder.weights_sha256 or "")[:12]),
        ("preprocess", a.preprocess, b.preprocess),
        ("layout", a.layout, b.layout),
        ("shard size", a.shards.size, b.shards.size),
    ]
    diffs = [f"{name} {x} vs {y}" for name, x, y in pairs if x != y]
    return "; ".join(diffs) or "configuration"
