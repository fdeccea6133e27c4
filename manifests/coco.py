"""COCO 2014/2017 images -> Manifest. Keys are integer image ids; the split is the folder.

Layout (as distributed): ROOT/{train2014,val2014,test2015,train2017,val2017,test2017}/…jpg,
2014 names `COCO_val2014_000000000885.jpg`, 2017 names `000000000885.jpg`; optional
ROOT/annotations/captions_{split}.json to cross-check the ids. The 2017 folders re-split the
2014 images, so the same id appears in both years: scan one year at a time (`--splits`).
"""

from __future__ import annotations

import json
import os
import re

from .manifest import Manifest, ManifestError, Row, sort_rows

__all__ = ["COCO_SPLITS", "scan_coco"]

COCO_SPLITS = ("train2014", "val2014", "test2015", "train2017", "val2017", "test2017")
_ID = re.compile(r"^(?:COCO_[a-z]+\d{4}_)?(\d{1,12})\.(?:jpg|jpeg|png)$", re.IGNORECASE)


def scan_coco(root: str | os.PathLike, *, splits: list[str] | None = None) -> tuple[Manifest, list[str]]:
    """Scan the COCO split folders under `root`. Returns (manifest, warnings).

    splits: folders to scan; default the 2014/2015 folders present, else the 2017 ones.
    Warnings name annotated images that have no file (from annotations/captions_*.json).
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        what = "is not a folder" if os.path.exists(root) else "does not exist"
        raise ManifestError(f"COCO root {root} {what}; pass --root the folder holding train2014/, val2014/ (or train2017/, val2017/)")
    present = [s for s in COCO_SPLITS if os.path.isdir(os.path.join(root, s))]
    if splits:
        unknown = [s for s in splits if s not in COCO_SPLITS]
        if unknown:
            raise ManifestError(f"unknown COCO split {unknown[0]!r}; choose from {', '.join(COCO_SPLITS)}")
        missing = [s for s in splits if s not in present]
        if missing:
            raise ManifestError(f"{root} has no {missing[0]}/ folder (found: {', '.join(present) or 'none'}); check --root and --splits")
    else:
        old = [s for s in present if s.endswith(("2014", "2015"))]
        splits = old or present
    if not splits:
        raise ManifestError(f"{root} is not a COCO root: it holds none of the image folders {', '.join(s + '/' for s in COCO_SPLITS)}; "
                            "pass --root the folder that holds them, e.g. DATA/coco with DATA/coco/val2014/COCO_val2014_000000000042.jpg")
    rows = []
    for split in splits:
        with os.scandir(os.path.join(root, split)) as it:
            for entry in it:
                m = _ID.match(entry.name)
                if m and entry.is_file():
                    rows.append(Row(key=str(int(m.group(1))), path=f"{split}/{entry.name}", split=split))
    if not rows:
        raise ManifestError(f"no COCO images found in {', '.join(s + '/' for s in splits)} under {root}; "
                            "expected files named like COCO_val2014_000000000042.jpg (2014) or 000000000042.jpg (2017)")
    manifest = Manifest(dataset="coco", rows=sort_rows(rows))
    return manifest, _cross_check(root, splits, manifest)


def _cross_check(root: str, splits: list[str], manifest: Manifest) -> list[str]:
    warnings = []
    have = {(r.split, r.key) for r in manifest.rows}
    for split in splits:
        ann = os.path.join(root, "annotations", f"captions_{split}.json")
        if not os.path.isfile(ann):
            continue
        with open(ann) as f:
            ids = {str(im["id"]) for im in json.load(f).get("images", [])}
        files = {k for s, k in have if s == split}
        lost = sorted(ids - files, key=int)
        if lost:
            warnings.append(f"{split}: {len(lost)} annotated images have no file (first: {', '.join(lost[:5])})")
        extra = sorted(files - ids, key=int)
        if extra:
            warnings.append(f"{split}: {len(extra)} files are not in {os.path.basename(ann)} (first: {', '.join(extra[:5])})")
    return warnings
