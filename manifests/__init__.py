"""clipfeat.manifests: dataset adapters (COCO, Visual Genome, R2R) -> an ordered `Manifest`.

No torch or ray here; nothing from clipfeat.features either (the pipeline joins the two).
"""

from __future__ import annotations

from .coco import COCO_SPLITS, scan_coco
from .manifest import Manifest, ManifestError, Row, safe_path, sort_rows
from .r2r import scan_r2r, skybox_files
from .vg import scan_vg

__all__ = ["DATASETS", "Manifest", "ManifestError", "Row", "COCO_SPLITS", "safe_path", "scan", "scan_coco", "scan_r2r", "scan_vg",
           "skybox_files", "sort_rows"]

DATASETS = ("coco", "vg", "r2r")


def scan(dataset: str, root: str, *, splits: list[str] | None = None, scans: list[str] | None = None,
         connectivity: str | None = None) -> tuple[Manifest, list[str]]:
    """Build the manifest of `dataset` under `root`. Returns (manifest, warnings).
    R2R only: `scans` limits the scans, `connectivity` is the graphs' folder (default ROOT/connectivity)."""
    if dataset != "r2r" and (scans or connectivity):
        raise ManifestError("--scans and --connectivity are for --dataset r2r")
    if dataset == "coco":
        return scan_coco(root, splits=splits)
    if dataset == "vg":
        if splits:
            raise ManifestError("Visual Genome has no splits to choose; drop --splits")
        return scan_vg(root)
    if dataset == "r2r":
        if splits:
            raise ManifestError("R2R viewpoints have no splits; choose scans with --scans")
        return scan_r2r(root, connectivity=connectivity, scans=scans)
    raise ManifestError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
