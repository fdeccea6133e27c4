"""R2R / Matterport3D -> Manifest: one row per navigable viewpoint of the R2R scans.

Rows come from the simulator's navigation graphs, `connectivity/{scan}_connectivity.json`
(a list of {image_id, pose: row-major 4x4 camera-to-world, z up, metres; included;
unobstructed; height}): every `included` viewpoint is an item, key `{scan}_{viewpoint}`
(the key existing VLN feature files use), split "r2r", fields `scan`, `viewpoint` and `pose`
(the renderer orients the cube faces with it).

Images, relative to ROOT (`--root`):
  skybox  `v1/scans/{scan}/matterport_skybox_images/{viewpoint}_skybox{0..5}_sami.jpg` (six
          1024x1024 cube faces; the simulator's downsized `{viewpoint}_skybox_small.jpg`, the
          six faces side by side, is accepted too): the row's path is that folder;
  views   pre-rendered `{scan}/{viewpoint}/{ix}.jpg`, ix = 0..35 (rendered with the simulator
          by the user): the row's path is `{scan}/{viewpoint}`, no resampling happens.
The layout is detected from ROOT (`v1/scans` present → skybox). As for Visual Genome, a listed
viewpoint whose images are missing stays in the manifest (row numbers follow the graphs, not
the download) and fails at extraction, where it is recorded with its reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from clipfeat.common import ConnectivityError, read_connectivity

from .manifest import SKYBOX, Manifest, ManifestError, Row, sort_rows

__all__ = ["SKYBOX_DIR", "scan_r2r", "skybox_files"]

SKYBOX_DIR = "v1/scans/{scan}/matterport_skybox_images"


def scan_r2r(root: str | os.PathLike, *, connectivity: str | os.PathLike | None = None,
             scans: Iterable[str] | None = None) -> tuple[Manifest, list[str]]:
    root = os.fspath(root)
    layout = ("the Matterport folder holding v1/scans/{scan}/matterport_skybox_images/ and connectivity/ "
              "(or pre-rendered views {scan}/{viewpoint}/{ix}.jpg)")
    if not os.path.exists(root):
        raise ManifestError(f"R2R root {root} does not exist; pass --root {layout}")
    if not os.path.isdir(root):
        raise ManifestError(f"R2R root {root} is not a folder; pass --root {layout}")
    conn = Path(connectivity) if connectivity else Path(root) / "connectivity"
    files = {p.name.removesuffix("_connectivity.json"): p for p in sorted(conn.glob("*_connectivity.json"))}
    if not files:
        raise ManifestError(f"{conn} has no *_connectivity.json; pass --root {layout}, or --connectivity DIR "
                            "(Matterport3DSimulator's connectivity/)")
    wanted = sorted(set(scans)) if scans else sorted(files)
    unknown = [s for s in wanted if s not in files]
    if unknown:
        raise ManifestError(f"{len(unknown)} scans have no connectivity file in {conn}, e.g. {unknown[0]}; check --scans")
    layout = "skybox" if os.path.isdir(os.path.join(root, "v1", "scans")) else "views"
    rows, missing = [], []
    for scan in wanted:
        try:
            entries = read_connectivity(files[scan])
        except ConnectivityError as e:  # not JSON, or an entry without an id, a 16-number pose, ...
            raise ManifestError(str(e)) from None
        for node in entries:
            if not node.included:
                continue
            vp = node.id
            path = SKYBOX_DIR.format(scan=scan) if layout == "skybox" else f"{scan}/{vp}"
            row = Row(key=f"{scan}_{vp}", path=path, split="r2r", fields={"scan": scan, "viewpoint": vp, "layout": layout,
                                                                      "pose": list(node.pose)})
            if skybox_files(root, row) is None:
                missing.append(row.key)
            rows.append(row)
    if not rows:
        raise ManifestError(f"no included viewpoints in the connectivity files of {', '.join(wanted[:3])}")
    warnings = []
    if missing:
        warnings.append(f"{len(missing)} of {len(rows)} viewpoints have no {layout} images (first: "
                        f"{', '.join(missing[:3])}); they will be recorded as failures")
    return Manifest(dataset="r2r", rows=sort_rows(rows), layout=SKYBOX), warnings


def skybox_files(root: str | os.PathLike, row: Row) -> list[str] | None:
    """The image files of a viewpoint, relative to root: six `_sami` faces, one `_skybox_small`
    strip, or 36 pre-rendered views; None when none of those is complete."""
    vp = row.fields["viewpoint"]
    folder = os.path.join(os.fspath(root), row.path)
    if row.fields.get("layout", "skybox") == "views":
        names = [f"{ix}.jpg" for ix in range(36)]
    else:
        names = [f"{vp}_skybox{i}_sami.jpg" for i in range(6)]
        if not all(os.path.isfile(os.path.join(folder, n)) for n in names):
            names = [f"{vp}_skybox_small.jpg"]
    if all(os.path.isfile(os.path.join(folder, n)) for n in names):
        return [f"{row.path}/{n}" for n in names]
    return None
