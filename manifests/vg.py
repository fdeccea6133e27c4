"""Visual Genome -> Manifest, from `image_data.json` (image_id, width, height, coco_id, url).

Images live in ROOT/VG_100K/ and ROOT/VG_100K_2/; the folder is the one in the image's URL
(falling back to the other part when the file was moved). Keys are VG image ids; `coco_id`,
`width` and `height` are kept as fields. A listed image whose file is missing stays in the
manifest (row numbers follow the dataset, not the download) and fails at extraction, where
it is recorded with its reason.
"""

from __future__ import annotations

import json
import os

from .manifest import Manifest, ManifestError, Row, sort_rows

__all__ = ["scan_vg"]

PARTS = ("VG_100K", "VG_100K_2")


def scan_vg(root: str | os.PathLike, *, image_data: str | None = None) -> tuple[Manifest, list[str]]:
    root = os.fspath(root)
    if not os.path.isdir(root):
        what = "is not a folder" if os.path.exists(root) else "does not exist"
        raise ManifestError(f"Visual Genome root {root} {what}; pass --root the folder holding image_data.json, VG_100K/ and VG_100K_2/")
    path = image_data or os.path.join(root, "image_data.json")
    if not os.path.isfile(path):
        raise ManifestError(f"{path} not found; --root must be the Visual Genome folder holding image_data.json "
                            "(VG's image metadata), VG_100K/ and VG_100K_2/")
    with open(path) as f:
        entries = json.load(f)
    if not isinstance(entries, list) or not entries:
        raise ManifestError(f"{path} lists no images")
    rows, missing = [], []
    for e in entries:
        try:
            image_id = int(e["image_id"])
        except (KeyError, TypeError, ValueError):
            raise ManifestError(f"{path}: entry without an integer image_id: {str(e)[:80]}") from None
        name = f"{image_id}.jpg"
        url_part = next((p for p in reversed(PARTS) if f"/{p}/" in str(e.get("url", ""))), PARTS[0])
        part = url_part
        if not os.path.isfile(os.path.join(root, part, name)):
            other = PARTS[1 - PARTS.index(url_part)]
            if os.path.isfile(os.path.join(root, other, name)):
                part = other
            else:
                missing.append(str(image_id))
        fields = {"coco_id": e.get("coco_id"), "width": e.get("width"), "height": e.get("height")}
        rows.append(Row(key=str(image_id), path=f"{part}/{name}", split="vg", fields=fields))
    warnings = []
    if missing:
        warnings.append(f"{len(missing)} of {len(rows)} listed images have no file (first: {', '.join(missing[:5])}); they will be recorded as failures")
    return Manifest(dataset="vg", rows=sort_rows(rows)), warnings
