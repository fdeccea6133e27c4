"""`clipfeat train TASK` and `clipfeat eval TASK`.

`train` hands its arguments to the task's `main(argv)` (the trainer owns its flags and its
`--set key=value` config keys, listed by `clipfeat train TASK --help`); `eval` parses and calls
the task's metric. Torch is imported only inside the command bodies.
"""

from __future__ import annotations

import json

import click

__all__ = ["COMMANDS"]

_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@click.group("train")
def train() -> None:
    """Train a task model on a feature store (`clipfeat train vqa --help` for its options).

    \b
    clipfeat train vqa --features features/coco-RN50x4.zarr --data DATA/vqa --out runs/vqa
    clipfeat train caption --features features/coco-RN50x4.zarr --data DATA/coco --out runs/xe
    clipfeat train nav --features features/r2r-RN50x4.zarr --data DATA/r2r --out runs/nav
    """


@train.command("vqa", context_settings=_PASS_THROUGH, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train_vqa(args: tuple[str, ...]) -> None:
    """VQA v2: BUTD or MCAN on grid features (--features STORE --data DIR [--set k=v ...])."""
    from clipfeat.trainers.vqa.train import main

    main(list(args))


@train.command("caption", context_settings=_PASS_THROUGH, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train_caption(args: tuple[str, ...]) -> None:
    """COCO captions: Transformer, XE then SCST (--features STORE --data DIR [--set k=v ...])."""
    from clipfeat.trainers.caption.train import main

    main(list(args))


@train.command("nav", context_settings=_PASS_THROUGH, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train_nav(args: tuple[str, ...]) -> None:
    """R2R: EnvDrop-style follower on 36-view panoramas (--features STORE --data DIR [--set k=v ...])."""
    from clipfeat.trainers.nav.train import main

    main(list(args))


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
    """


@evaluate.command("vqa")
@click.option("--results", required=True, type=click.Path(exists=True, dir_okay=False), help="[{question_id, answer}] JSON")
@click.option("--annotations", required=True, type=click.Path(exists=True, dir_okay=False), help="v2_mscoco_*_annotations.json")
@click.option("--questions", type=click.Path(exists=True, dir_okay=False), help="v2_OpenEnded_mscoco_*_questions.json (checks ids)")
@click.option("--json", "as_json", is_flag=True, help="print {overall, perAnswerType, perQuestionType} as JSON")
def eval_vqa(results: str, annotations: str, questions: str | None, as_json: bool) -> None:
    """VQA accuracy as the official vqaEval.py computes it (percent, two decimals).

    \b
    clipfeat eval vqa --results runs/vqa/predictions_val2014.json \\
                      --annotations DATA/vqa/v2_mscoco_val2014_annotations.json
    clipfeat eval vqa --results runs/vqa/predictions_val2014.json --json \\
                      --annotations DATA/vqa/v2_mscoco_val2014_annotations.json \\
                      --questions DATA/vqa/v2_OpenEnded_mscoco_val2014_questions.json
    """
    from clipfeat.trainers.vqa.metric import evaluate as vqa_evaluate, format_scores

    try:
        scores = vqa_evaluate(results, annotations, questions)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    click.echo(json.dumps(scores.to_json()) if as_json else format_scores(scores))


@evaluate.command("caption")
@click.option("--results", required=True, type=click.Path(exists=True, dir_okay=False), help="[{image_id, caption}] JSON")
@click.option("--annotations", required=True, type=click.Path(exists=True, dir_okay=False), help="captions_*.json (COCO format)")
@click.option("--tokenizer", type=click.Choice(["auto", "ptb", "simple"]), default="auto", show_default=True,
              help="PTB (needs java) or the built-in simple tokenizer")
@click.option("--spice", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="SPICE needs java and the Stanford CoreNLP jars")
@click.option("--json", "as_json", is_flag=True, help="print the scores as JSON, named as pycocoevalcap names them")
def eval_caption(results: str, annotations: str, tokenizer: str, spice: str, as_json: bool) -> None:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr (CIDEr-D), SPICE via pycocoevalcap, over the results' images.

    \b
    clipfeat eval caption --results runs/xe/predictions_test.json \\
                          --annotations DATA/coco/annotations/captions_val2014.json
    (Karpathy's val and test images are in val2014, so captions_val2014.json scores both.)
    """
    from clipfeat.trainers.caption.metric import evaluate as caption_evaluate, format_scores

    try:
        scores = caption_evaluate(results, annotations, tokenizer=tokenizer, spice=spice)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    click.echo(json.dumps(scores.to_json()) if as_json else format_scores(scores))


@evaluate.command("nav")
@click.option("--results", required=True, type=click.Path(exists=True, dir_okay=False),
              help="[{instr_id, trajectory: [[viewpoint, heading, elevation], ...]}] JSON")
@click.option("--split-file", required=True, type=click.Path(exists=True, dir_okay=False), help="R2R_<split>.json")
@click.option("--connectivity", required=True, type=click.Path(exists=True, file_okay=False),
              help="folder of {scan}_connectivity.json")
@click.option("--json", "as_json", is_flag=True, help="print length, nav_error, oracle_error, success_rate, ... as JSON")
def eval_nav(results: str, split_file: str, connectivity: str, as_json: bool) -> None:
    """R2R metrics as Matterport3DSimulator's tasks/R2R/eval.py defines them (SR: error < 3 m).

    \b
    clipfeat eval nav --results runs/nav/predictions_val_unseen.json \\
                      --split-file DATA/r2r/R2R_val_unseen.json --connectivity DATA/r2r/connectivity
    """
    from clipfeat.trainers.nav.metric import evaluate as nav_evaluate, format_scores

    try:
        scores = nav_evaluate(results, split_file, connectivity)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    click.echo(json.dumps(scores.to_json()) if as_json else format_scores(scores))


COMMANDS = [train, evaluate]
