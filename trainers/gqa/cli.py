"""`clipfeat eval gqa`: GQA's accuracy of a submission file (no torch imported)."""

from __future__ import annotations

import json

import click

__all__ = ["EVAL"]


@click.command("gqa")
@click.option("--results", required=True, type=click.Path(exists=True, dir_okay=False),
              help='[{"questionId", "prediction"}] JSON (GQA\'s submission format)')
@click.option("--questions", required=True, type=click.Path(exists=True, dir_okay=False),
              help="{split}_balanced_questions.json with the gold answers")
@click.option("--json", "as_json", is_flag=True, help='print {"accuracy", "binary", "open"} (percent) as JSON')
def EVAL(results: str, questions: str, as_json: bool) -> None:
    """GQA accuracy as the official eval.py computes it: exact match, balanced questions, binary / open.

    \b
    clipfeat eval gqa --results runs/gqa/predictions_testdev.json \\
                      --questions DATA/gqa/testdev_balanced_questions.json
    """
    from .metric import evaluate, format_scores

    try:
        scores = evaluate(results, questions)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    click.echo(json.dumps(scores.to_json()) if as_json else format_scores(scores))
