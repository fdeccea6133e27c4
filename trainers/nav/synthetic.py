"""A synthetic R2R task a follower can learn: graphs, instructions and a panorama store.

Each scan is a jittered grid of viewpoints (2.5 m apart, some edges missing) written as real
`connectivity/{scan}_connectivity.json` files. Every viewpoint carries a landmark (a word with
a fixed random appearance vector, the same across scans); the 36 view features of a viewpoint
are noise plus the appearance of each neighbour in the view the agent would move through to
reach it. Instructions name the landmarks along the path ("walk past the sofa , then the lamp
and stop at the plant ."), so following one means matching words to what the views show.
Held-out splits: new paths in the training scans (`val_seen`) and new scans (`val_unseen`).

    make_nav_task(root, store="root/r2r.zarr")  ->  root/R2R_{train,val_seen,val_unseen}.json,
                                                   root/connectivity/*.json, the store

With `store=False` no features are written; the returned `sights` (for every `{scan}_{vp}`,
the world direction and landmark of each neighbour) let `clipfeat.apps.demo` paint the
same scene into Matterport skyboxes, so the demo extracts real images of the task.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from clipfeat.common import VIEWS

__all__ = ["LANDMARKS", "make_nav_task"]

LANDMARKS = (
    "sofa", "lamp", "plant", "table", "chair", "piano", "mirror", "fireplace", "bed", "sink", "stairs", "door",
    "window", "painting", "rug", "shelf", "clock", "vase", "desk", "couch", "oven", "fridge", "bathtub", "toilet",
    "cabinet", "statue", "television", "bench", "fountain", "railing", "curtain", "closet", "dresser", "counter",
    "armchair", "bookcase", "stool", "pillar", "archway", "balcony",
)
_TEMPLATES = (
    ("walk past the {}", ", then the {}", " and stop at the {} ."),
    ("go by the {}", ", go by the {}", " and wait next to the {} ."),
)


def _scan_graph(rng: np.random.Generator, side: int) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """Positions [n, 3] of a jittered side x side grid and its edges (a spanning tree kept, so
    every viewpoint is reachable, plus most other grid edges)."""
    ij = np.array([(i, j) for i in range(side) for j in range(side)])
    pos = np.concatenate([ij * 2.5 + rng.uniform(-0.4, 0.4, ij.shape), np.full((len(ij), 1), 1.5)], axis=1)
    grid = [(a, b) for a in range(len(ij)) for b in range(a + 1, len(ij)) if np.abs(ij[a] - ij[b]).sum() == 1]
    parent = list(range(len(ij)))

    def root(a: int) -> int:
        while parent[a] != a:
            a = parent[a]
        return a

    edges = set()
    for k in rng.permutation(len(grid)):
        a, b = grid[k]
        if root(a) != root(b):
            parent[root(a)] = root(b)
            edges.add((a, b))
        elif rng.random() < 0.6:
            edges.add((a, b))
    return pos, edges


def _connectivity(names: list[str], pos: np.ndarray, edges: set[tuple[int, int]]) -> list[dict]:
    n = len(names)
    adj = np.zeros((n, n), dtype=bool)
    for a, b in edges:
        adj[a, b] = adj[b, a] = True
    out = []
    for i, name in enumerate(names):
        pose = np.eye(4)
        pose[:3, 3] = pos[i]
        out.append({"image_id": name, "pose": pose.ravel().tolist(), "included": True,
                    "visible": adj[i].tolist(), "unobstructed": adj[i].tolist(), "height": 1.5})
    return out


def make_nav_task(root: str | Path, *, store: str | Path | None | bool = None, scans: int = 8, unseen: int = 2, side: int = 4,
                  dim: int = 32, paths_per_scan: int = 60, landmarks: int = len(LANDMARKS), seed: int = 0) -> dict:
    """Write the task under `root` (and the feature store at `store`, default root/r2r.zarr;
    False: no store). `landmarks`: how many of LANDMARKS the scans draw from (at least side²;
    fewer means each landmark recurs in more training scans). Returns {"data": root, "connectivity": root/connectivity, "store": store
    path or None, "splits": {name: episodes}, "sights": {key: [(unit xyz [3], landmark index)]}}."""
    from clipfeat.features import DatasetInfo, EncoderInfo, Layout, PreprocessInfo, StoreMeta, create_store

    from .graphs import load_graph

    root = Path(root)
    store = None if store is False else Path(store) if store else root / "r2r.zarr"
    (root / "connectivity").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    appearance = rng.standard_normal((len(LANDMARKS), dim))
    keys, feats, items, sights = [], [], {"train": [], "val_seen": [], "val_unseen": []}, {}
    path_id = 1
    for s in range(scans):
        scan = f"synth{s:02d}scan"
        pos, edges = _scan_graph(rng, side)
        names = [f"{s:02d}{v:02d}{rng.integers(16**8):08x}" for v in range(len(pos))]
        conn = root / "connectivity" / f"{scan}_connectivity.json"
        conn.write_text(json.dumps(_connectivity(names, pos, edges)))
        graph = load_graph(conn)
        mark = dict(zip(names, rng.choice(landmarks, len(names), replace=False)))
        index = {vp: i for i, vp in enumerate(names)}
        for vp in names:
            f = 0.3 * rng.standard_normal((VIEWS, dim))  # [36, D]
            seen = []
            for c in graph.candidates(vp):  # the neighbour shows in the view the agent moves through
                f[c.view] += appearance[mark[c.viewpoint]]
                d = pos[index[c.viewpoint]] - pos[index[vp]]
                seen.append((d / np.linalg.norm(d), int(mark[c.viewpoint])))
            keys.append(f"{scan}_{vp}")
            feats.append(f)
            sights[f"{scan}_{vp}"] = seen
        splits = ("val_unseen",) if s >= scans - unseen else ("train", "val_seen")
        for k in range(paths_per_scan):
            split = splits[0] if len(splits) == 1 or k % 5 else splits[1]
            while True:
                a, b = (str(v) for v in rng.choice(names, 2, replace=False))
                path = graph.path(a, b)
                if 3 <= len(path) <= 6:
                    break
            words = [LANDMARKS[mark[v]] for v in path[1:]]
            first, mid, last = _TEMPLATES[k % len(_TEMPLATES)]
            text = "" if len(words) == 1 else first.format(words[0]) + "".join(mid.format(w) for w in words[1:-1])
            text = (text + last.format(words[-1])).removeprefix(" and ")
            items[split].append({"distance": round(graph.distance(a, b), 2), "scan": scan, "path_id": path_id,
                                 "path": path, "heading": round(float(rng.uniform(0, 2 * math.pi)), 3),
                                 "instructions": [text]})
            path_id += 1
    for split, its in items.items():
        (root / f"R2R_{split}.json").write_text(json.dumps(its))
    out = {"data": str(root), "connectivity": str(root / "connectivity"), "store": str(store) if store else None,
           "splits": items, "sights": sights}
    if store is None:
        return out

    meta = StoreMeta.build(
        dataset=DatasetInfo(name="r2r", manifest_sha256="0" * 64, num_items=len(keys), splits={"all": len(keys)}),
        encoder=EncoderInfo(model="synthetic"), preprocess=PreprocessInfo(mode="unknown"),
        layout=Layout(pooled_dim=dim, views=VIEWS), shard_size=64,
    )
    order = np.argsort(keys)  # stores keep rows sorted by key
    keys = [keys[i] for i in order]
    pooled = np.stack(feats)[order].astype(np.float16)
    w = create_store(str(store), meta=meta, keys=keys, overwrite=True)
    for k in range(meta.shards.count):
        r = w.shard_rows(k)
        w.write_shard(k, pooled=pooled[r.start : r.stop])
    w.finalize()
    return out
