"""R2R episodes: the split files, instruction tokens, the vocabulary, the panorama features.

Files as distributed (`--data DIR`): `R2R_{train,val_seen,val_unseen,test}.json`, a list of
    {"path_id", "scan", "path": [viewpoint, …], "heading", "instructions": [str, …], "distance"}
(the test split has no `path` beyond its start viewpoint). One episode per instruction,
`instr_id = f"{path_id}_{k}"` as the official evaluation names them.

Features: a store of R2R viewpoints (keys `{scan}_{viewpoint}`, `pooled` [N, 36, D], the
simulator's 36 discretised views), read once into memory, [G, 36, D] float16: R2R's 10,567
viewpoints at D = 640 are 0.5 GB, and the agent looks up a batch's panoramas every step.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from clipfeat.common.r2r import VIEWS
from clipfeat.features import FeatureStore

from ..config import ConfigError
from ..grids import Vocab

__all__ = ["PAD", "UNK", "Episode", "PanoFeatures", "build_vocab", "encode_instructions", "load_split", "tokenize"]

PAD, UNK = 0, 1
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lower-cased words and punctuation marks ("Walk past the sofa." -> walk past the sofa .)."""
    return _TOKEN.findall(text.lower())


@dataclass
class Episode:
    instr_id: str
    scan: str
    path: list[str]  # the ground-truth path (only the start viewpoint for the test split)
    heading: float  # initial heading, radians clockwise from +y
    instruction: str


def load_split(data_dir: str | Path, split: str) -> list[Episode]:
    path = Path(data_dir) / f"R2R_{split}.json"
    if not path.is_file():
        raise ConfigError(f"{path} not found; --data must hold the R2R files (R2R_{split}.json)")
    try:
        items = json.loads(path.read_text())
        return [Episode(f"{it['path_id']}_{k}", it["scan"], list(it["path"]), float(it["heading"]), text)
                for it in items for k, text in enumerate(it["instructions"])]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is not in the R2R format ({e!r})") from None


def build_vocab(episodes: Sequence[Episode], min_count: int = 5) -> Vocab:
    counts = Counter(t for e in episodes for t in tokenize(e.instruction))
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return Vocab(["<pad>", "<unk>", *words])


def encode_instructions(episodes: Sequence[Episode], vocab: Vocab, max_tokens: int) -> np.ndarray:
    """[E, max_tokens] int64 word ids, PAD = 0; longer instructions are cut."""
    out = np.zeros((len(episodes), max_tokens), dtype=np.int64)
    for i, e in enumerate(episodes):
        ids = [vocab.stoi.get(t, UNK) for t in tokenize(e.instruction)[:max_tokens]]
        out[i, : len(ids)] = ids
    return out


class PanoFeatures:
    """Every viewpoint's 36 view features in memory: `feats` [G, 36, D] float16, `index[(scan, vp)] = g`."""

    def __init__(self, feats: torch.Tensor, keys: Sequence[str]) -> None:
        self.feats = feats
        self.index = {}
        for g, k in enumerate(keys):
            scan, _, vp = k.partition("_")
            self.index[(scan, vp)] = g

    @classmethod
    def from_store(cls, store: FeatureStore, scans: set[str] | None = None) -> "PanoFeatures":
        """The store's `pooled` [36, D] per viewpoint (only `scans`, when given)."""
        layout = store.meta.layout
        if layout.views != VIEWS:
            raise ConfigError(f"{store.url} is not an R2R panorama store (views={layout.views}, need {VIEWS}); "
                              "extract one with `clipfeat extract --dataset r2r`")
        keys = list(store.keys)
        rows = np.array([i for i, k in enumerate(keys) if scans is None or k.partition("_")[0] in scans], dtype=np.int64)
        done = np.zeros(len(keys), dtype=bool)
        done[store.done_rows()] = True
        rows = rows[done[rows]]
        return cls(torch.from_numpy(store.read("pooled", rows)), [keys[r] for r in rows])

    @property
    def dim(self) -> int:
        return self.feats.shape[-1]
