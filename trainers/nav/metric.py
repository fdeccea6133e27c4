"""`metric`: the official R2R evaluation (navigation error, success, oracle success, SPL, length).

Reproduces `Evaluation` of Matterport3DSimulator `tasks/R2R/eval.py` (the version with SPL, as
R2R-EnvDrop r2r_src/eval.py, which CLIP-ViL's R2R code uses, also computes it). Per instruction
(instr_id = f"{path_id}_{k}" for the k-th instruction of a split item), with distances the
shortest-path distances in metres on the scan's navigation graph (`graphs.ScanGraph.dist`):

- nav error = distance from the trajectory's final viewpoint to the goal (the last viewpoint of
  the ground-truth path); success = nav error < 3.0 m (the official `error_margin`).
- oracle error = the smallest distance to the goal of any viewpoint of the trajectory; oracle
  success = oracle error < 3.0 m.
- length = the sum of the distances between consecutive trajectory viewpoints (a repeated
  viewpoint, i.e. a turn in place, adds 0); steps = trajectory entries − 1.
- SPL = success · l / max(l, p, 0.01), l = distance start → goal, p = length. The simulator's
  eval.py writes sp / max(length, sp), EnvDrop's adds the 0.01 floor, which only matters when the
  start is the goal (l = 0, where the simulator's form divides 0 by 0); R2R paths are 5 m or longer.

Scores are plain means over the instructions (rates as fractions; `format_scores` prints them
in percent as papers quote them).

Checks, as the official code's asserts but as one-line `ValueError`s: every instruction of the
split must have a trajectory; a trajectory must begin at its episode's start viewpoint; each move
must follow an edge of the navigation graph (the newer eval.py raises on a jump, since its length
would be wrong). As officially, results for instr_ids that are not in the split are ignored, so
one results file can be scored against each of several splits. Deliberate departures, where the
official code keeps the first of duplicated results silently, or fails with a KeyError: a
duplicated instr_id, an unknown viewpoint, a scan without a graph and a split item without a
ground-truth path (the test split) raise a `ValueError` saying what to fix.

The simulator repository's eval.py expects exactly 3 instructions per path (`range(3)`); this
module, like EnvDrop's, expects `len(item["instructions"])`, so the one val_seen path with 4
instructions counts 4 (1,021 val_seen instructions; val_unseen has 2,349 either way).

On the real data a shortest-path agent scores SR = SPL = 1 exactly; replaying the ground-truth
paths gives SR 1 but SPL 0.9984 on val_unseen, because 8 of its 783 paths are longer than the
shortest path on the released graphs. Staying at the start scores SR 0 (no R2R goal is within 5 m).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..files import load_json
from .graphs import ScanGraph, load_graphs

__all__ = ["ERROR_MARGIN", "NavScores", "evaluate", "format_scores"]

ERROR_MARGIN = 3.0  # metres: success when the final viewpoint is closer than this to the goal (shortest path)

_RESULTS_FORMAT = 'expected [{"instr_id": "<path_id>_<k>", "trajectory": [[viewpoint, heading, elevation], ...]}, ...]'
_SPLIT_FORMAT = 'expected an R2R split: [{"path_id": int, "scan": str, "path": [viewpoint, ...], "heading": float, "instructions": [str, ...]}, ...]'

JsonSource = str | os.PathLike[str]


@dataclass
class NavScores:
    """Official R2R scores: means over `episodes` instructions. Distances in metres, rates as
    fractions 0..1; `per_episode[instr_id]` holds that instruction's values (success and
    oracle_success as 0.0 / 1.0, plus its shortest-path distance `shortest`)."""

    length: float
    nav_error: float
    oracle_error: float
    success_rate: float
    oracle_success_rate: float
    spl: float
    steps: float
    episodes: int
    per_episode: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        """{"length", "nav_error", "oracle_error", "success_rate", "oracle_success_rate", "spl", "steps", "episodes"}."""
        return {
            "length": float(self.length),
            "nav_error": float(self.nav_error),
            "oracle_error": float(self.oracle_error),
            "success_rate": float(self.success_rate),
            "oracle_success_rate": float(self.oracle_success_rate),
            "spl": float(self.spl),
            "steps": float(self.steps),
            "episodes": int(self.episodes),
        }


def _examples(ids: Sequence[str], n: int = 3) -> str:
    return "e.g. " + ", ".join(repr(i) for i in sorted(ids)[:n]) if ids else "none"


@dataclass(frozen=True, slots=True)
class _Episode:
    scan: str
    start: str
    goal: str


def _split_episodes(split: list[dict[str, Any]] | JsonSource) -> dict[str, _Episode]:
    """{instr_id: (scan, start, goal)} for every instruction of an R2R split (a list or a path), in split order."""
    items = load_json(split, "split", _SPLIT_FORMAT)
    if not isinstance(items, list) or not items:
        raise ValueError(f"split holds no items; {_SPLIT_FORMAT}")
    episodes: dict[str, _Episode] = {}
    for i, it in enumerate(items):
        ok = (
            isinstance(it, Mapping)
            and isinstance(it.get("path_id"), (int, str))
            and isinstance(it.get("scan"), str)
            and isinstance(it.get("path"), list)
            and isinstance(it.get("instructions"), list)
        )
        if not ok:
            raise ValueError(f"split item {i} lacks path_id, scan, path or instructions; {_SPLIT_FORMAT}")
        if len(it["path"]) < 2:
            raise ValueError(
                f"split item {i} (path_id {it['path_id']}) has no ground-truth path beyond its start;"
                " a test split cannot be scored locally"
            )
        ep = _Episode(it["scan"], it["path"][0], it["path"][-1])
        for k in range(len(it["instructions"])):
            instr_id = f"{it['path_id']}_{k}"
            if instr_id in episodes:
                raise ValueError(f"split: instr_id {instr_id} occurs twice (path_id {it['path_id']} repeated); one item per path_id")
            episodes[instr_id] = ep
    return episodes


def _read_results(results: list[dict[str, Any]] | JsonSource) -> dict[str, list[str]]:
    """{instr_id: [viewpoint, ...]} from results (a list or a path); headings and elevations are not scored."""
    data = load_json(results, "results", _RESULTS_FORMAT)
    if not isinstance(data, list):
        raise ValueError(f"results is a {type(data).__name__}, not a list; {_RESULTS_FORMAT}")
    out: dict[str, list[str]] = {}
    duplicated = []
    for i, r in enumerate(data):
        if not isinstance(r, Mapping) or not isinstance(r.get("instr_id"), str) or not isinstance(r.get("trajectory"), list):
            raise ValueError(f"results entry {i} has no string instr_id and trajectory list; {_RESULTS_FORMAT}")
        traj = r["trajectory"]
        if not traj:
            raise ValueError(f"results entry {i} ({r['instr_id']}) has an empty trajectory; it must begin at the start viewpoint")
        vps = []
        for step in traj:
            vp = step if isinstance(step, str) else step[0] if isinstance(step, (list, tuple)) and step else None
            if not isinstance(vp, str):
                raise ValueError(f"results entry {i} ({r['instr_id']}) has a trajectory step {step!r}; {_RESULTS_FORMAT}")
            vps.append(vp)
        if r["instr_id"] in out:
            duplicated.append(r["instr_id"])
        out[r["instr_id"]] = vps
    if duplicated:
        raise ValueError(f"results give {len(duplicated)} instr_ids more than once ({_examples(duplicated)}); give one trajectory each")
    return out


def _score(instr_id: str, ep: _Episode, traj: list[str], g: ScanGraph) -> dict[str, float]:
    if traj[0] != ep.start:
        raise ValueError(
            f"trajectory of {instr_id} starts at {traj[0]}, not at the episode's start {ep.start}; trajectories must include the start position"
        )
    rows = np.array([g.row(vp) for vp in traj])  # [T]
    goal = g.row(ep.goal)
    steps = list(zip(traj[:-1], traj[1:]))
    for a, b in steps:
        if a != b and not g.graph.has_edge(a, b):
            raise ValueError(
                f"trajectory of {instr_id} moves from {a} to {b}, which no edge of scan {ep.scan} joins; list every viewpoint passed"
            )
    to_goal = g.dist[rows, goal]  # [T]
    nav_error = float(to_goal[-1])
    oracle_error = float(to_goal.min())
    length = 0.0
    for a, b in zip(rows[:-1], rows[1:]):  # summed in order, as the official loop does
        length += float(g.dist[a, b])
    shortest = float(g.dist[rows[0], goal])
    success = nav_error < ERROR_MARGIN
    return {
        "nav_error": nav_error,
        "oracle_error": oracle_error,
        "length": length,
        "shortest": shortest,
        "steps": float(len(traj) - 1),
        "success": float(success),
        "oracle_success": float(oracle_error < ERROR_MARGIN),
        "spl": float(success) * shortest / max(shortest, length, 0.01),
    }


def evaluate(
    results: list[dict[str, Any]] | JsonSource,
    split: list[dict[str, Any]] | JsonSource,
    graphs: Mapping[str, ScanGraph] | JsonSource,
) -> NavScores:
    """Official R2R scores of `results` ([{"instr_id", "trajectory": [[viewpoint, heading, elevation], ...]}]
    or a path to such JSON) on `split` (R2R_*.json items or its path), with `graphs` ({scan:
    ScanGraph} from `load_graphs`, or the connectivity folder to load the split's scans from)."""
    episodes = _split_episodes(split)
    trajectories = _read_results(results)
    missing = [i for i in episodes if i not in trajectories]
    if missing:
        raise ValueError(
            f"results lack {len(missing)} of the split's {len(episodes)} instructions ({_examples(missing)});"
            " give a trajectory for every instr_id '<path_id>_<k>'"
        )
    scans = sorted({ep.scan for ep in episodes.values()})
    if not isinstance(graphs, Mapping):
        graphs = load_graphs(graphs, scans)
    absent = [s for s in scans if s not in graphs]
    if absent:
        raise ValueError(f"no navigation graph for {len(absent)} scans of the split ({', '.join(absent[:3])}); load their connectivity")

    per_episode = {i: _score(i, ep, trajectories[i], graphs[ep.scan]) for i, ep in episodes.items()}

    def mean(key: str) -> float:
        return float(np.average([s[key] for s in per_episode.values()]))

    return NavScores(
        length=mean("length"),
        nav_error=mean("nav_error"),
        oracle_error=mean("oracle_error"),
        success_rate=mean("success"),
        oracle_success_rate=mean("oracle_success"),
        spl=mean("spl"),
        steps=mean("steps"),
        episodes=len(per_episode),
        per_episode=per_episode,
    )


def format_scores(scores: NavScores) -> str:
    """A plain-text table: lengths and errors in metres, rates and SPL in percent, mean steps."""
    n = scores.episodes
    rows = [
        ("length (m)", scores.length),
        ("nav error (m)", scores.nav_error),
        ("oracle error (m)", scores.oracle_error),
        ("success rate (%)", 100 * scores.success_rate),
        ("oracle success (%)", 100 * scores.oracle_success_rate),
        ("SPL (%)", 100 * scores.spl),
        ("steps", scores.steps),
    ]
    lines = [f"R2R navigation  ({n} instruction{'' if n == 1 else 's'}, success: error < {ERROR_MARGIN:g} m)", ""]
    lines.extend(f"  {name:<20}{value:8.2f}" for name, value in rows)
    return "\n".join(lines)
