"""`clipfeat train TASK` and `clipfeat eval TASK`, one subcommand per task in the `TASKS` registry.

`train` hands its arguments to `trainers.trainer.train(task, argv)`, which owns the flags and
the task's `--set key=value` config keys (listed by `clipfeat train TASK --help`); `eval` is
each task's own command (its `cli.py`). Torch is imported only inside the command bodies.
"""

from __future__ import annotations

import click

from .task import TASKS, Task

__all__ = ["COMMANDS"]

_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@click.group("train")
def train() -> None:
    """Train a task model on a feature store (`clipfeat train vqa --help` for its options).

    \b
    clipfeat train vqa --features features/coco-RN50x4.zarr --data DATA/vqa --out runs/vqa
    clipfeat train vqa --list-recipes
    clipfeat train caption --features features/coco-RN50x4.zarr --data DATA/coco --out runs/xe
    clipfeat train nav --features features/r2r-RN50x4.zarr --data DATA/r2r --out runs/nav
    clipfeat train gqa --features features/vg-RN50x4.zarr --data DATA/gqa --out runs/gqa
    """


@click.group("eval")
def evaluate() -> None:
    """Score predictions with a task's official metric.

    \b
    clipfeat eval vqa --results runs/vqa/predictions_val2014.json \\
                      --annotations DATA/vqa/v2_mscoco_val2014_annotations.json
    clipfeat eval caption --results runs/xe/predictions_test.json \\
                          --annotations DATA/coco/annotations/captions_val2014.json
    clipfeat eval nav --results runs/nav/predictions_val_unseen.json \\
                      --split-file DATA/r2r/R2R_val_unseen.json --connectivity DATA/r2r/connectivity
    clipfeat eval gqa --results runs/gqa/predictions_testdev.json --questions DATA/gqa/testdev_balanced_questions.json
    """


def _train_command(task: Task) -> click.Command:
    @click.command(task.name, context_settings=_PASS_THROUGH, add_help_option=False,
                   help=f"{task.summary} (--features STORE --data DATA [--recipe NAME] [--set k=v ...]).")
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        from .trainer import train as run

        run(task, list(args))

    return command


for _task in TASKS.values():
    train.add_command(_train_command(_task))
    _eval = _task.eval_command()
    if _eval is not None:
        evaluate.add_command(_eval, _task.name)

COMMANDS = [train, evaluate]
