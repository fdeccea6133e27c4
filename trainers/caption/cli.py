"""`clipfeat eval caption`: pycocoevalcap's scores of a results file (no torch imported)."""

from __future__ import annotations

import json

import click

__all__ = ["EVAL"]


@click.command("caption")
@click.option("--results", required=True, type=click.Path(exists=True, dir_okay=False), help="[{image_id, caption}] JSON")
@click.option("--annotations", required=True, type=click.Path(exists=True, dir_okay=False), help="captions_*.json (COCO format)")
@click.option("--tokenizer", type=click.Choice(["auto", "ptb", "simple"]), default="auto", show_default=True,
              help="PTB (needs java) or the built-in simple tokenizer")
@click.option("--spice", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="SPICE needs java and the Stanford CoreNLP jars")
@click.option("--json", "as_json", is_flag=True, help="print the scores as JSON, named as pycocoevalcap names them")
def EVAL(results: str, annotations: str, tokenizer: str, spice: str, as_json: bool) -> None:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr (CIDEr-D), SPICE via pycocoevalcap, over the results' images.

    \b
    clipfeat eval caption --results runs/xe/predictions_test.json \\
                          --annotations DATA/coco/annotations/captions_val2014.json
    (Karpathy's val and test images are in val2014, so captions_val2014.json scores both.)
    """
    from .metric import evaluate, format_scores

    try:
        scores = evaluate(results, annotations, tokenizer=tokenizer, spice=spice)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    click.echo(json.dumps(scores.to_json()) if as_json else format_scores(scores))
