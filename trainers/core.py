"""What every trainer shares: config parsing, seeding, run folders, checkpoints, the epoch loop.

A task module (`trainers/vqa`, `caption`, `nav`) defines a config dataclass (subclass of
`TrainConfig`), its data, its model, a `train_step(batch) -> {"loss": …}` and an
`evaluate(epoch) -> metrics`, and hands them to `fit()`. `fit` owns the loop:

    for epoch in remaining epochs:
        reseed(seed, epoch)                 # exact resume: an epoch depends only on (seed, epoch)
        for batch in train_batches(epoch):  # tqdm bar, JSONL record every `log_every` steps
            loss = train_step(batch); backward; clip; optimizer and scheduler step
        metrics = evaluate(epoch)           # held-out split, the task's official-style metric
        save ckpt_latest.pt (+ ckpt_best.pt when the metric improved); redraw curve.png

A run folder holds everything about a run:

    RUN/config.json        the full config (reload it with --resume RUN)
    RUN/metrics.jsonl      one JSON object per train log step and per evaluation
    RUN/ckpt_latest.pt     {model, optimizer, scheduler, config, step, epoch, best, extra}
    RUN/ckpt_best.pt       the same, at the best evaluation so far
    RUN/curve.png          training loss and the eval metric
    RUN/predictions_*.json predictions in the task's official results format

Checkpoints hold only tensors, numbers, strings, lists and dicts, so they load with
`torch.load(weights_only=True)`: opening a checkpoint from a colleague cannot run code.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import math
import os
import queue
import random
import signal
import threading
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import torch

from clipfeat.features.errors import ClipfeatError

__all__ = [
    "autocast",
    "autocast_dtype",
    "ConfigError",
    "TrainConfig",
    "opt",
    "parse_args",
    "apply_overrides",
    "config_help",
    "seed_everything",
    "pick_device",
    "RunDir",
    "MetricsLog",
    "save_checkpoint",
    "load_checkpoint",
    "make_optimizer",
    "make_scheduler",
    "Prefetcher",
    "plot_curves",
    "fit",
    "FitResult",
]

FAULT_ENV = "CLIPFEAT_FAULT_KILL_AFTER_EPOCH"  # testing: SIGKILL the trainer after this epoch's checkpoint


class ConfigError(ClipfeatError):
    """A bad config key or value, or a run folder that cannot be used (exit code 2)."""


def opt(default: Any, help: str) -> Any:
    """A config field with its documentation (shown by `clipfeat train TASK --help`)."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Fields every trainer has. Tasks subclass this and add their own."""

    features: str = opt("", "feature store (path or URL) written by `clipfeat extract`")
    data: str = opt("", "folder with the task's annotation files")
    out_dir: str = opt("", "run folder (default: runs/<task>-<time>)")
    epochs: int = opt(10, "passes over the training split")
    batch_size: int = opt(256, "samples per optimizer step")
    lr: float = opt(1e-3, "peak learning rate (AdamW)")
    weight_decay: float = opt(0.0, "AdamW weight decay on matrices (not on biases, norms, embeddings)")
    warmup_steps: int = opt(200, "linear warm-up steps, then cosine decay to lr_min_ratio * lr")
    lr_min_ratio: float = opt(0.05, "final learning rate as a fraction of lr")
    grad_clip: float = opt(0.25, "clip the global gradient norm to this (0 = off)")
    seed: int = opt(0, "seed for initialisation, data order and dropout")
    device: str = opt("auto", "auto | cpu | cuda | cuda:N")
    amp: bool = opt(True, "bfloat16 autocast on GPU, and on CPUs with bfloat16 instructions (AVX512-BF16, AMX)")
    log_every: int = opt(20, "steps between training records in metrics.jsonl")
    prefetch: int = opt(4, "batches read ahead in a background thread (0 = read in the loop)")
    progress: bool = opt(True, "tqdm progress bars")
    strict: bool = opt(False, "fail on samples whose features are missing instead of skipping them")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# -- config: --config FILE.json, --set key=value ------------------------------------------------


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parse_value(key: str, raw: Any, tp: Any) -> Any:
    """`raw` (a CLI string or a JSON value) converted to the field type `tp`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):  # Optional[X]
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null", "")):
            return None
        return _parse_value(key, raw, next(a for a in args if a is not type(None)))
    if origin in (tuple, list):
        items = raw if isinstance(raw, (list, tuple)) else [s for s in str(raw).split(",") if s.strip()]
        inner = args[0] if args else str
        return tuple(_parse_value(key, x.strip() if isinstance(x, str) else x, inner) for x in items)
    try:
        if tp is bool:
            if isinstance(raw, bool):
                return raw
            s = str(raw).lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if tp is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            return int(raw)
        if tp is float:
            return float(raw)
        if tp is str:
            return str(raw)
    except (TypeError, ValueError):
        pass
    else:
        return raw
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"config {key}={raw!r} is not a valid {name}; fix the value in --set or --config")


def apply_overrides(cfg, overrides: Mapping[str, Any]):
    """A copy of `cfg` with `overrides` applied; unknown keys fail with the closest names."""
    types_ = _field_types(type(cfg))
    changes = {}
    for key, raw in overrides.items():
        if key not in types_:
            close = difflib.get_close_matches(key, list(types_), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"unknown config key {key!r}{hint}; see --help for the keys")
        changes[key] = _parse_value(key, raw, types_[key])
    return dataclasses.replace(cfg, **changes)


def _parse_sets(items: Iterable[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def config_help(cls) -> str:
    """One line per config field: name, default, documentation."""
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        lines.append(f"  {f.name} = {json.dumps(default)}\n      {f.metadata.get('help', '')}")
    return "\n".join(lines)


@dataclass
class Args:
    config: Any  # the task's config dataclass, all overrides applied
    resume: Path | None  # run folder to continue, or None for a new run


def parse_args(argv: list[str] | None, cls, *, prog: str, description: str, examples: str = "") -> Args:
    """`clipfeat train TASK` arguments -> config. Precedence: defaults < resumed run's
    config.json < --config FILE < flags (--features, --data, --out) < --set key=value.
    `examples` (command lines) are printed by --help above the config keys."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(f"examples:\n{examples}\n\n" if examples else "")
        + "config keys (--set key=value, or a JSON object in --config):\n" + config_help(cls),
    )
    p.add_argument("--features", help="feature store path or URL")
    p.add_argument("--data", help="folder with the task's annotation files")
    p.add_argument("--out", help="run folder (default: runs/<task>-<time>)")
    p.add_argument("--config", help="JSON file with config keys")
    p.add_argument("--set", dest="sets", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override config keys (repeatable)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in folder RUN from its last checkpoint")
    p.add_argument("--strict", action="store_true", default=None,
                   help="fail on samples whose features are missing instead of skipping them")
    a = p.parse_args(argv)

    cfg = cls()
    resume = None
    if a.resume:
        resume = Path(a.resume)
        saved = resume / "config.json"
        if not saved.is_file():
            raise ConfigError(f"--resume {resume}: no config.json there; give the run folder a trainer wrote")
        cfg = apply_overrides(cfg, json.loads(saved.read_text()))
    if a.config:
        try:
            cfg = apply_overrides(cfg, json.loads(Path(a.config).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"--config {a.config}: cannot read a JSON object ({e})") from None
    flags = {"features": a.features, "data": a.data, "out_dir": a.out, "strict": a.strict}
    cfg = apply_overrides(cfg, {k: v for k, v in flags.items() if v is not None})
    cfg = apply_overrides(cfg, _parse_sets(a.sets))
    if resume is not None:
        cfg = dataclasses.replace(cfg, out_dir=str(resume))
    for need in ("features", "data"):
        if not getattr(cfg, need):
            raise ConfigError(f"--{need} is required (or --resume RUN)")
    return Args(cfg, resume)


# -- environment ------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA GPU is visible; use --set device=cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r} is not a torch device; use auto, cpu or cuda") from None


# -- run folder, log, checkpoints ---------------------------------------------------------------


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


# -- optimisation -----------------------------------------------------------------------------


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay only on weight matrices (dim >= 2, not embeddings), as is standard.

    The fused kernel (one pass over each parameter instead of ~8 elementwise ops) where the
    parameters' device has one: on 2 CPU cores it cuts BUTD-1024's optimizer step from 28 to
    ~10 ms and its whole training step by ~18 %. Same update rule; call after `model.to(device)`.
    """
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_matrix = p.dim() >= 2 and not isinstance(module, torch.nn.Embedding)
            (decay if is_matrix and name.endswith("weight") else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in decay + no_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused or None)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """Linear warm-up, then cosine decay to `lr_min_ratio`; a LambdaLR, so its state saves."""
    warm = max(0, min(cfg.warmup_steps, total_steps // 2))
    floor = cfg.lr_min_ratio

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total_steps - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# -- input pipeline -----------------------------------------------------------------------------


class Prefetcher:
    """Runs a batch iterator in a background thread, `depth` batches ahead of the consumer.

    Store reads spend their time in codecs and file reads that release the GIL, so they
    overlap with the model's forward and backward. Exceptions re-raise in the consumer.
    """

    _END = object()

    def __init__(self, batches: Iterable, depth: int = 4) -> None:
        self._it = iter(batches)
        self._depth = depth
        if depth <= 0:
            return
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clipfeat-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._it:
                while not self._stop.is_set():
                    try:
                        self._q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._q.put(self._END)
        except BaseException as e:  # handed to the consumer
            self._q.put(e)

    def __iter__(self) -> Iterator:
        if self._depth <= 0:
            yield from self._it
            return
        try:
            while True:
                item = self._q.get()
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()


# -- plots ------------------------------------------------------------------------------------


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


# -- the loop ---------------------------------------------------------------------------------


@dataclass
class FitResult:
    run_dir: Path
    best: float  # best value of the eval metric
    best_epoch: int
    last: dict  # metrics of the last evaluation
    epochs_run: int  # epochs trained by this call (0 when a finished run is resumed)
    samples_per_s: float  # training throughput of this call


def autocast_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """The autocast dtype of training and evaluation on `device`, or None for float32.

    GPUs: bfloat16 (float16 where bfloat16 is missing). CPUs with native bfloat16 instructions
    (AVX512-BF16, AMX): bfloat16, which runs the trainers' large matmuls 2-4x faster (BUTD's cell
    projection: 4x on a 2-core Zen 4); other CPUs would emulate it, slower than float32.
    """
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and _cpu_has_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device, enabled: bool = True):
    """The autocast region of training, evaluation and final predictions (one precision for all,
    so a run's predictions score exactly what its log says)."""
    dtype = autocast_dtype(device, enabled)
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


@functools.lru_cache(maxsize=None)  # asked at every training step; the answer never changes
def _cpu_has_bf16() -> bool:
    """torch's own checks (private, hence looked up defensively)."""
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(bool(c()) for c in checks if c is not None)


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
                          "lr": scheduler.get_last_lr()[0], "samples_per_s": round(rate, 1)}
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
        if os.environ.get(FAULT_ENV) == str(epoch):
            os.kill(os.getpid(), signal.SIGKILL)
    return FitResult(run.path, best, best_epoch, last, epochs_run, n_train / t_train if t_train else 0.0)
