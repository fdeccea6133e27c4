"""The epoch loop every task shares.

    for epoch in remaining epochs:
        reseed(seed, epoch)                 # exact resume: an epoch depends only on (seed, epoch)
        for batch in train_batches(epoch):  # tqdm bar, JSONL record every `log_every` steps
            loss = train_step(batch); backward; clip; optimizer and scheduler step
        metrics = evaluate(epoch)           # held-out split, the task's official-style metric
        save ckpt_latest.pt (+ ckpt_best.pt when the metric improved); redraw curve.png
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from .config import TrainConfig
from .device import autocast
from .plotting import plot_curves
from .prefetch import Prefetcher
from .rundir import MetricsLog, RunDir, save_checkpoint

__all__ = ["EPOCH_END_HOOKS", "FitResult", "fit"]

# Called as hook(epoch) after each epoch's checkpoints are on disk. Empty in production; the
# tests' seam (a test appends a hook that kills the process, to check that resume is exact).
EPOCH_END_HOOKS: list[Callable[[int], None]] = []


@dataclass
class FitResult:
    run_dir: Path
    best: float  # best value of the eval metric
    best_epoch: int
    last: dict  # metrics of the last evaluation
    epochs_run: int  # epochs trained by this call (0 when a finished run is resumed)
    samples_per_s: float  # training throughput of this call


def fit(
    *,
    run: RunDir,
    cfg: TrainConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    train_batches: Callable[[int], Iterable],
    steps_per_epoch: int,
    train_step: Callable[[Any], dict],
    evaluate: Callable[[int], dict],
    metric: str,
    device: torch.device,
    resume_from: dict | None = None,
    extra: dict | None = None,
    title: str = "",
) -> FitResult:
    """Train `cfg.epochs` epochs (or the rest of them, from checkpoint `resume_from`), evaluating after each.

    train_batches(epoch): the epoch's batches, an order that depends only on (seed, epoch).
    train_step(batch): forward + loss on `device`; returns {"loss": scalar tensor, "samples": int,
      and any other float to log}. fit does backward, clipping and the optimizer step.
    evaluate(epoch): {metric: float, ...}; higher is better.
    extra: plain data saved in every checkpoint (vocabularies…), so a checkpoint is self-describing.
    """
    from tqdm.auto import tqdm

    log = MetricsLog(run.metrics)
    epoch0, step, best, best_epoch, last = 0, 0, -math.inf, -1, {}
    if resume_from is not None:
        ck = resume_from
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        epoch0, step, best, best_epoch = ck["epoch"], ck["step"], ck["best"], ck["best_epoch"]
        last = ck.get("last", {})
        log.truncate_after(step, epoch0)
    run.write_json(run.config, cfg.to_dict())

    t_train, n_train, epochs_run = 0.0, 0, 0
    for epoch in range(epoch0 + 1, cfg.epochs + 1):
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout etc.: a function of (seed, epoch)
        model.train()
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{cfg.epochs}", unit="step",
                   disable=not cfg.progress, leave=False, dynamic_ncols=True)
        t0, seen, loss_sum, loss_n = time.perf_counter(), 0, 0.0, 0
        for batch in Prefetcher(train_batches(epoch), cfg.prefetch):
            with autocast(device, cfg.amp):
                out = train_step(batch)
            loss = out["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            lr = optimizer.param_groups[0]["lr"]  # the rate this step used (logged below)
            optimizer.step()
            scheduler.step()
            step += 1
            seen += int(out["samples"])
            loss_sum += float(loss.detach())
            loss_n += 1
            bar.update(1)
            if step % cfg.log_every == 0 or loss_n == steps_per_epoch:
                rate = seen / max(1e-9, time.perf_counter() - t0)
                record = {"kind": "train", "epoch": epoch, "step": step, "loss": loss_sum / loss_n,
                          "lr": lr, "samples_per_s": round(rate, 1)}
                record.update({k: float(v) for k, v in out.items() if k not in ("loss", "samples")})
                log.write(record)
                bar.set_postfix(loss=f"{loss_sum / loss_n:.4f}", rate=f"{rate:.0f}/s")
                loss_sum, loss_n = 0.0, 0
        bar.close()
        t_train += time.perf_counter() - t0
        n_train += seen
        epochs_run += 1

        model.eval()
        with torch.no_grad(), autocast(device, cfg.amp):
            last = evaluate(epoch)
        improved = last[metric] > best
        if improved:
            best, best_epoch = last[metric], epoch
        log.write({"kind": "eval", "epoch": epoch, "step": step, **last, "best": best})
        state = {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "config": cfg.to_dict(), "step": step, "epoch": epoch, "best": best, "best_epoch": best_epoch,
            "last": last, "extra": extra or {},
        }
        save_checkpoint(run.latest, state)
        if improved:
            save_checkpoint(run.best, state)
        plot_curves(log.read(), run.curve, metric=metric, title=title)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if isinstance(v, (int, float)))
        if cfg.progress:
            tqdm.write(f"epoch {epoch}: {shown} (best {best:.4g} @ {best_epoch})")
        for hook in EPOCH_END_HOOKS:
            hook(epoch)
    return FitResult(run.path, best, best_epoch, last, epochs_run, n_train / t_train if t_train else 0.0)
