"""`clipfeat train TASK`, `clipfeat eval TASK` and `clipfeat predict TASK`, one subcommand per task in
the `TASKS` registry.

`train` hands its arguments to `trainers.trainer.train(task, argv)`, which owns the flags and
the task's `--set key=value` config keys (listed by `clipfeat train TASK --help`); `eval` is
each task's own command (its `cli.py`); `predict` parses its flags and calls
`trainers.trainer.predict(task, ...)` (tasks whose trainer does not support it say so in one line).
Torch is imported only inside the command bodies.
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


@click.group("predict")
def predict() -> None:
    """Write a finished run's predictions for more splits, from its best checkpoint.

    \b
    clipfeat predict vqa --run runs/vqa --split test2015      # + the VQA evaluation server's file
    clipfeat predict vqa --run runs/vqa --split test-dev2015 --features features/coco-test2015-RN50x4.zarr
    """


def _predict_command(task: Task) -> click.Command:
    @click.command(task.name, short_help=task.summary, help=f"""{task.summary}: a finished run's predictions
        for --split, from its ckpt_best.pt, written into the run folder as `clipfeat train {task.name}` writes them.

        \b
        clipfeat predict {task.name} --run runs/{task.name} --split SPLIT
        clipfeat predict {task.name} --run runs/{task.name} --split SPLIT --features OTHER.zarr --data OTHER_DATA""")
    @click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False),
                  help="run folder written by `clipfeat train` (config.json, ckpt_best.pt)")
    @click.option("--split", "splits", required=True, multiple=True, help="split to predict (repeatable, or S1,S2)")
    @click.option("--features", help="feature store to read instead of the run's (e.g. one with the test images)")
    @click.option("--data", help="annotation folder to read instead of the run's")
    @click.option("--device", help="auto | cpu | cuda | cuda:N instead of the run's")
    def command(run_dir: str, splits: tuple[str, ...], features: str | None, data: str | None,
                device: str | None) -> None:
        from .trainer import predict as run

        run(task, run=run_dir, splits=[s for x in splits for s in x.split(",")], features=features, data=data,
            device=device)

    return command


for _task in TASKS.values():
    train.add_command(_train_command(_task))
    predict.add_command(_predict_command(_task))
    _eval = _task.eval_command()
    if _eval is not None:
        evaluate.add_command(_eval, _task.name)

COMMANDS = [train, evaluate, predict]
