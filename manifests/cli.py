"""`clipfeat manifest`: scan a dataset root and save its manifest (JSON Lines, .gz ok)."""

from __future__ import annotations

import click

from . import DATASETS, scan


@click.command("manifest")
@click.option("--dataset", required=True, type=click.Choice(sorted(DATASETS)), help="Dataset layout to read.")
@click.option("--root", required=True, type=click.Path(), help="Dataset root folder.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Manifest file (.jsonl or .jsonl.gz).")
@click.option("--splits", default=None,
              help="Comma-separated splits: COCO folders (train2014,val2014); Flickr30k: Karpathy's (train,val,test).")
@click.option("--scans", default=None, help="R2R: comma-separated scan ids (default: every connectivity file).")
@click.option("--connectivity", default=None, type=click.Path(file_okay=False), help="R2R: graphs folder (default ROOT/connectivity).")
def manifest_cmd(dataset: str, root: str, out: str, splits: str | None, scans: str | None, connectivity: str | None) -> None:
    """Scan a dataset root into a manifest: sorted rows (key, path, split, fields) and their sha256.

    \b
    Examples:
      clipfeat manifest --dataset coco --root DATA/coco --out coco-val2014.jsonl.gz --splits val2014
      clipfeat manifest --dataset r2r --root DATA/matterport --out r2r.jsonl.gz      (one row per viewpoint)
      clipfeat manifest --dataset flickr30k --root DATA/flickr30k --out flickr30k-test.jsonl --splits test
      clipfeat extract --manifest coco-val2014.jsonl.gz --root DATA/coco --out …    (extract exactly these rows)
    """
    manifest, warnings = scan(dataset, root, splits=splits.split(",") if splits else None,
                              scans=scans.split(",") if scans else None, connectivity=connectivity)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    manifest.save(out)
    counts = ", ".join(f"{k} {v}" for k, v in manifest.splits().items())
    click.echo(f"{len(manifest)} items ({counts}) -> {out}  sha256 {manifest.sha256[:16]}")


COMMANDS = [manifest_cmd]
