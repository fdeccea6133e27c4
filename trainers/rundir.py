"""A run folder, its metrics log and its checkpoints.

    RUN/config.json        the full resolved config, recipe name included (reload it with --resume RUN)
    RUN/metrics.jsonl      one JSON object per train log step and per evaluation
    RUN/ckpt_latest.pt     {model, optimizer, scheduler, config, step, epoch, best, extra}
    RUN/ckpt_best.pt       the same, at the best evaluation so far
    RUN/curve.png          training loss and the eval metric
    RUN/predictions_*.json predictions in the task's official results format

Checkpoints hold only tensors, numbers, strings, lists and dicts, so they load with
`torch.load(weights_only=True)`: opening a checkpoint from a colleague cannot run code.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from .config import ConfigError

__all__ = ["MetricsLog", "RunDir", "load_checkpoint", "save_checkpoint"]


class RunDir:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.latest = self.path / "ckpt_latest.pt"
        self.best = self.path / "ckpt_best.pt"
        self.curve = self.path / "curve.png"

    @classmethod
    def create(cls, out_dir: str, task: str, *, resume: bool) -> "RunDir":
        path = Path(out_dir or f"runs/{task}-{time.strftime('%Y%m%d-%H%M%S')}")
        run = cls(path)
        if not resume and run.latest.exists():
            raise ConfigError(f"{path} already holds a run; continue it with --resume {path} or pick another --out")
        if resume and not run.latest.exists():
            raise ConfigError(f"--resume {path}: no ckpt_latest.pt there (the run never finished an epoch); start it again")
        path.mkdir(parents=True, exist_ok=True)
        return run

    def predictions(self, split: str) -> Path:
        return self.path / f"predictions_{split}.json"

    def write_json(self, path: Path, obj: Any) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(obj))
        os.replace(tmp, path)


class MetricsLog:
    """Append-only JSON Lines; `truncate_after(step)` drops what a killed run logged after its
    last checkpoint, so a resumed run's log reads as if it had never stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({**record, "time": round(time.time(), 3)}) + "\n")

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def truncate_after(self, step: int, epoch: int) -> None:
        keep = [r for r in self.read() if r["step"] <= step and r.get("epoch", 0) <= epoch]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
        os.replace(tmp, self.path)


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic: a kill mid-save leaves the previous checkpoint intact."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # pickle errors: not a checkpoint, or one with non-tensor objects
        raise ConfigError(f"{path} is not a clipfeat checkpoint ({type(e).__name__}: {e})") from None
