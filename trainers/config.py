"""Training configs: the dataclass every task's config extends, and how values reach it.

Precedence, lowest first (nanoGPT-style: one dataclass of defaults, overrides that fail on
unknown keys):

    the config dataclass's defaults
    < the recipe (`--recipe NAME`, JSON in the task's `recipes/` folder; the task's default recipe)
    < a resumed run's config.json (`--resume RUN`, which also fixes the recipe)
    < --config FILE.json < the flags --features / --data / --out / --strict < --set key=value

A field may itself be a dataclass (a model's own section, e.g. VQA's `butd` and `mcan`):
its keys are written `butd.hidden=1024` on the command line and `{"butd": {"hidden": 1024}}`
in JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from clipfeat.features.errors import ClipfeatError

if TYPE_CHECKING:
    from .task import Task

__all__ = ["Args", "ConfigError", "TrainConfig", "apply_overrides", "config_help", "config_keys", "opt", "parse_args"]


class ConfigError(ClipfeatError):
    """A bad config key or value, or a run folder that cannot be used (exit code 2)."""


def opt(default: Any, help: str) -> Any:
    """A config field with its documentation (shown by `clipfeat train TASK --help`)."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    if dataclasses.is_dataclass(default):  # a nested section: each config gets its own copy
        return field(default_factory=lambda: dataclasses.replace(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Fields every trainer has. Tasks subclass this and add their own."""

    features: str = opt("", "feature store (path or URL) written by `clipfeat extract`")
    data: str = opt("", "the task's annotation files (a folder, or the file itself where the task says so)")
    out_dir: str = opt("", "run folder (default: runs/<task>-<time>)")
    recipe: str = opt("", "the recipe this run started from (set by --recipe; recorded in config.json)")
    epochs: int = opt(10, "passes over the training split")
    batch_size: int = opt(256, "samples per optimizer step")
    lr: float = opt(1e-3, "peak learning rate")
    optimizer: str = opt("adamw", "adamw (decay on weight matrices only) | adam | adamax")
    betas: tuple[float, ...] = opt((0.9, 0.999), "the optimizer's (beta1, beta2)")
    eps: float = opt(1e-8, "the optimizer's epsilon")
    weight_decay: float = opt(0.0, "AdamW weight decay on matrices (not on biases, norms, embeddings)")
    schedule: str = opt("cosine", "cosine: linear warm-up, cosine decay | constant | mcan: warm-up 1/4, 2/4, 3/4 of lr over "
                                  "the first 3 epochs, then x lr_decay_rate at each of lr_decay_epochs (mcan-vqa)")
    warmup_steps: int = opt(200, "cosine: linear warm-up steps, then cosine decay to lr_min_ratio * lr")
    lr_min_ratio: float = opt(0.05, "cosine: final learning rate as a fraction of lr")
    lr_decay_epochs: tuple[int, ...] = opt((), "mcan: 0-indexed epochs at whose start lr is multiplied by lr_decay_rate")
    lr_decay_rate: float = opt(0.2, "mcan: the step decay factor")
    drop_last: bool = opt(False, "drop each epoch's last, incomplete training batch")
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


# Where a run is and how it is watched, not what it computes: recipes leave these to the user.
RUN_KEYS = ("features", "data", "out_dir", "recipe", "device", "log_every", "prefetch", "progress", "strict")


# -- values -------------------------------------------------------------------------------------


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
            if isinstance(raw, float) and not raw.is_integer() or isinstance(raw, bool):
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


def config_keys(cls, prefix: str = "") -> list[str]:
    """Every settable key of config class `cls`, nested sections as `section.key`."""
    keys = []
    for name, tp in typing.get_type_hints(cls).items():
        keys += config_keys(tp, f"{prefix}{name}.") if dataclasses.is_dataclass(tp) else [prefix + name]
    return keys


def _unknown(key: str, cfg, prefix: str) -> ConfigError:
    known = config_keys(type(cfg), prefix)
    close = difflib.get_close_matches(prefix + key, known, n=3)
    close += [k for k in known if k.endswith("." + key) and k not in close]  # `hidden` -> `butd.hidden`
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ConfigError(f"unknown config key {prefix + key!r}{hint}; see --help for the keys")


def apply_overrides(cfg, overrides: Mapping[str, Any], *, _prefix: str = ""):
    """A copy of `cfg` with `overrides` applied: `{key: value}`, `{"section.key": value}` or
    `{"section": {key: value}}`. Unknown keys fail with the closest names."""
    types_ = typing.get_type_hints(type(cfg))
    nested: dict[str, dict] = {}
    changes = {}
    for key, raw in overrides.items():
        head, dot, rest = key.partition(".")
        if head not in types_:
            raise _unknown(key, cfg, _prefix)
        tp = types_[head]
        if dataclasses.is_dataclass(tp):
            if dot:
                nested.setdefault(head, {})[rest] = raw
            elif isinstance(raw, Mapping):
                nested.setdefault(head, {}).update(raw)
            else:
                raise ConfigError(f"config {_prefix}{key} is a section; set its keys, e.g. --set {_prefix}{key}."
                                  f"{config_keys(tp)[0]}=...")
        elif dot:
            raise _unknown(key, cfg, _prefix)
        else:
            changes[head] = _parse_value(_prefix + key, raw, tp)
    for head, sub in nested.items():
        changes[head] = apply_overrides(getattr(cfg, head), sub, _prefix=f"{_prefix}{head}.")
    return dataclasses.replace(cfg, **changes)


def _parse_sets(items: Iterable[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def config_help(cls, prefix: str = "") -> str:
    """One line per config key: name, default, documentation (sections expanded)."""
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            lines.append(f"  {prefix}{f.name}.*  {f.metadata.get('help', '')}")
            lines.append(config_help(type(default), f"{prefix}{f.name}."))
        else:
            lines.append(f"  {prefix}{f.name} = {json.dumps(default)}\n      {f.metadata.get('help', '')}")
    return "\n".join(lines)


# -- the command line -----------------------------------------------------------------------------


@dataclass
class Args:
    config: Any  # the task's config dataclass, all overrides applied
    resume: Path | None  # run folder to continue, or None for a new run
    list_recipes: bool = False  # `--list-recipes`: print them, train nothing


def parse_args(argv: list[str] | None, task: "Task") -> Args:
    """`clipfeat train TASK` arguments -> the task's config (precedence in the module docstring)."""
    cls = task.config_class()
    recipes = task.recipes()
    p = argparse.ArgumentParser(
        prog=f"clipfeat train {task.name}",
        description=task.summary,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(f"examples:\n{task.examples()}\n\n" if task.examples() else "")
        + f"recipes (--recipe NAME; default {task.default_recipe}): {', '.join(sorted(recipes))}\n\n"
        + "config keys (--set key=value, or a JSON object in --config):\n" + config_help(cls),
    )
    p.add_argument("--features", help="feature store path or URL")
    p.add_argument("--data", help="the task's annotation files")
    p.add_argument("--out", help="run folder (default: runs/<task>-<time>)")
    p.add_argument("--recipe", help=f"named config to start from (default {task.default_recipe}; see --list-recipes)")
    p.add_argument("--list-recipes", action="store_true", help="list the recipes with their sources and exit")
    p.add_argument("--config", help="JSON file with config keys")
    p.add_argument("--set", dest="sets", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override config keys (repeatable)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in folder RUN from its last checkpoint")
    p.add_argument("--strict", action="store_true", default=None,
                   help="fail on samples whose features are missing instead of skipping them")
    a = p.parse_args(argv)
    if a.list_recipes:
        return Args(cls(), None, list_recipes=True)

    cfg = cls()
    resume = None
    if a.resume:
        if a.recipe:
            raise ConfigError("--resume continues a run with its own recipe; drop --recipe (change keys with --set)")
        resume = Path(a.resume)
        saved = resume / "config.json"
        if not saved.is_file():
            raise ConfigError(f"--resume {resume}: no config.json there; give the run folder a trainer wrote")
        cfg = apply_overrides(cfg, json.loads(saved.read_text()))
    else:
        name = a.recipe or task.default_recipe
        if name not in recipes:
            raise ConfigError(f"--recipe {name}: no such {task.name} recipe; choose one of {', '.join(sorted(recipes))}")
        cfg = apply_overrides(cfg, {**recipes[name].config, "recipe": name})
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
