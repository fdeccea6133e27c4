"""`graphs`: the R2R navigation graphs, distances and panoramic action candidates, without the simulator.

A scan's graph is built from `connectivity/{scan}_connectivity.json` (a list of {"image_id",
"pose": row-major 4x4 camera-to-world, z up, metres, "included", "unobstructed": [bool per
entry], "height"}; read by `clipfeat.common.read_connectivity`) exactly as R2R's `load_nav_graphs`
(Matterport3DSimulator tasks/R2R/utils.py, copied unchanged into R2R-EnvDrop r2r_src/utils.py) builds it:

- An edge joins included viewpoints i and j when `unobstructed[j]` of i holds; the official
  loader then *asserts* that `unobstructed[i]` of j holds too ("Graph should be undirected"), so a
  one-way pair is an error there and raises a `ValueError` here (the real files have none; the
  simulator itself would offer the one-way move). Entries pointing at excluded viewpoints are
  ignored (the real files have 973 of them), and so is a viewpoint's entry for itself.
- Weight: the Euclidean distance between the pose translations (pose[3], pose[7], pose[11]),
  i.e. between the camera centres, computed with the official expression (same float).
- Nodes are added and edges inserted in the official order, so networkx's Dijkstra visits
  neighbours in the same order and `dist` / `path` are bit-identical to the official
  `all_pairs_dijkstra_path_length` / `all_pairs_dijkstra_path`; a path's edge lengths summed in
  order from its start equal `dist` exactly, so a shortest-path agent scores SPL = 1.0 exactly.
- One departure: every *included* viewpoint is a node. The official graph only has viewpoints
  that have an edge (8 of the 10,567 real included viewpoints have none); they get `dist` = inf
  to every other viewpoint and no candidates, and change no other distance.

Candidates are what EnvDrop's `R2RBatch.make_candidate` (r2r_src/env.py) gets from the simulator
(MatterSim.cpp `populateNavigable`, `setHeadingElevation`) with discretised views, 640x480, VFOV 60°:

- Direction to a neighbour: from camera centre to camera centre (both pose translations; the
  `height` field, the camera's height above the floor, is not used by the simulator). Absolute
  heading = atan2(dx, dy), clockwise from world +y, in [0, 2π); elevation = atan2(dz, |dxy|).
  These are reported in float64; EnvDrop's `normalized_heading` is the same angle, possibly
  outside [0, 2π).
- View: EnvDrop walks the 36 views ix = 0..35 (heading (ix % 12)·30°, elevation (ix // 12 − 1)·30°)
  and, for every neighbour the simulator lists in that view, keeps the view with the smallest
  sqrt(rel_heading² + rel_elevation²) (strict `<`: ties go to the lower ix). rel_heading is the
  simulator's signed angle atan2(cross, dot) from the view's heading, so it is wrapped to (−π, π];
  rel_elevation is not wrapped. The simulator lists a neighbour in a view only when its xy
  direction is within vfov·W/H/2 = 40° of the view's heading (no elevation limit), so the chosen
  view is always the nearest one. That choice is reproduced with the simulator's own float32
  arithmetic (positions read as float, glm float vectors), because it decides near-ties, e.g. the
  duplicate viewpoints a fraction of a millimetre apart that some scans have. A neighbour with
  no xy offset at all is in no view and never a candidate (none in the real files).
- Order: EnvDrop's, i.e. by the first view in which the simulator lists the neighbour, then by
  the simulator's order within that view (angular distance from the view centre), then by id.

On the 90 real scans (10,567 viewpoints, 21,468 edges) every one of the 42,936 candidates gets
the view nearest its float64 direction, and `dist` / `path` equal the official ones for all
1.7 M connected pairs. `load_graphs` reads all 90 with their distance matrices (networkx's
Dijkstra from every viewpoint) in about 2 s; candidates are computed per scan on first use
(about 0.1 s for all scans).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from clipfeat.common import (
    HEADING_COUNT, VFOV, VIEW_ELEVATIONS, VIEW_HEADINGS, VIEW_HEIGHT, VIEW_WIDTH, VIEWS, ConnectivityError, Viewpoint,
    read_connectivity,
)

__all__ = [
    "Candidate",
    "ScanGraph",
    "angle_feature",
    "load_graph",
    "load_graphs",
    "view_angles",
]

_FORMAT = (
    'expected the R2R connectivity format: [{"image_id": str, "pose": [16 numbers], "included": bool, '
    '"unobstructed": [bool per entry], ...}, ...]'
)
_SUFFIX = "_connectivity.json"

# The simulator as EnvDrop configures it (utils.new_simulator): discretised views, 640x480, VFOV 60°
# (clipfeat.common's view geometry), in MatterSim's own arithmetic where it decides near-ties.
_HEADING_INCREMENT = math.pi * 2.0 / HEADING_COUNT  # radians; MatterSim: M_PI*2.0/headingCount
_COS_HALF_HFOV = math.cos(VFOV * VIEW_WIDTH / VIEW_HEIGHT / 2.0)  # populateNavigable's visibility test: 40°
# The three view rows' elevations, radians: -30°, 0, +30° (to the bit MatterSim's ±elevationIncrement, M_PI/6.0)
_ROW_ELEVATIONS = VIEW_ELEVATIONS[::HEADING_COUNT]
# view_angles' tables as arrays, radians, ix = 0..35
_VIEW_HEADINGS, _VIEW_ELEVATIONS = np.array(VIEW_HEADINGS), np.array(VIEW_ELEVATIONS)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A navigable neighbour as seen from a viewpoint: its absolute direction (radians; heading
    clockwise from +y in [0, 2π), elevation up from the horizon), the discretised view 0..35 the
    agent moves through to reach it, and its Euclidean distance in metres (the edge weight)."""

    viewpoint: str
    heading: float
    elevation: float
    view: int
    distance: float


@dataclass(eq=False)
class ScanGraph:
    """One scan's navigation graph. Rows of `positions` and both axes of `dist` follow
    `viewpoints` (the included viewpoints in file order); `index` maps a viewpoint to its row."""

    scan: str
    graph: nx.Graph
    index: dict[str, int]
    viewpoints: list[str]
    positions: np.ndarray  # [N, 3] float64 camera centres (pose translations), metres
    dist: np.ndarray  # [N, N] float64 shortest-path distances, inf when unreachable
    _candidates: dict[str, tuple[Candidate, ...]] | None = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.viewpoints)

    def __contains__(self, viewpoint: object) -> bool:
        return viewpoint in self.index

    def row(self, viewpoint: str) -> int:
        """The row of `viewpoint`; ValueError when it is not an included viewpoint of this scan."""
        try:
            return self.index[viewpoint]
        except (KeyError, TypeError):
            raise ValueError(
                f"viewpoint {viewpoint!r} is not an included viewpoint of scan {self.scan}; use ids from its connectivity file"
            ) from None

    def distance(self, a: str, b: str) -> float:
        """Shortest-path distance in metres from `a` to `b` (inf when b cannot be reached)."""
        return float(self.dist[self.row(a), self.row(b)])

    def path(self, a: str, b: str) -> list[str]:
        """The shortest path from `a` to `b`, both ends included: networkx's Dijkstra from `a`, as
        the official `all_pairs_dijkstra_path` finds it (deterministic: same graph order)."""
        self.row(a), self.row(b)
        try:
            return nx.dijkstra_path(self.graph, a, b, weight="weight")
        except nx.NetworkXNoPath:
            raise ValueError(f"no path from {a} to {b} in scan {self.scan}; they are in different parts of the graph") from None

    def neighbours(self, viewpoint: str) -> list[str]:
        """The viewpoints one edge away, in the order the official graph stores them."""
        self.row(viewpoint)
        return list(self.graph.adj[viewpoint])

    def candidates(self, viewpoint: str) -> list[Candidate]:
        """The neighbours as EnvDrop's `make_candidate` presents them (see the module docstring).
        Computed for the whole scan on first use, then cached."""
        self.row(viewpoint)
        if self._candidates is None:
            self._candidates = _scan_candidates(self)
        return list(self._candidates[viewpoint])


# ---------------------------------------------------------------------------------------------
# Angles
# ---------------------------------------------------------------------------------------------


def view_angles(ix: int | np.ndarray) -> tuple[Any, Any]:
    """(heading, elevation) in radians of discretised view `ix` (0..35; an int or an int array):
    heading (ix % 12)·30°, elevation (ix // 12 − 1)·30° (views 0..11 look down, 24..35 up).
    The values of `clipfeat.common.view_angles`, for int arrays too."""
    a = np.asarray(ix)
    if not np.issubdtype(a.dtype, np.integer) or a.size and (a.min() < 0 or a.max() > VIEWS - 1):
        raise ValueError(f"view indices must be integers in 0..{VIEWS - 1}, got {ix!r}")
    heading, elevation = _VIEW_HEADINGS[a], _VIEW_ELEVATIONS[a]
    if a.ndim == 0:
        return float(heading), float(elevation)
    return heading, elevation


def angle_feature(heading: Any, elevation: Any, size: int = 128) -> np.ndarray:
    """EnvDrop's angle feature: [sin h, cos h, sin e, cos e] repeated size // 4 times, float32.

    `heading` and `elevation` (radians) broadcast together; the result has their shape plus a
    last axis of `size`. Sines are taken in float64 and then rounded, as EnvDrop's `math.sin` does.
    """
    if size <= 0 or size % 4:
        raise ValueError(f"size must be a positive multiple of 4, got {size}")
    h, e = np.broadcast_arrays(np.asarray(heading, dtype=np.float64), np.asarray(elevation, dtype=np.float64))
    four = np.stack([np.sin(h), np.cos(h), np.sin(e), np.cos(e)], axis=-1).astype(np.float32)  # [..., 4]
    return np.tile(four, (1,) * h.ndim + (size // 4,))


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _read_entries(path: Path) -> list[Viewpoint]:
    """The file's entries (clipfeat.common's reader); a ValueError that names the format otherwise."""
    try:
        data = read_connectivity(path)
    except ConnectivityError as e:
        raise ValueError(f"{e}; {_FORMAT}") from None
    if not data:
        raise ValueError(f"{path} holds no list of viewpoints; {_FORMAT}")
    return data


def load_graph(path: str | os.PathLike[str]) -> ScanGraph:
    """Read one `{scan}_connectivity.json` into a `ScanGraph` (distances included)."""
    path = Path(path)
    name = path.name
    scan = name[: -len(_SUFFIX)] if name.endswith(_SUFFIX) else path.stem
    data = _read_entries(path)
    included = [item.included for item in data]
    xyz = [item.position for item in data]  # camera centres, metres

    viewpoints = [item.id for item in data if item.included]
    index = {vp: r for r, vp in enumerate(viewpoints)}
    if len(index) != len(viewpoints):
        dup = next(vp for vp in viewpoints if viewpoints.count(vp) > 1)
        raise ValueError(f"{path}: viewpoint {dup} appears more than once; one entry per viewpoint")

    graph = nx.Graph()
    graph.add_nodes_from(viewpoints)
    for i, item in enumerate(data):
        if not included[i]:
            continue
        p = xyz[i]
        for j, conn in enumerate(item.unobstructed):
            if not conn or not included[j] or j == i:  # the simulator never offers a move to itself
                continue
            if not data[j].unobstructed[i]:
                raise ValueError(
                    f"{path}: {item.id} -> {data[j].id} is unobstructed but not the way back;"
                    " R2R's load_nav_graphs requires an undirected graph, fix the file"
                )
            q = xyz[j]
            # the official `distance(pose1, pose2)` on pose[3], pose[7], pose[11], term by term, for the same float
            w = ((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 + (p[2] - q[2]) ** 2) ** 0.5
            graph.add_edge(item.id, data[j].id, weight=w)

    positions = np.array([p for p, inc in zip(xyz, included) if inc], dtype=np.float64).reshape(-1, 3)
    n = len(viewpoints)
    dist = np.full((n, n), np.inf)
    for r, vp in enumerate(viewpoints):
        lengths = nx.single_source_dijkstra_path_length(graph, vp, weight="weight")
        row = dist[r]
        row[[index[v] for v in lengths]] = list(lengths.values())
    positions.setflags(write=False)
    dist.setflags(write=False)
    return ScanGraph(scan=scan, graph=graph, index=index, viewpoints=viewpoints, positions=positions, dist=dist)


def load_graphs(connectivity_dir: str | os.PathLike[str], scans: Iterable[str] | None = None) -> dict[str, ScanGraph]:
    """{scan: ScanGraph} for `scans` (default: every `*_connectivity.json` in the folder), sorted by scan."""
    root = Path(connectivity_dir)
    if scans is None:
        files = sorted(root.glob(f"*{_SUFFIX}"))
        if not files:
            raise ValueError(f"{root} has no *{_SUFFIX} files; pass the R2R connectivity folder")
    else:
        wanted = sorted(set(scans))
        files = [root / f"{scan}{_SUFFIX}" for scan in wanted]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ValueError(f"{root} lacks {len(missing)} connectivity files ({', '.join(missing[:3])}); download them for these scans")
    graphs = {}
    for f in files:
        g = load_graph(f)
        graphs[g.scan] = g
    return graphs


# ---------------------------------------------------------------------------------------------
# Candidates
# ---------------------------------------------------------------------------------------------


def _scan_candidates(g: ScanGraph) -> dict[str, tuple[Candidate, ...]]:
    """Every viewpoint's candidates, for all E directed edges at once ([36, E] arrays)."""
    out: dict[str, tuple[Candidate, ...]] = {vp: () for vp in g.viewpoints}
    src = np.array([g.index[u] for u in g.viewpoints for _ in g.graph.adj[u]], dtype=np.int64)
    dst = np.array([g.index[v] for u in g.viewpoints for v in g.graph.adj[u]], dtype=np.int64)
    if not len(src):
        return out
    weight = np.array([w for u in g.viewpoints for w in (d["weight"] for d in g.graph.adj[u].values())])

    # The simulator's arithmetic: float positions, glm float vectors, double atan2 (populateNavigable).
    pos32 = g.positions.astype(np.float32)
    t = pos32[dst] - pos32[src]  # [E, 3] float32 target_dir
    tx, ty = t[:, 0], t[:, 1]
    len_xy = np.sqrt(tx * tx + ty * ty)  # glm::length of target_dir with z = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.float32(1) / len_xy  # glm::normalize; a zero vector gives NaN: never visible
        nx_, ny_ = tx * inv, ty * inv
    abs_elev32 = np.arctan2(t[:, 2].astype(np.float64), len_xy.astype(np.float64))  # [E]
    adjusted = math.pi / 2.0 - np.arange(HEADING_COUNT) * _HEADING_INCREMENT  # [12] per view heading
    cx = np.cos(adjusted).astype(np.float32)[:, None]  # camera_horizon_dir, [12, 1] float32
    cy = np.sin(adjusted).astype(np.float32)[:, None]
    with np.errstate(invalid="ignore"):
        visible = (nx_ * cx + ny_ * cy).astype(np.float64) >= _COS_HALF_HFOV  # [12, E]
    rel_h = np.arctan2((tx * cy - ty * cx).astype(np.float64), (tx * cx + ty * cy).astype(np.float64))  # [12, E] in (-π, π]
    rel_e = abs_elev32[None, :] - np.array(_ROW_ELEVATIONS)[:, None]  # [3, E]
    # view ix = 12 * elevation row + heading column; EnvDrop's _loc_distance per view, inf where not listed
    dist = np.sqrt(rel_h[None, :, :] ** 2 + rel_e[:, None, :] ** 2).reshape(VIEWS, -1)  # [36, E]
    seen = np.tile(visible, (len(_ROW_ELEVATIONS), 1))  # [36, E]
    dist = np.where(seen, dist, np.inf)
    listed = seen.any(axis=0)  # [E]
    view = dist.argmin(axis=0)  # first minimum: EnvDrop replaces only on a strictly smaller distance
    first = seen.argmax(axis=0)  # the view in which EnvDrop first meets the neighbour
    first_key = dist[first, np.arange(len(src))]

    # Reported direction, in float64 from the pose translations.
    d = g.positions[dst] - g.positions[src]
    heading = np.mod(np.arctan2(d[:, 0], d[:, 1]), 2 * math.pi)
    heading[heading >= 2 * math.pi] = 0.0
    elevation = np.arctan2(d[:, 2], np.hypot(d[:, 0], d[:, 1]))

    rank = {vp: r for r, vp in enumerate(sorted(g.viewpoints))}
    id_rank = np.array([rank[g.viewpoints[v]] for v in dst])
    order = np.lexsort((id_rank, first_key, first, src))
    grouped: dict[str, list[Candidate]] = {}
    for e in order[listed[order]]:
        vp = g.viewpoints[src[e]]
        grouped.setdefault(vp, []).append(
            Candidate(g.viewpoints[dst[e]], float(heading[e]), float(elevation[e]), int(view[e]), float(weight[e]))
        )
    out.update({vp: tuple(c) for vp, c in grouped.items()})
    return out
