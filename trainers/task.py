"""What a task is, the `TASKS` registry, and recipes.

A task is a package under `trainers/` (or any installed package) registered by one line in the
`clipfeat.tasks` entry-point group of `setup.cfg`:

    clipfeat.tasks =
        vqa = clipfeat.trainers.vqa:TASK

Its `__init__.py` defines `TASK = Task(name=..., summary=..., package=__name__)` and stays
light (no torch), so `clipfeat train --help` lists every task without importing any trainer.
The package holds:

    train.py        Config (a TrainConfig subclass), METRIC, EXAMPLES, Experiment, optionally
                    prepare(cfg, resume) -> cfg and main(argv) (= trainer.train(TASK, argv))
    cli.py          EVAL: the `clipfeat eval NAME` click command (the official metric)
    recipes/*.json  {"name", "description", "source", "config"}: named full configs

`Experiment(cfg, store=, device=, resume=)` is the task's part of a run, read top to bottom in
its train.py: data and vocabularies, the model (`.model`), and

    steps_per_epoch: int
    extra: dict                       plain data saved in every checkpoint (vocabularies, ...)
    title: str                        the learning-curve plot's title
    start: dict | None                a checkpoint the model was initialised from (epoch 0 is
                                      then evaluated and logged), else None
    feature_sample() -> dict          {"grid" [N, cells, C], "mask" [N, cells] | None, "pooled"?}
                                      from the training split, to fit the model's feature norms
    train_batches(epoch) -> iterable  an order that depends only on (seed, epoch)
    train_step(batch) -> dict         {"loss": tensor, "samples": int, other floats to log}
    evaluate(epoch) -> dict           {METRIC: float, ...}, higher is better
    predict(run) -> dict              predictions of the loaded (best) model written into the
                                      run folder; returns what the run's summary adds
    predict(run, splits=None) -> dict optional `splits` argument: those splits' predictions
                                      instead, what `clipfeat predict TASK --run RUN --split S`
                                      (`trainer.predict`) asks; a task whose predict has no `splits`
                                      refuses that command in one line

Everything else (arguments, recipes, run folder, device, seeding, resume, optimizer,
schedule, the loop, the best checkpoint's reload, the summary) is `trainer.train`'s, and
rebuilding a finished run for more predictions is `trainer.predict`'s.
"""

from __future__ import annotations

import functools
import importlib
import json
from dataclasses import dataclass
from importlib.metadata import entry_points
from importlib.resources import files
from types import ModuleType
from typing import Any, Mapping

from clipfeat.features.errors import ClipfeatError

__all__ = ["Recipe", "TASKS", "Task", "get_task", "lazy_exports", "load_recipes"]

ENTRY_POINT_GROUP = "clipfeat.tasks"


@dataclass(frozen=True)
class Recipe:
    """A named config: what to set (`config`), and where the numbers come from (`source`)."""

    name: str
    description: str
    source: str  # paper / repository / file and lines it follows, or "clipfeat" for our own choices
    config: dict[str, Any]


def load_recipes(package: str) -> dict[str, Recipe]:
    """The recipes in `package`'s `recipes/` folder, by name."""
    out = {}
    folder = files(package) / "recipes"
    if not folder.is_dir():
        return out
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if not path.name.endswith(".json"):
            continue
        try:
            raw = json.loads(path.read_text())
            recipe = Recipe(name=raw["name"], description=raw["description"], source=raw["source"], config=raw["config"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ClipfeatError(f"recipe {path} is not {{name, description, source, config}} JSON ({e}); fix the file") from None
        if recipe.name != path.name[: -len(".json")]:
            raise ClipfeatError(f"recipe {path} is named {recipe.name!r}; name the file {recipe.name}.json")
        out[recipe.name] = recipe
    return out


@dataclass(frozen=True)
class Task:
    name: str  # `clipfeat train NAME`, `clipfeat eval NAME`
    summary: str  # one line for `clipfeat train --help`
    package: str  # the task's package (its train.py, cli.py and recipes/)
    default_recipe: str  # the recipe of the README's example

    def module(self) -> ModuleType:
        """The task's train.py (imports torch)."""
        return importlib.import_module(f"{self.package}.train")

    def config_class(self) -> type:
        return self.module().Config

    def examples(self) -> str:
        return getattr(self.module(), "EXAMPLES", "")

    def recipes(self) -> dict[str, Recipe]:
        return load_recipes(self.package)

    def eval_command(self):
        """The `clipfeat eval NAME` click command, or None (its cli.py imports no torch)."""
        try:
            cli = importlib.import_module(f"{self.package}.cli")
        except ModuleNotFoundError as e:
            if e.name != f"{self.package}.cli":
                raise
            return None
        return getattr(cli, "EVAL", None)


def lazy_exports(package: str, **modules: tuple[str, ...]):
    """A package's module-level `__getattr__` that imports `package.MODULE` on first use of one
    of its names: a task's `__init__` stays light (listing the tasks imports no torch and no
    metric dependency) while `from clipfeat.trainers.vqa import evaluate, main` still works."""

    def __getattr__(name: str):
        for module, names in modules.items():
            if name in names:
                return getattr(importlib.import_module(f"{package}.{module}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


@functools.lru_cache(maxsize=None)
def _registered() -> Mapping[str, Task]:
    tasks = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        task = ep.load()
        if not isinstance(task, Task) or task.name != ep.name:
            raise ClipfeatError(f"entry point {ep.name} = {ep.value} is not a Task named {ep.name!r}; fix setup.cfg")
        tasks[ep.name] = task
    return dict(sorted(tasks.items()))


class _Tasks(Mapping[str, Task]):
    """`TASKS[name]`: the registered tasks, read from the entry points on first use."""

    def __getitem__(self, name: str) -> Task:
        return _registered()[name]

    def __iter__(self):
        return iter(_registered())

    def __len__(self) -> int:
        return len(_registered())


TASKS: Mapping[str, Task] = _Tasks()


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ClipfeatError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]
