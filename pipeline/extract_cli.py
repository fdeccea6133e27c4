"""`clipfeat extract`: parse the options, build an ExtractConfig, call `run_extract`."""

from __future__ import annotations

import sys

import click

from clipfeat.manifests import DATASETS

from .presets import PRESETS


def _list_presets(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    for p in PRESETS.values():
        click.echo(f"{p.name}  ({p.model}{' ' + p.pretrained if p.pretrained else ''})\n  {p.description}\n  source: {p.source}")
    ctx.exit(0)


@click.command("extract")
@click.option("--dataset", type=click.Choice(sorted(DATASETS)),
              help="Dataset layout under --root (or use --manifest). "
                   + "; ".join(f"{a.name}: {a.description}" for a in DATASETS.values()) + ".")
@click.option("--root", type=click.Path(file_okay=False), help="Dataset root folder.")
@click.option("--manifest", type=click.Path(dir_okay=False), help="A saved manifest (clipfeat manifest); paths relative to --root.")
@click.option("--splits", help="COCO folders to extract, comma-separated (e.g. val2014).")
@click.option("--scans", help="r2r: scans to extract, comma-separated (default: every scan with a connectivity graph).")
@click.option("--connectivity", type=click.Path(file_okay=False),
              help="r2r: folder of {scan}_connectivity.json (default ROOT/connectivity).")
@click.option("--out", required=True, help="Store to create or resume: a folder or fsspec URL ending in .zarr.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), help="A named preprocessing that reproduces a source's features, e.g. clip-vil-vqa "
                                "(CLIP-ViL's VQA grids; sets --model/--pretrained unless given). See --list-presets.")
@click.option("--list-presets", is_flag=True, is_eager=True, expose_value=False, callback=_list_presets,
              help="List the presets with their sources and exit.")
@click.option("--model", help="open_clip model name, e.g. RN50x4, ViT-B-32 (default: the preset's, else RN50).")
@click.option("--pretrained", help="open_clip pretrained tag, e.g. openai (downloads the weights).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Local weights file (its sha256 is recorded).")
@click.option("--model-config", type=click.Path(dir_okay=False), help="open_clip model config JSON; registers the file's stem as a model name.")
@click.option("--image-size", type=int, help="fixed mode: square input side other than the model's own.")
@click.option("--preprocess", type=click.Choice(["fixed", "aspect"]), default="fixed", show_default=True,
              help="fixed: open_clip's resize + centre crop; aspect: keep the aspect ratio (variable grids, ResNets).")
@click.option("--shorter-side", type=int, default=600, show_default=True, help="aspect mode: shorter side in pixels.")
@click.option("--max-side", type=int, default=1000, show_default=True, help="aspect mode: cap on the longer side.")
@click.option("--grid/--no-grid", default=None,
              help="Store the grid (spatial map) next to the pooled embedding. Default: yes, except for r2r (36 views per item).")
@click.option("--shard-size", type=int,
              help="Items per shard (one Zarr shard, one unit of work). Default 256, fewer for large items so a shard stays under 512 MiB.")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Images per forward pass (r2r: views, whole viewpoints).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--workers", type=int, help="CPU: worker actors (default 1). GPU: at most this many (default one per GPU).")
@click.option("--threads", type=int, help="Threads per worker for decoding and CPU inference (default: CPUs / workers).")
@click.option("--decode", type=click.Choice(["auto", "threads", "processes", "cuda"]), default="auto", show_default=True,
              help="Where images decode: a thread pool, processes (no GIL; auto's choice on GPU workers), or "
                   "cuda: JPEGs by nvjpeg and resizing on the GPU (records another preprocess, so another store_id).")
@click.option("--inflight", type=int, help="Shards each worker holds at once (default 2 on CPU, 4 on GPU).")
@click.option("--address", help="Join a Ray cluster: auto, or ray://HOST:10001. Default: start a local Ray.")
@click.option("--max-failures", default="0", show_default=True, help="Bad images tolerated: a count (10), fraction (0.001) or percentage (0.1%).")
@click.option("--retry-failed", is_flag=True, help="Recompute shards that recorded failed images (after fixing the files).")
@click.option("--retries", type=int, default=3, show_default=True, help="Times a shard is recomputed after its worker died or raised.")
@click.option("--codec", type=click.Choice(["zstd", "lz4", "none"]), default="zstd", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing store with another configuration.")
@click.option("--no-progress", is_flag=True, help="No progress bar (e.g. in CI logs).")
@click.option("-v", "--verbose", is_flag=True, help="Log per-shard stage timings.")
def extract_cmd(**o) -> None:
    """Extract CLIP grid + pooled features of a dataset into a feature store (resumable).

    \b
    clipfeat extract --dataset coco --root DATA/coco --model RN50x4 --pretrained openai \\
                     --out features/coco-RN50x4.zarr
    clipfeat extract --dataset coco --root DATA/coco --preset clip-vil-vqa \\
                     --out features/coco-clip-vil-vqa.zarr   (CLIP-ViL's RN50x4 VQA grids, 18x31)
    clipfeat extract --dataset r2r --root DATA/matterport --model ViT-B-16 --pretrained openai \\
                     --out features/r2r-ViT-B-16.zarr        (pooled [36, D] per viewpoint)
    Rerunning the same command after an interruption computes only the unfinished shards.
    """
    import logging

    from .encoder import EncoderSpec
    from .job import ExtractConfig, run_extract, summarize

    _log_through_tqdm(logging.INFO if o["verbose"] else logging.WARNING)
    if o["dataset"] is None and o["manifest"] is None:
        raise click.UsageError("pass --dataset (with --root) or --manifest")
    if o["root"] is None:
        raise click.UsageError("pass --root, the dataset folder")
    model, pretrained = o["model"], o["pretrained"]
    if o["preset"]:
        from .presets import get_preset

        ctx = click.get_current_context()
        given = [f"--{n.replace('_', '-')}" for n in ("preprocess", "shorter_side", "max_side", "image_size")
                 if ctx.get_parameter_source(n) is not click.core.ParameterSource.DEFAULT]
        if given:
            raise click.UsageError(f"--preset {o['preset']} fixes the preprocessing; drop {', '.join(given)}")
        preset = get_preset(o["preset"])
        if model is None:  # the preset's encoder, unless the user brings another one
            model = preset.model
            if pretrained is None and o["checkpoint"] is None:
                pretrained = preset.pretrained
    spec = EncoderSpec(model=model or "RN50", pretrained=pretrained, checkpoint=o["checkpoint"],
                       model_config=o["model_config"], image_size=o["image_size"])
    cfg = ExtractConfig(
        out=o["out"], spec=spec, dataset=o["dataset"], root=o["root"], manifest=o["manifest"],
        splits=tuple(o["splits"].split(",")) if o["splits"] else None, preprocess=o["preprocess"], preset=o["preset"],
        scans=tuple(o["scans"].split(",")) if o["scans"] else None, connectivity=o["connectivity"], grid=o["grid"],
        shorter_side=o["shorter_side"], max_side=o["max_side"], shard_size=o["shard_size"], batch_size=o["batch_size"],
        device=o["device"], workers=o["workers"], threads=o["threads"], decode=o["decode"], inflight=o["inflight"], address=o["address"],
        max_failures=o["max_failures"], retry_failed=o["retry_failed"], retries=o["retries"], codec=o["codec"], overwrite=o["overwrite"],
        progress=not o["no_progress"],
    )
    click.echo(summarize(run_extract(cfg)))


def _log_through_tqdm(level: int) -> None:
    """clipfeat's log lines (warnings, per-shard timings) printed above the progress bar."""
    import logging

    from tqdm import tqdm

    class _Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            tqdm.write(self.format(record), file=sys.stderr)

    logger = logging.getLogger("clipfeat")
    logger.handlers[:] = [_Handler()]
    logger.setLevel(level)
    logger.propagate = False


COMMANDS = [extract_cmd]
