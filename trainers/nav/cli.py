"""`clipfeat eval nav`: the R2R metrics of a results file (no torch imported)."""

from __future__ import annotations

import json

import click

__all__ = ["EVAL"]


@click.command("nav")
@click.option("--results", required=True, type=click.Path(exists=True, dir_okay=False),
              help="[{instr_id, trajectory: [[viewpoint, heading, elevation], ...]}] JSON")
@click.option("--split-file", required=True, type=click.Path(exists=True, dir_okay=False), help="R2R_<split>.json")
@click.option("--connectivity", required=True, type=click.Path(exists=True, file_okay=False),
              help="folder of {scan}_connectivity.json")
@click.option("--json", "as_json", is_flag=True, help="print length, nav_error, oracle_error, success_rate, ... as JSON")
def EVAL(results: str, split_file: str, connectivity: str, as_json: bool) -> None:
    """R2R metrics as Matterport3DSimulator's tasks/R2R/eval.py defines them (SR: error < 3 m).

    \b
    clipfeat eval nav --results runs/nav/predictions_val_unseen.json \\
                      --split-file DATA/r2r/R2R_val_unseen.json --connectivity DATA/r2r/connectivity
    """
    from .metric import evaluate, format_scores

    try:
        scores = evaluate(results, split_file, connectivity)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    click.echo(json.dumps(scores.to_json()) if as_json else format_scores(scores))
