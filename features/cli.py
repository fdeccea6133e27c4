"""Store commands: info, verify, ls, export, import, copy. Bodies parse and call the library."""

from __future__ import annotations

import json
import sys

import click

from .errors import ClipfeatError


@click.command("info")
@click.argument("store")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info_cmd(store: str, as_json: bool) -> None:
    """Schema, sizes, progress and failures of STORE (a path or URL).

    \b
    clipfeat info features/coco-RN50x4.zarr
    clipfeat info https://data.example.org/features/coco-RN50x4.zarr --json
    """
    from .info import format_info, store_info

    info = store_info(store)
    click.echo(json.dumps(info, indent=2) if as_json else format_info(info))


@click.command("verify")
@click.argument("store")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def verify_cmd(store: str, quiet: bool) -> None:
    """Recompute every checksum of STORE and check its structure.

    Exit 0 when it is sound; exit 1 naming the bad shards and rows otherwise.

    \b
    clipfeat verify features/coco-RN50x4.zarr
    clipfeat verify s3://team-bucket/features/coco-RN50x4.zarr
    """
    from .verify import verify_store

    rep = verify_store(store, progress=not quiet)
    if rep.ok:
        click.echo(f"ok: {rep.url}: {rep.shards_checked} shards verified")
        return
    for p in rep.problems:
        click.echo(f"BAD {p}", err=True)
    click.echo(f"{len(rep.problems)} problem(s) in shards {sorted(rep.bad_shards)} of {rep.url}", err=True)
    sys.exit(1)


@click.command("ls")
@click.argument("root")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def ls_cmd(root: str, as_json: bool) -> None:
    """List every store under ROOT (a folder or bucket prefix) with dataset, model, items, size, status.

    \b
    clipfeat ls features/
    clipfeat ls s3://team-bucket/features/ --json
    """
    from .info import format_catalog, list_stores

    rows = list_stores(root)
    click.echo(json.dumps(rows, indent=2) if as_json else format_catalog(rows))


@click.command("export")
@click.argument("store")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["h5", "h5-vln", "tsv"]), required=True, help="Output format.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def export_cmd(store: str, out: str, fmt: str, overwrite: bool) -> None:
    """Export STORE to OUT as flat HDF5, VLN HDF5 (one [36, D] dataset per viewpoint) or R2R TSV.

    \b
    clipfeat export features/coco-RN50x4.zarr coco-RN50x4.h5 --format h5
    clipfeat export features/r2r-ViT-B-16.zarr r2r-ViT-B-16.hdf5 --format h5-vln   (HAMT / DUET)
    clipfeat export features/r2r-ViT-B-16.zarr r2r-ViT-B-16.tsv --format tsv       (EnvDrop)
    """
    from .interchange import export_store

    n = export_store(store, out, fmt=fmt, overwrite=overwrite)
    click.echo(f"wrote {n} items to {out} ({fmt})")


@click.command("import")
@click.argument("src", type=click.Path(exists=True))
@click.option("--out", required=True, help="Store to create (a local *.zarr folder).")
@click.option("--format", "fmt", type=click.Choice(["h5", "h5-vln", "tsv", "npy-dir"]), default=None, help="Default: from SRC.")
@click.option("--dataset", default="imported", show_default=True, help="Dataset name to record.")
@click.option("--model", default="unknown", show_default=True, help="Encoder name to record.")
@click.option("--shard-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def import_cmd(src: str, out: str, fmt: str | None, dataset: str, model: str, shard_size: int, overwrite: bool) -> None:
    """Import features that other code bases produced (HDF5, TSV, a folder of .npy/.npz) into a store.

    \b
    clipfeat import CLIP-ViT-B-16-views.hdf5 --out features/r2r-hamt.zarr --format h5-vln --model ViT-B-16
    clipfeat import coco-feats/ --out features/coco-imported.zarr --format npy-dir --dataset coco
    """
    from .interchange import import_features

    meta = import_features(src, out, fmt=fmt, dataset=dataset, model=model, shard_size=shard_size, overwrite=overwrite)
    click.echo(f"imported {meta.dataset.num_items} items into {out} (store_id {meta.store_id}, {meta.layout.dtype})")


@click.command("copy")
@click.argument("src")
@click.argument("dst")
@click.option("--overwrite", is_flag=True, help="Replace DST if it exists.")
@click.option("--threads", type=click.IntRange(min=1), default=8, show_default=True)
def copy_cmd(src: str, dst: str, overwrite: bool, threads: int) -> None:
    """Copy store SRC to DST (paths or URLs, across filesystems and buckets), then verify DST.

    \b
    clipfeat copy features/coco-RN50x4.zarr s3://team-bucket/features/coco-RN50x4.zarr
    """
    from .transfer import copy_store

    rep = copy_store(src, dst, overwrite=overwrite, threads=threads)
    if not rep.ok:
        for p in rep.problems:
            click.echo(f"BAD {p}", err=True)
        raise ClipfeatError(f"copy to {dst} does not verify ({len(rep.problems)} problems)")
    click.echo(f"copied {src} -> {dst}: {rep.shards_checked} shards verified")


COMMANDS = [info_cmd, verify_cmd, ls_cmd, export_cmd, import_cmd, copy_cmd]
