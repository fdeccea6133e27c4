"""A run's learning curves as a PNG (matplotlib imported only when a plot is drawn)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["plot_curves"]


def plot_curves(records: list[dict], path: Path, *, metric: str, title: str) -> None:
    """Training loss per step (left) and the eval metric per epoch (right), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval" and metric in r]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1)
    a.set_xlabel("step")
    a.set_ylabel("training loss")
    a.grid(alpha=0.3)
    b.plot([r["epoch"] for r in evals], [r[metric] for r in evals], marker="o")
    for key in ("baseline",):
        if evals and key in evals[-1]:
            b.axhline(evals[-1][key], ls="--", c="grey", label=key)
            b.legend()
    b.set_xlabel("epoch")
    b.set_ylabel(metric)
    b.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
