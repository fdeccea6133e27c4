"""Flickr30k images -> Manifest. Keys are integer image ids (the file name's stem); the split is
Karpathy's (train, val, test).

Layout (as distributed): ROOT/flickr30k-images/{id}.jpg (31,783 images, e.g. 1000092795.jpg)
and Karpathy's split file ROOT/dataset_flickr30k.json, {"dataset": "flickr30k", "images":
[{"filename", "imgid", "split", "sentids", "sentences": [{"raw", "tokens", "imgid", "sentid"}]}]}.
Rows are the listed images that have a file, as for COCO (rows come from the files): a listed
image without one is left out with a warning, and so is a file the split file does not list.
"""

from __future__ import annotations

import json
import os
import re

from .manifest import Manifest, ManifestError, Row, sort_rows

__all__ = ["FLICKR30K_IMAGES", "FLICKR30K_JSON", "FLICKR30K_SPLITS", "scan_flickr30k"]

FLICKR30K_IMAGES = "flickr30k-images"
FLICKR30K_JSON = "dataset_flickr30k.json"
FLICKR30K_SPLITS = ("train", "val", "test")  # Karpathy's
_ID = re.compile(r"^(\d{1,12})\.(?:jpg|jpeg)$", re.IGNORECASE)
_LAYOUT = (f"the Flickr30k folder holding {FLICKR30K_IMAGES}/ (e.g. {FLICKR30K_IMAGES}/1000092795.jpg) "
           f"and Karpathy's {FLICKR30K_JSON}")


def scan_flickr30k(root: str | os.PathLike, *, splits: list[str] | None = None) -> tuple[Manifest, list[str]]:
    """Scan `root` (see the module docstring). Returns (manifest, warnings).

    splits: Karpathy splits to keep (default all); warnings name listed images without a file
    and files the split file does not list.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        what = "is not a folder" if os.path.exists(root) else "does not exist"
        raise ManifestError(f"Flickr30k root {root} {what}; pass --root {_LAYOUT}")
    unknown = [s for s in splits or () if s not in FLICKR30K_SPLITS]
    if unknown:
        raise ManifestError(f"unknown Flickr30k split {unknown[0]!r}; choose from {', '.join(FLICKR30K_SPLITS)} (Karpathy's)")
    path, folder = os.path.join(root, FLICKR30K_JSON), os.path.join(root, FLICKR30K_IMAGES)
    if not os.path.isfile(path):
        raise ManifestError(f"{path} not found; pass --root {_LAYOUT}")
    if not os.path.isdir(folder):
        raise ManifestError(f"{folder}/ not found; pass --root {_LAYOUT}")
    every = _read_split_file(path)  # file name -> split
    listed = {name: split for name, split in every.items() if not splits or split in splits}
    if not listed:
        raise ManifestError(f"{FLICKR30K_JSON} lists no {'/'.join(splits)} images; check --splits")
    with os.scandir(folder) as it:
        files = {e.name for e in it if _ID.match(e.name) and e.is_file()}
    rows = [Row(key=str(_num(name)), path=f"{FLICKR30K_IMAGES}/{name}", split=split)
            for name, split in listed.items() if name in files]
    lost = sorted(listed.keys() - files, key=_num)
    if not rows:
        raise ManifestError(f"none of the {len(lost)} images {FLICKR30K_JSON} lists is in {folder}/ "
                            f"(first: {lost[0]}); pass --root {_LAYOUT}")
    warnings = []
    if lost:
        warnings.append(f"{len(lost)} of {len(lost) + len(rows)} listed images have no file in {FLICKR30K_IMAGES}/ "
                        f"(first: {', '.join(lost[:5])}); they are left out")
    extra = sorted(files - every.keys(), key=_num)
    if extra:
        warnings.append(f"{len(extra)} files in {FLICKR30K_IMAGES}/ are not in {FLICKR30K_JSON} (first: {', '.join(extra[:5])})")
    return Manifest(dataset="flickr30k", rows=sort_rows(rows)), warnings


def _read_split_file(path: str) -> dict[str, str]:
    """Karpathy's file -> {file name: split}, in the file's order."""
    try:
        with open(path) as f:
            images = json.load(f)["images"]
        listed: dict[str, str] = {}
        for im in images:
            name, split = im["filename"], im["split"]
            if not isinstance(name, str) or not _ID.match(name):
                raise ManifestError(f"{path}: image file name {name!r} is not an integer id + .jpg (like 1000092795.jpg)")
            if name in listed:
                raise ManifestError(f"{path}: {name} is listed twice")
            listed[name] = split
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise ManifestError(f"{path} is not Karpathy's {FLICKR30K_JSON} format ({e!r})") from None
    if not listed:
        raise ManifestError(f"{path} lists no images")
    return listed


def _num(name: str) -> int:
    return int(_ID.match(name).group(1))
