"""clipfeat.manifests: dataset adapters (COCO, Visual Genome) -> an ordered `Manifest`.

No torch or ray here; nothing from clipfeat.features either (the pipeline joins the two).
"""

from __future__ import annotations

from .coco import COCO_SPLITS, scan_coco
from .manifest import Manifest, ManifestError, Row, safe_path, sort_rows
from .vg import scan_vg

__all__ = ["DATASETS", "Manifest", "ManifestError", "Row", "COCO_SPLITS", "safe_path", "scan", "scan_coco", "scan_vg", "sort_rows"]

DATASETS = ("coco", "vg")


def scan(dataset: str, root: str, *, splits: list[str] | None = None) -> tuple[Manifest, list[str]]:
    """Build the manifest of `dataset` under `root`. Returns (manifest, warnings)."""
    if dataset == "coco":
        return scan_coco(root, splits=splits)
    if dataset == "vg":
        if splits:
            raise ManifestError("Visual Genome has no splits to choose; drop --splits")
        return scan_vg(root)
    raise ManifestError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
