"""clipfeat.manifests: dataset adapters (COCO, Visual Genome, R2R, Flickr30k) -> an ordered `Manifest`.

`DATASETS` is the registry: name -> `DatasetAdapter`, one line per dataset; the CLIs' --dataset
choices and `scan` both read it. A new dataset is one module with its `scan_*` function and
one line below.

No torch or ray here; nothing from clipfeat.features either (the pipeline joins the two).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .coco import COCO_SPLITS, scan_coco
from .flickr30k import FLICKR30K_SPLITS, scan_flickr30k
from .manifest import IMAGES, LAYOUTS, SKYBOX, Manifest, ManifestError, Row, safe_path, sort_rows
from .r2r import scan_r2r, skybox_files
from .vg import scan_vg

__all__ = ["COCO_SPLITS", "DATASETS", "FLICKR30K_SPLITS", "IMAGES", "LAYOUTS", "OPTIONS", "SKYBOX", "DatasetAdapter",
           "Manifest", "ManifestError", "Row", "safe_path", "scan", "scan_coco", "scan_flickr30k", "scan_r2r", "scan_vg",
           "skybox_files", "sort_rows"]

OPTIONS = ("splits", "scans", "connectivity")  # keywords of `scan`, the CLIs' --splits/--scans/--connectivity


@dataclass(frozen=True)
class DatasetAdapter:
    name: str  # the --dataset choice, and Manifest.dataset
    scan: Callable[..., tuple[Manifest, list[str]]]  # scan(root, **the options it takes) -> (manifest, warnings)
    title: str  # how messages name it: "Visual Genome"
    description: str  # one line for --dataset's help
    layout: str = IMAGES  # what a row is: IMAGES (one image file) or SKYBOX (six faces -> 36 views)
    options: frozenset[str] = frozenset()  # of OPTIONS; the others are refused with a message


DATASETS: dict[str, DatasetAdapter] = {a.name: a for a in (
    DatasetAdapter("coco", scan_coco, "COCO", "COCO 2014/2017 split folders (--splits train2014,val2014)",
                   options=frozenset({"splits"})),
    DatasetAdapter("vg", scan_vg, "Visual Genome", "Visual Genome, image_data.json + VG_100K{,_2}/"),
    DatasetAdapter("r2r", scan_r2r, "R2R", "Matterport skyboxes -> 36 views per viewpoint (--scans, --connectivity)",
                   layout=SKYBOX, options=frozenset({"scans", "connectivity"})),
    DatasetAdapter("flickr30k", scan_flickr30k, "Flickr30k",
                   "flickr30k-images/ + Karpathy's dataset_flickr30k.json (--splits train,val,test)",
                   options=frozenset({"splits"})),
)}


def scan(dataset: str, root: str, *, splits: list[str] | None = None, scans: list[str] | None = None,
         connectivity: str | None = None) -> tuple[Manifest, list[str]]:
    """Build the manifest of `dataset` under `root`. Returns (manifest, warnings).
    `splits`, `scans` (R2R: these scans only) and `connectivity` (R2R: the graphs' folder,
    default ROOT/connectivity) go to the datasets whose adapter takes them; given to another
    one, they raise ManifestError saying which datasets take them."""
    adapter = DATASETS.get(dataset)
    if adapter is None:
        raise ManifestError(f"unknown dataset {dataset!r}; choose one of {', '.join(sorted(DATASETS))}")
    given = {k: v for k, v in (("splits", splits), ("scans", scans), ("connectivity", connectivity)) if v}
    refused = [k for k in given if k not in adapter.options]
    if any(k != "splits" for k in refused):
        lacking = [k for k in OPTIONS if k != "splits" and k not in adapter.options]
        takers = [a.name for a in DATASETS.values() if any(k in a.options for k in lacking)]
        raise ManifestError(f"{' and '.join('--' + k for k in lacking)} {'is' if len(lacking) == 1 else 'are'} "
                            f"for --dataset {'|'.join(takers)}")
    if refused:
        instead = "choose scans with --scans" if "scans" in adapter.options else "drop --splits"
        raise ManifestError(f"{adapter.title} has no splits to choose; {instead}")
    return adapter.scan(root, **given)
