"""`train(task, argv)`: the one training skeleton every task runs through.

    args      = parse_args(argv, task)              # recipe < resumed config < --config < flags < --set
    cfg       = task's prepare(cfg, resume)         # task-specific checks and derived values
    run       = RunDir.create(...)                  # refuses to overwrite a run, or resumes one
    store     = open_store(features, partial)       # train on what is extracted so far
    exp       = task's Experiment(cfg, store, ...)  # data, vocabularies, the model
    feature norms fitted on a training sample       (new runs only: a resumed model has them)
    optimizer + schedule; epoch 0 evaluated when the model starts from a checkpoint
    fit(...)                                        # the loop, checkpoints, log, curve
    best checkpoint reloaded -> exp.predict(run)    # official results files, in the logged precision
    one JSON summary line on stdout

`predict(task, run=RUN, splits=S)` (`clipfeat predict TASK --run RUN --split S`) rebuilds a finished
run's experiment from its config.json (store and data overridable), loads ckpt_best.pt and calls
`exp.predict(run, splits=S)`: the same files as at the end of training, for the splits asked.

What differs between tasks lives in the task's own `train.py` (see `task.py` for the contract).
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Sequence

import numpy as np
import torch

from clipfeat.features import open_store

from .config import ConfigError, apply_overrides, parse_args
from .device import autocast, pick_device, seed_everything
from .loop import FitResult, fit
from .optim import make_optimizer, make_scheduler
from .rundir import MetricsLog, RunDir, load_checkpoint
from .task import Task, get_task

__all__ = ["feature_rows", "list_recipes", "predict", "train"]


def list_recipes(task: Task) -> str:
    """`clipfeat train TASK --list-recipes`: name, description and source of each recipe."""
    lines = []
    for name, r in task.recipes().items():
        mark = " (default)" if name == task.default_recipe else ""
        lines.append(f"{name}{mark}\n    {r.description}\n    source: {r.source}")
    return "\n".join(lines)


def feature_rows(n: int, seed: int, limit: int = 1024) -> np.ndarray:
    """Up to `limit` sample positions of a training split of `n`, sorted (one read pass),
    for fitting the feature normalisation."""
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def train(task: Task | str, argv: list[str] | None = None) -> FitResult | None:
    """Run `clipfeat train TASK ARGV...`; returns the fit's result (None for --list-recipes)."""
    task = get_task(task) if isinstance(task, str) else task
    impl = task.module()
    args = parse_args(argv, task)
    if args.list_recipes:
        print(list_recipes(task))
        return None
    cfg = args.config
    if hasattr(impl, "prepare"):
        cfg = impl.prepare(cfg, resume=args.resume)
    run = RunDir.create(cfg.out_dir, task.name, resume=args.resume is not None)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    resume_from = load_checkpoint(run.latest) if args.resume else None

    store = open_store(cfg.features, allow_partial=True)  # partial: train on what is extracted so far
    exp = impl.Experiment(cfg, store=store, device=device, resume=resume_from)
    print(f"{task.name} ({cfg.recipe or 'no recipe'}): run folder {run.path}")
    model = exp.model
    if resume_from is None and exp.start is None:  # a resumed or initialised model has them in its weights
        sample = exp.feature_sample()
        if hasattr(model.v_norm, "fit"):  # not nn.Identity (a recipe feeding raw features, as its source)
            model.v_norm.fit(sample["grid"], sample["mask"])
        if getattr(model, "p_norm", None) is not None:
            model.p_norm.fit(sample["pooled"], None)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, total_steps=cfg.epochs * exp.steps_per_epoch, steps_per_epoch=exp.steps_per_epoch,
                               samples_per_epoch=getattr(exp, "train_samples", exp.steps_per_epoch * cfg.batch_size))

    start_score = None
    if exp.start is not None and resume_from is None:  # where training starts from: epoch 0 of the log and plot
        model.eval()
        with torch.no_grad(), autocast(device, cfg.amp):
            first = exp.evaluate(0)
        MetricsLog(run.metrics).write({"kind": "eval", "epoch": 0, "step": 0, **first})
        start_score = first[impl.METRIC]
        print(f"start: {impl.METRIC} {start_score:.4g} on the eval split")
    elif resume_from is not None:
        start_score = resume_from["extra"].get("start_score")

    result = fit(
        run=run, cfg=cfg, model=model, optimizer=optimizer, scheduler=scheduler,
        train_batches=exp.train_batches, steps_per_epoch=exp.steps_per_epoch, train_step=exp.train_step,
        evaluate=exp.evaluate, metric=impl.METRIC, device=device, resume_from=resume_from,
        extra={**exp.extra, "start_score": start_score}, title=exp.title,
    )

    # -- predictions of the best checkpoint, in the precision the logged scores were computed in
    model.load_state_dict(load_checkpoint(run.best if run.best.exists() else run.latest)["model"])
    model.eval()
    with torch.no_grad(), autocast(device, cfg.amp):
        more = exp.predict(run)
    summary = {"run": str(run.path), "task": task.name, "recipe": cfg.recipe, f"best_{impl.METRIC}": result.best,
               "best_epoch": result.best_epoch, f"start_{impl.METRIC}": start_score,
               "train_samples_per_s": round(result.samples_per_s, 1), **more}
    print(json.dumps(summary))
    return result


def predict(task: Task | str, *, run: str | os.PathLike, splits: Sequence[str], features: str | None = None,
            data: str | None = None, device: str | None = None) -> dict:
    """`clipfeat predict TASK --run RUN --split S`: the predictions of a finished run's best checkpoint
    (its last one if it never evaluated) for `splits`, written into the run folder as training writes
    them. `features`, `data`, `device` replace the run's own (e.g. a store that also holds the test
    images). Tasks whose `Experiment.predict` takes no `splits` refuse with a one-line ConfigError."""
    task = get_task(task) if isinstance(task, str) else task
    impl = task.module()
    if "splits" not in inspect.signature(impl.Experiment.predict).parameters:
        raise ConfigError(f"clipfeat predict {task.name}: not supported; {task.name} writes its predictions at the end"
                          f" of `clipfeat train {task.name}` (set predict_splits=...)")
    splits = list(dict.fromkeys(s.strip() for s in splits if s.strip()))
    if not splits:
        raise ConfigError("--split is required: the split(s) to predict")
    rd = RunDir(run)
    if not rd.config.is_file():
        raise ConfigError(f"--run {rd.path}: no config.json there; give a run folder"
                          f" `clipfeat train {task.name}` wrote")
    ckpt_path = rd.best if rd.best.exists() else rd.latest
    if not ckpt_path.exists():
        raise ConfigError(f"--run {rd.path}: no ckpt_best.pt or ckpt_latest.pt (the run never finished an epoch)")
    try:
        saved = json.loads(rd.config.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"--run {rd.path}: config.json is not JSON ({e})") from None
    cfg = apply_overrides(task.config_class()(), saved)
    flags = {"features": features, "data": data, "device": device, "out_dir": str(rd.path)}
    cfg = apply_overrides(cfg, {k: v for k, v in flags.items() if v is not None})
    if hasattr(impl, "prepare"):
        cfg = impl.prepare(cfg, resume=rd.path)
    ckpt = load_checkpoint(ckpt_path)
    torch_device = pick_device(cfg.device)
    seed_everything(cfg.seed)

    store = open_store(cfg.features, allow_partial=True)
    exp = impl.Experiment(cfg, store=store, device=torch_device, resume=ckpt)  # the checkpoint's vocabularies
    exp.model.load_state_dict(ckpt["model"])
    exp.model.eval()
    print(f"{task.name}: {ckpt_path.name} of {rd.path} (epoch {ckpt.get('epoch')})")
    with torch.no_grad(), autocast(torch_device, cfg.amp):
        more = exp.predict(rd, splits=tuple(splits))
    summary = {"run": str(rd.path), "task": task.name, "checkpoint": ckpt_path.name, "splits": splits, **more}
    print(json.dumps(summary))
    return summary
