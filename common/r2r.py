"""R2R conventions shared by the pipeline (rendering views) and the trainers (navigating graphs).

View geometry: the Matterport3D simulator's 36 discretised views of a viewpoint, as R2R agents
(Fried et al., EnvDrop) and their feature files use them: 640x480 pixels, 60 degree vertical
field of view; view `ix` has heading (ix % 12) * 30 degrees, clockwise from world +y (heading 90
degrees looks along +x), and elevation (ix // 12 - 1) * 30 degrees: views 0-11 look 30 degrees
down, 12-23 level, 24-35 30 degrees up. Angles are in radians, as the simulator takes them.

    view_angles(13)                    # (0.5235987755982988, 0.0): heading 30°, level
    VIEW_HEADINGS[ix], VIEW_ELEVATIONS[ix]     # the same, for all 36 views at once

Navigation graphs: `{scan}_connectivity.json` in Matterport3DSimulator's `connectivity/`, a list
with one entry per panorama of the scan, {"image_id": str, "pose": 16 numbers (row-major 4x4
camera-to-world, z up, metres), "included": bool, "unobstructed": [bool per entry], "visible":
[bool per entry], "height": metres}. `read_connectivity` returns every entry, in file order, as a
`Viewpoint`; `visible` and `height` are not read (the simulator moves along `unobstructed` and
measures from the camera centres, not the floor).

Pure standard library: every layer imports this, and `clipfeat --help` must stay fast.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from .errors import ClipfeatError

__all__ = [
    "VIEWS", "HEADING_COUNT", "VIEW_WIDTH", "VIEW_HEIGHT", "VFOV_DEG", "VFOV", "VIEW_HEADINGS", "VIEW_ELEVATIONS",
    "view_angles", "ConnectivityError", "Viewpoint", "read_connectivity",
]

# --- view geometry ---------------------------------------------------------------------------

VIEWS = 36  # discretised views per viewpoint: 3 elevations x HEADING_COUNT headings
HEADING_COUNT = 12  # headings per elevation, 30 degrees apart
VIEW_WIDTH, VIEW_HEIGHT = 640, 480  # pixels
VFOV_DEG = 60.0  # vertical field of view, degrees
VFOV = math.radians(VFOV_DEG)  # radians, as MatterSim's setCameraVFOV takes it


def view_angles(ix: int) -> tuple[float, float]:
    """(heading, elevation) in radians of discretised view `ix` (0..35), as MatterSim numbers them:
    ix 0-11 look 30 degrees down, 12-23 level, 24-35 30 degrees up; heading (ix % 12) * 30 degrees."""
    if not 0 <= ix < VIEWS:
        raise ValueError(f"view index {ix} is outside 0..{VIEWS - 1}")
    # degrees first, one conversion, as the renderer always did: radians(150.0) and 5 * radians(30) differ in the last bit
    return math.radians(30.0 * (ix % HEADING_COUNT)), math.radians(30.0 * (ix // HEADING_COUNT - 1))


# View ix's heading and elevation, radians, ix = 0..35 (the values of `view_angles`).
VIEW_HEADINGS: tuple[float, ...] = tuple(view_angles(ix)[0] for ix in range(VIEWS))
VIEW_ELEVATIONS: tuple[float, ...] = tuple(view_angles(ix)[1] for ix in range(VIEWS))


# --- navigation graphs -----------------------------------------------------------------------


class ConnectivityError(ClipfeatError, ValueError):
    """A connectivity file that is not in the simulator's format (not JSON, not a list, an entry
    without a string image_id, a pose of 16 finite numbers or one unobstructed flag per entry)."""


@dataclass(frozen=True, slots=True)
class Viewpoint:
    """One entry of a connectivity file."""

    id: str  # the panorama's image_id (the R2R viewpoint id)
    pose: tuple[float, ...]  # 16 floats: row-major 4x4 camera-to-world, z up, metres
    included: bool  # part of the navigation graph (R2R uses only included viewpoints)
    unobstructed: tuple[bool, ...]  # [j]: the agent can move from here to entry j of the same file

    @property
    def position(self) -> tuple[float, float, float]:
        """The camera centre (x, y, z), metres: the pose's translation column, pose[3], pose[7], pose[11]."""
        return self.pose[3], self.pose[7], self.pose[11]


def read_connectivity(path: str | os.PathLike) -> list[Viewpoint]:
    """Every entry of a `{scan}_connectivity.json`, in file order, included or not (`unobstructed`
    counts entries in this order). An empty list stays empty: whether that is an error is the
    caller's call. Raises `ConnectivityError` (one line, naming the file and the entry) for a file
    not in the format; OSError (FileNotFoundError, ...) as `open` raises it, for the caller to word."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConnectivityError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, list):
        raise ConnectivityError(f"{path} holds no list of viewpoints")
    n = len(data)
    return [_viewpoint(path, i, item, n) for i, item in enumerate(data)]


def _viewpoint(path: str, i: int, item: object, n: int) -> Viewpoint:
    if not isinstance(item, dict):
        raise ConnectivityError(f"{path}: entry {i} lacks an image_id (it is a {type(item).__name__}, not an object)")
    vp = item.get("image_id")
    if not isinstance(vp, str):
        raise ConnectivityError(f"{path}: entry {i} lacks a string image_id (it has {vp!r:.40})")
    pose = item.get("pose")
    if not isinstance(pose, list) or len(pose) != 16:
        got = f"{len(pose)} numbers" if isinstance(pose, list) else _kind(pose)
        raise ConnectivityError(f"{path}: entry {i} lacks a 16-number pose (viewpoint {vp} has {got})")
    try:
        values = tuple(float(x) for x in pose if not isinstance(x, (bool, str)))  # JSON numbers only
    except (TypeError, OverflowError):  # null, a list, an object; an integer beyond float range
        values = ()
    if len(values) != 16 or not all(map(math.isfinite, values)):
        raise ConnectivityError(f"{path}: entry {i} lacks a 16-number pose "
                                f"(viewpoint {vp} has a value that is not a finite number)")
    flags = item.get("unobstructed")
    if not isinstance(flags, list) or len(flags) != n:
        got = f"{len(flags)}" if isinstance(flags, list) else _kind(flags)
        raise ConnectivityError(f"{path}: entry {i} lacks {n} unobstructed flags, one per entry (viewpoint {vp} has {got})")
    # truthiness, as R2R's load_nav_graphs tests the flags
    return Viewpoint(id=vp, pose=values, included=bool(item.get("included")), unobstructed=tuple(map(bool, flags)))


def _kind(value: object) -> str:
    """What stands where a list should: 'none' for a missing key or null, else its JSON-ish type."""
    return "none" if value is None else f"a {type(value).__name__}"
