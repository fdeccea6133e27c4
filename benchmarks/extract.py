"""Extraction throughput: the whole pipeline vs the bare encoder, and worker scaling.

Data: N synthetic 640x480 JPEGs in the COCO layout (manifests.synthetic). Model: RN50 at 224
by default, randomly initialised unless --pretrained/--checkpoint is given (no internet here;
the weights do not change the speed).

  bare encoder   the images already decoded and resized in memory (uint8), then normalize +
                 forward in batches: the ceiling the pipeline is measured against.
  end to end     `run_extract` on Ray: read, decode, resize, forward, write the store. Its
                 images/s is steady state (workers started and their model loaded; the
                 start-up seconds are reported separately).
  overhead_ratio = end-to-end images/s / bare images/s (same model, batch size, threads).
  scaling_2v1    = 2 CPU workers (1 thread each) / 1 CPU worker (1 thread), end to end.

Each figure is the median over --repeats runs, with the compared runs interleaved so machine
noise hits both sides alike.
Run:  python benchmarks/extract.py [--quick] [--json] [--device cuda --model RN50x4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore", module="zarr")


def make_dataset(root: str, n: int) -> None:
    from clipfeat.manifests.synthetic import make_coco

    make_coco(root, splits={"val2014": n}, sizes=((640, 480),))


def random_weights(model: str, path: str) -> None:
    import open_clip
    import torch

    torch.manual_seed(0)
    torch.save(open_clip.create_model(model).state_dict(), path)


def bare_encoder(spec, root: str, manifest, pre, *, device: str, threads: int, batch_size: int, repeats: int) -> list[float]:
    """images/s of normalize + forward on pre-decoded uint8 images, one value per repeat."""
    import numpy as np
    import torch

    from clipfeat.pipeline.encoder import load_encoder
    from clipfeat.pipeline.images import load_image

    torch.set_num_threads(threads)
    pixels = [pre(load_image(manifest.resolve(root, i))[0]) for i in range(len(manifest))]
    enc = load_encoder(spec, device=device)
    enc.encode(enc.normalize(np.stack(pixels[:batch_size])))  # warm-up (cuDNN autotune, allocator)
    out = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for s in range(0, len(pixels), batch_size):
            p, g = enc.encode(enc.normalize(np.stack(pixels[s : s + batch_size])))
            p.cpu(), g.cpu()  # the pipeline copies results to the host too
        out.append(len(pixels) / (time.perf_counter() - t0))
    return out


def end_to_end(spec, root: str, out_dir: str, *, device: str, workers: int, threads: int, batch_size: int, shard_size: int):
    from clipfeat.pipeline.job import ExtractConfig, run_extract

    out = os.path.join(out_dir, f"run-{time.monotonic_ns()}.zarr")
    res = run_extract(ExtractConfig(
        out=out, spec=spec, dataset="coco", root=root, shard_size=shard_size, batch_size=batch_size,
        device=device, workers=workers, threads=threads, progress=False,
    ))
    shutil.rmtree(out, ignore_errors=True)
    return res


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="32 images, one repeat (< 1 min on 2 CPUs)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--images", type=int, help="synthetic images (default 256; quick 32)")
    ap.add_argument("--repeats", type=int, help="runs per figure; the median is reported (default 3; quick 1)")
    ap.add_argument("--model", default="RN50")
    ap.add_argument("--pretrained")
    ap.add_argument("--checkpoint")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads of the single worker in the overhead runs")
    ap.add_argument("--skip-scaling", action="store_true", help="skip the 2-vs-1 CPU worker runs")
    args = ap.parse_args(argv)
    n = args.images or (32 if args.quick else 256)
    repeats = args.repeats or (1 if args.quick else 3)

    import ray

    from clipfeat.manifests import scan
    from clipfeat.pipeline.encoder import EncoderSpec
    from clipfeat.pipeline.job import ExtractConfig, plan_store

    tmp = tempfile.mkdtemp(prefix="clipfeat-bench-")
    try:
        root = os.path.join(tmp, "coco")
        make_dataset(root, n)
        ckpt = args.checkpoint
        if not args.pretrained and not ckpt:
            ckpt = os.path.join(tmp, f"{args.model}-random.pt")
            random_weights(args.model, ckpt)
        spec = EncoderSpec(model=args.model, pretrained=args.pretrained, checkpoint=ckpt)
        manifest, _ = scan("coco", root)
        _, pre = plan_store(ExtractConfig(out="-", spec=spec), manifest, "")
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)

        bare, e2e, e2e_start = [], [], []
        for _ in range(repeats):  # interleaved: bare, pipeline, bare, pipeline, ...
            bare += bare_encoder(spec, root, manifest, pre, device=args.device, threads=args.threads,
                                 batch_size=args.batch_size, repeats=1)
            r = end_to_end(spec, root, tmp, device=args.device, workers=1, threads=args.threads,
                           batch_size=args.batch_size, shard_size=max(args.batch_size, n // 4))
            e2e.append(r.images_per_s)
            e2e_start.append(r.computed / (r.seconds + r.startup_s))
        rows = [
            ("bare encoder (decoded in memory)", statistics.median(bare)),
            ("end to end, steady state", statistics.median(e2e)),
            ("end to end, incl. worker start-up", statistics.median(e2e_start)),
        ]
        result = {
            "model": args.model, "device": args.device, "images": n, "batch_size": args.batch_size,
            "threads": args.threads, "repeats": repeats,
            "bare_images_s": round(statistics.median(bare), 2),
            "images_s": round(statistics.median(e2e), 2),
            "images_s_incl_startup": round(statistics.median(e2e_start), 2),
            "overhead_ratio": round(statistics.median(e / b for e, b in zip(e2e, bare)), 3),
        }
        if not args.skip_scaling:
            one, two = [], []
            for _ in range(repeats):
                for workers, acc in ((1, one), (2, two)):
                    r = end_to_end(spec, root, tmp, device="cpu", workers=workers, threads=1,
                                   batch_size=args.batch_size, shard_size=max(8, n // 8))
                    acc.append(r.images_per_s)
            rows += [("1 CPU worker x 1 thread", statistics.median(one)), ("2 CPU workers x 1 thread", statistics.median(two))]
            result["scaling_2v1"] = round(statistics.median(t / o for t, o in zip(two, one)), 3)
        ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"extraction: {args.model} on {args.device}, {n} synthetic 640x480 JPEGs, batch {args.batch_size}, "
          f"median of {repeats}")
    print(f"{'run':<38}{'images/s':>10}")
    for name, v in rows:
        print(f"{name:<38}{v:>10.1f}")
    print(f"overhead_ratio (end to end / bare) = {result['overhead_ratio']:.3f}")
    if "scaling_2v1" in result:
        print(f"scaling_2v1 (2 workers / 1 worker)  = {result['scaling_2v1']:.3f}")
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
