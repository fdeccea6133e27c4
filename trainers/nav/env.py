"""A batched R2R environment on navigation graphs and cached panoramas: no simulator.

The panoramic action space of Fried et al. / EnvDrop: at a viewpoint the agent sees its 36
views and chooses one of the navigable neighbours (each reached through the view nearest its
direction) or STOP. Everything per step is array indexing into tables built once:

    World: every viewpoint of every scan gets a global id g; per g, padded candidate tables
           cand_g / cand_view / cand_heading / cand_elevation / cand_length [G, K] (K = the most
           neighbours any viewpoint has); the scans' shortest-path distances in one flat array.
    NavBatch: B episodes' state (viewpoint g, heading, elevation, ended, trajectory), advanced
           by `step(actions)`; `observe()` gives the model's inputs as tensors.

Action 0 is STOP; action j ≥ 1 moves to candidate j−1. After a move the agent faces the view it
moved through (the simulator turns to that view, then moves), as EnvDrop's agents do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from clipfeat.common import VIEW_ELEVATIONS, VIEW_HEADINGS

from .data import PanoFeatures
from .graphs import ScanGraph, angle_feature

__all__ = ["MAX_STEPS", "NavBatch", "World", "make_batch"]

MAX_STEPS = 35  # moves per episode before the environment stops the agent (R2R agents' limit)


class World:
    """Static tables for a set of scans (see the module docstring)."""

    def __init__(self, graphs: Mapping[str, ScanGraph], feats: PanoFeatures, *, angle_size: int = 128) -> None:
        self.graphs, self.feats, self.angle_size = graphs, feats, angle_size
        self.gid: dict[tuple[str, str], int] = {}
        offsets, start = {}, 0
        for scan in sorted(graphs):
            g = graphs[scan]
            for vp in g.viewpoints:
                self.gid[(scan, vp)] = len(self.gid)
            offsets[scan] = (start, len(g.viewpoints))
            start += len(g.viewpoints) ** 2
        G = len(self.gid)
        missing = [k for k in self.gid if k not in feats.index]
        if missing:
            raise ValueError(f"{len(missing)} viewpoints have no features in the store, e.g. {'_'.join(missing[0])}; "
                             "extract them (or drop those scans)")
        self.feat_row = torch.tensor([feats.index[k] for k in self.gid], dtype=torch.long)  # [G] row in feats
        self.scan_of = np.array([k[0] for k in self.gid])
        K = max(len(graphs[s].candidates(v)) for s, v in self.gid)
        self.K = K
        self.cand_g = np.full((G, K), -1, dtype=np.int64)
        self.cand_view = np.zeros((G, K), dtype=np.int64)
        self.cand_heading = np.zeros((G, K), dtype=np.float32)
        self.cand_elevation = np.zeros((G, K), dtype=np.float32)
        self.cand_length = np.zeros((G, K), dtype=np.float64)
        self.n_cand = np.zeros(G, dtype=np.int64)
        for (scan, vp), g in self.gid.items():
            cands = graphs[scan].candidates(vp)
            self.n_cand[g] = len(cands)
            for j, c in enumerate(cands):
                self.cand_g[g, j] = self.gid[(scan, c.viewpoint)]
                self.cand_view[g, j] = c.view
                self.cand_heading[g, j] = c.heading
                self.cand_elevation[g, j] = c.elevation
                self.cand_length[g, j] = c.distance
        # distance(a, b) for a, b of one scan = dist_flat[base[a] + local[a] * n[a] + local[b]]
        self.local = np.array([graphs[s].index[v] for s, v in self.gid], dtype=np.int64)
        self.base = np.array([offsets[s][0] for s, _ in self.gid], dtype=np.int64)
        self.n = np.array([offsets[s][1] for s, _ in self.gid], dtype=np.int64)
        self.dist_flat = np.concatenate([graphs[s].dist.ravel() for s in sorted(graphs)])
        # each view's heading and elevation, radians, [36] float32 (as the agent's own heading)
        self.view_heading, self.view_elevation = np.asarray(VIEW_HEADINGS, np.float32), np.asarray(VIEW_ELEVATIONS, np.float32)
        self.viewpoint = [k[1] for k in self.gid]

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Shortest-path distance [B] between global viewpoints a [B] and b [B] of the same scans."""
        return self.dist_flat[self.base[a] + self.local[a] * self.n[a] + self.local[b]]

    def teacher(self, cur: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """The expert's action [B]: STOP (0) at the goal, else 1 + the candidate that starts the
        shortest path to the goal (edge length + remaining distance, smallest)."""
        valid = self.cand_g[cur] >= 0  # [B, K]
        nxt = np.where(valid, self.cand_g[cur], cur[:, None])
        cost = self.cand_length[cur] + self.distance(nxt.ravel(), np.repeat(goal, self.K)).reshape(nxt.shape)
        cost = np.where(valid, cost, np.inf)
        return np.where(cur == goal, 0, cost.argmin(1) + 1)


@dataclass
class NavBatch:
    """The state of B episodes in a `World`."""

    world: World
    start: np.ndarray  # [B] global viewpoint ids
    heading: np.ndarray  # [B] radians
    goal: np.ndarray | None = None  # [B] global ids (None: test episodes)
    cur: np.ndarray = field(init=False)
    elevation: np.ndarray = field(init=False)
    ended: np.ndarray = field(init=False)
    steps: np.ndarray = field(init=False)
    trajectory: list[list[list]] = field(init=False)
    env_seconds: float = 0.0  # time spent in observe/teacher/step (the benchmark's share of an iteration)

    def __post_init__(self) -> None:
        self.cur = self.start.copy()
        self.heading = self.heading.astype(np.float32)
        self.elevation = np.zeros(len(self.start), dtype=np.float32)
        self.ended = np.zeros(len(self.start), dtype=bool)
        self.steps = np.zeros(len(self.start), dtype=np.int64)
        w = self.world
        self.trajectory = [[[w.viewpoint[g], float(h), 0.0]] for g, h in zip(self.start, self.heading)]

    def observe(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The model's inputs:
        pano      [B, 36, D + A]  view features + angle features relative to the agent's heading
        cand      [B, 1 + K, D + A]  STOP (zeros) then each navigable neighbour's view + its direction
        cand_mask [B, 1 + K]  True = a real choice (STOP always; ended episodes: STOP only)
        """
        t0 = time.perf_counter()
        w, B = self.world, len(self.cur)
        feats = w.feats.feats[w.feat_row[torch.from_numpy(self.cur)]]  # [B, 36, D] f16
        rel_h = w.view_heading[None, :] - self.heading[:, None]  # [B, 36]
        rel_e = w.view_elevation[None, :] - self.elevation[:, None]
        pano = torch.cat([feats.float(), torch.from_numpy(angle_feature(rel_h, rel_e, w.angle_size))], dim=-1)
        views = w.cand_view[self.cur]  # [B, K]
        cand_feat = pano.gather(1, torch.from_numpy(views)[..., None].expand(-1, -1, feats.shape[-1] + w.angle_size))
        ch = w.cand_heading[self.cur] - self.heading[:, None]
        ce = w.cand_elevation[self.cur] - self.elevation[:, None]
        cand_feat[..., feats.shape[-1]:] = torch.from_numpy(angle_feature(ch, ce, w.angle_size))  # the neighbour's own direction
        cand = torch.cat([cand_feat.new_zeros(B, 1, cand_feat.shape[-1]), cand_feat], dim=1)
        mask = np.concatenate([np.ones((B, 1), bool), (w.cand_g[self.cur] >= 0) & ~self.ended[:, None]], axis=1)
        out = {"pano": pano.to(device), "cand": cand.to(device), "cand_mask": torch.from_numpy(mask).to(device)}
        self.env_seconds += time.perf_counter() - t0
        return out

    def teacher(self) -> np.ndarray:
        """Expert actions [B] (STOP for ended episodes)."""
        if self.goal is None:
            raise ValueError("episodes without a goal (test split) have no teacher")
        t0 = time.perf_counter()
        out = np.where(self.ended, 0, self.world.teacher(self.cur, self.goal))
        self.env_seconds += time.perf_counter() - t0
        return out

    def step(self, actions: np.ndarray) -> None:
        """Apply actions [B] (0 = STOP, j = move through candidate j−1); episodes that stop, or
        reach MAX_STEPS moves, end."""
        t0 = time.perf_counter()
        w = self.world
        move = (actions > 0) & ~self.ended
        j = np.clip(actions - 1, 0, w.K - 1)
        nxt = w.cand_g[self.cur, j]
        if (nxt[move] < 0).any():
            raise ValueError("an action chose a padding candidate; mask the logits with cand_mask")
        view = w.cand_view[self.cur, j]
        self.cur = np.where(move, nxt, self.cur)
        self.heading = np.where(move, w.view_heading[view], self.heading)
        self.elevation = np.where(move, w.view_elevation[view], self.elevation)
        self.steps += move
        self.ended |= ~move | (self.steps >= MAX_STEPS)
        for i in np.flatnonzero(move):
            self.trajectory[i].append([w.viewpoint[self.cur[i]], float(self.heading[i]), float(self.elevation[i])])
        self.env_seconds += time.perf_counter() - t0

    def distance_to_goal(self) -> np.ndarray:
        return self.world.distance(self.cur, self.goal)


def make_batch(world: World, episodes: Sequence, idx: np.ndarray) -> NavBatch:
    """A NavBatch for episodes[idx] (their start viewpoint, heading and, when known, goal)."""
    eps = [episodes[i] for i in idx]
    start = np.array([world.gid[(e.scan, e.path[0])] for e in eps], dtype=np.int64)
    heading = np.array([e.heading for e in eps], dtype=np.float32)
    goal = None
    if all(len(e.path) > 1 for e in eps):
        goal = np.array([world.gid[(e.scan, e.path[-1])] for e in eps], dtype=np.int64)
    return NavBatch(world, start, heading, goal)

