"""`clipfeat eval vqa`: the official VQA accuracy of a results file (no torch imported)."""

from __future__ import annotations

import json

import click

__all__ = ["EVAL"]


@click.command("vqa")
@click.option("--results", required=True, type=click.Path(exists=True, dir_okay=False), help="[{question_id, answer}] JSON")
@click.option("--annotations", required=True, type=click.Path(exists=True, dir_okay=False), help="v2_mscoco_*_annotations.json")
@click.option("--questions", type=click.Path(exists=True, dir_okay=False), help="v2_OpenEnded_mscoco_*_questions.json (checks ids)")
@click.option("--json", "as_json", is_flag=True, help="print {overall, perAnswerType, perQuestionType} as JSON")
def EVAL(results: str, annotations: str, questions: str | None, as_json: bool) -> None:
    """VQA accuracy as the official vqaEval.py computes it (percent, two decimals).

    \b
    clipfeat eval vqa --results runs/vqa/predictions_val2014.json \\
                      --annotations DATA/vqa/v2_mscoco_val2014_annotations.json
    clipfeat eval vqa --results runs/vqa/predictions_val2014.json --json \\
                      --annotations DATA/vqa/v2_mscoco_val2014_annotations.json \\
                      --questions DATA/vqa/v2_OpenEnded_mscoco_val2014_questions.json
    """
    from .metric import evaluate, format_scores

    try:
        scores = evaluate(results, annotations, questions)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    click.echo(json.dumps(scores.to_json()) if as_json else format_scores(scores))
