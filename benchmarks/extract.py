"""Extraction throughput: the whole pipeline vs the bare encoder, and worker scaling.

Data: N synthetic 640x480 JPEGs in the COCO layout (manifests.synthetic). Model: RN50 at 224
by default, randomly initialised unless --pretrained/--checkpoint is given (no internet here;
the weights do not change the speed).

  bare encoder   the images already decoded and resized in memory (uint8), then normalize +
                 forward in batches: the ceiling the pipeline is measured against. It runs in
                 a Ray task with the job workers' environment (`job.worker_env`: priority,
                 allocator), or in-process with --no-ray, as the pipeline then does.
  end to end     `run_extract` on Ray: read, decode, resize, forward, write the store. Its
                 images/s is steady state (workers started and their model loaded; the
                 start-up seconds are reported separately).
  overhead_ratio = end-to-end images/s / bare images/s (same model, batch size, threads).
  scaling_2v1    = 2 CPU workers (1 thread each) / 1 CPU worker (1 thread), end to end.

Each figure is the median over --repeats runs, with the compared runs interleaved so machine
noise hits both sides alike; each end-to-end run is divided by the mean of the bare runs just
before and after it.
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


def end_to_end(spec, root: str, out_dir: str, *, device: str, workers: int, threads: int, batch_size: int, shard_size: int,
               inflight: int | None = None, decode: str = "auto"):
    from clipfeat.pipeline.job import ExtractConfig, run_extract

    out = os.path.join(out_dir, f"run-{time.monotonic_ns()}.zarr")
    res = run_extract(ExtractConfig(
        out=out, spec=spec, dataset="coco", root=root, shard_size=shard_size, batch_size=batch_size,
        device=device, workers=workers, threads=threads, inflight=inflight, decode=decode, progress=False,
    ))
    shutil.rmtree(out, ignore_errors=True)
    return res


def end_to_end_inprocess(spec, root: str, out_dir: str, manifest, pre, *, device: str, threads: int, batch_size: int,
                         shard_size: int, inflight: int, decode: str = "auto"):
    """The same worker without Ray (`inflight` shards at once from as many threads, as the
    threaded actor runs them): for machines where Ray is not installed. Returns images/s."""
    from concurrent.futures import ThreadPoolExecutor

    from clipfeat.features.writer import create_store
    from clipfeat.pipeline.job import ExtractConfig, plan_store
    from clipfeat.pipeline.worker import ShardWorker, WorkerConfig, WorkItem

    out = os.path.join(out_dir, f"run-{time.monotonic_ns()}.zarr")
    meta, _ = plan_store(ExtractConfig(out=out, spec=spec, shard_size=shard_size, decode=decode, device=device), manifest, "bench")
    writer = create_store(out, meta=meta, keys=manifest.keys)
    worker = ShardWorker(WorkerConfig(store=out, root=root, spec=spec, preprocess=pre, device=device, threads=threads,
                                      batch_size=batch_size, gpu_jpeg=decode == "cuda"))
    rows = {k: [WorkItem(r, manifest.rows[r].key, manifest.rows[r].path) for r in writer.shard_rows(k)]
            for k in range(meta.shards.count)}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(inflight) as ex:
        reports = list(ex.map(lambda k: worker.run(k, rows[k]), rows))
    rate = len(manifest) / (time.perf_counter() - t0)
    writer.close()
    shutil.rmtree(out, ignore_errors=True)
    stages: dict[str, float] = {}
    for rep in reports:
        for name, sec in rep.timings.items():
            stages[name] = stages.get(name, 0.0) + sec
    print("  stage seconds (summed over shards): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()), flush=True)
    return rate


def decode_comparison(folder: str, n: int, threads: int, batch: int = 64) -> dict:
    """JPEG decode + resize to 288x288 (uint8): PIL on `threads` CPU threads vs torchvision's
    batched nvjpeg decode on the GPU. Files are read into memory first; images/s each."""
    from concurrent.futures import ThreadPoolExecutor

    import torch
    import torchvision
    from torchvision.transforms.v2 import functional as TF

    from clipfeat.pipeline.images import Preprocessor, decode_image

    names = sorted(f for f in os.listdir(folder) if f.lower().endswith((".jpg", ".jpeg")))
    blobs = [open(os.path.join(folder, names[i % len(names)]), "rb").read() for i in range(n)]
    pre = Preprocessor(mode="fixed", size=288)
    out = {}
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(lambda b: pre(decode_image(b)), blobs[:threads]))
        t0 = time.perf_counter()
        list(ex.map(lambda b: pre(decode_image(b)), blobs))
        out["cpu_decode_images_s"] = n / (time.perf_counter() - t0)
    if torch.cuda.is_available():
        datas = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]

        def gpu(chunk):
            imgs = torchvision.io.decode_jpeg(chunk, device="cuda", mode=torchvision.io.ImageReadMode.RGB)
            return [TF.center_crop(TF.resize(im, 288, interpolation=TF.InterpolationMode.BICUBIC, antialias=True), 288) for im in imgs]

        gpu(datas[:batch])
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for s in range(0, n, batch):
            gpu(datas[s : s + batch])
        torch.cuda.synchronize()
        out["cuda_decode_images_s"] = n / (time.perf_counter() - t0)
    return out


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
    ap.add_argument("--shard-size", type=int, help="items per shard (default: images / 4)")
    ap.add_argument("--inflight", type=int, help="shards per worker at once (default: the job's, 2 on CPU, 4 on GPU)")
    ap.add_argument("--decode", default="auto", choices=["auto", "threads", "processes", "cuda"], help="the job's --decode")
    ap.add_argument("--skip-scaling", action="store_true", help="skip the 2-vs-1 CPU worker runs")
    ap.add_argument("--no-ray", action="store_true", help="end to end through the worker in-process (machines without Ray)")
    ap.add_argument("--decode-images", help="folder of JPEGs for the CPU vs CUDA decode comparison (e.g. real COCO files)")
    args = ap.parse_args(argv)
    n = args.images or (32 if args.quick else 256)
    repeats = args.repeats or (1 if args.quick else 3)

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
        if not args.no_ray:
            import ray

            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)

        bare, e2e, e2e_start = [], [], []
        shard_size = args.shard_size or max(args.batch_size, n // 4)
        inflight = args.inflight or (4 if args.device == "cuda" else 2)
        def bare_run() -> None:
            kw = dict(device=args.device, threads=args.threads, batch_size=args.batch_size, repeats=1)
            if args.no_ray:
                bare.extend(bare_encoder(spec, root, manifest, pre, **kw))
                return
            # In a Ray worker process set up exactly as the job's workers are (priority,
            # allocator: `worker_env`), so the two sides differ only by the pipeline.
            from clipfeat.pipeline.job import worker_env

            task = ray.remote(bare_encoder).options(num_cpus=args.threads, num_gpus=1 if args.device == "cuda" else 0,
                                                    runtime_env={"env_vars": worker_env(args.device, local=True)})
            bare.extend(ray.get(task.remote(spec, root, manifest, pre, **kw)))

        # Bracketed: bare, pipeline, bare, pipeline, ..., bare. Each pipeline run is compared
        # with the mean of the bare runs either side of it: this machine's speed drifts by
        # 10-20 % within minutes, and a drift hits a bracketed ratio only to second order.
        for _ in range(repeats):
            bare_run()
            if args.no_ray:
                e2e.append(end_to_end_inprocess(spec, root, tmp, manifest, pre, device=args.device, threads=args.threads,
                                                batch_size=args.batch_size, shard_size=shard_size, inflight=inflight,
                                                decode=args.decode))
                continue
            r = end_to_end(spec, root, tmp, device=args.device, workers=1, threads=args.threads,
                           batch_size=args.batch_size, shard_size=shard_size, inflight=inflight, decode=args.decode)
            e2e.append(r.images_per_s)
            e2e_start.append(r.computed / (r.seconds + r.startup_s))
        bare_run()
        ratios = [e / ((b0 + b1) / 2) for e, b0, b1 in zip(e2e, bare, bare[1:])]
        print("  per repeat: bare " + " ".join(f"{b:.1f}" for b in bare) + " | end to end " + " ".join(f"{e:.1f}" for e in e2e)
              + " | ratio " + " ".join(f"{r:.3f}" for r in ratios), file=sys.stderr, flush=True)
        rows = [
            ("bare encoder (decoded in memory)", statistics.median(bare)),
            ("end to end, steady state" + (" (worker in-process, no Ray)" if args.no_ray else ""), statistics.median(e2e)),
        ]
        if e2e_start:
            rows.append(("end to end, incl. worker start-up", statistics.median(e2e_start)))
        result = {
            "model": args.model, "device": args.device, "decode": args.decode, "images": n, "batch_size": args.batch_size,
            "threads": args.threads, "repeats": repeats,
            "bare_images_s": round(statistics.median(bare), 2),
            "images_s": round(statistics.median(e2e), 2),
            "images_s_incl_startup": round(statistics.median(e2e_start), 2) if e2e_start else None,
            "ray": not args.no_ray,
            "overhead_ratio": round(statistics.median(ratios), 3),
        }
        if args.decode_images:
            dec = decode_comparison(args.decode_images, max(n, 512), threads=args.threads)
            result.update({k: round(v, 1) for k, v in dec.items()})
            rows += [(f"JPEG decode+resize, CPU x{args.threads} threads", dec["cpu_decode_images_s"])]
            if "cuda_decode_images_s" in dec:
                rows.append(("JPEG decode+resize, CUDA nvjpeg batched", dec["cuda_decode_images_s"]))
        if not args.skip_scaling and not args.no_ray:
            one, two = [], []
            for _ in range(repeats):
                for workers, acc in ((1, one), (2, two)):
                    r = end_to_end(spec, root, tmp, device="cpu", workers=workers, threads=1,
                                   batch_size=args.batch_size, shard_size=max(8, n // 8))
                    acc.append(r.images_per_s)
            rows += [("1 CPU worker x 1 thread", statistics.median(one)), ("2 CPU workers x 1 thread", statistics.median(two))]
            result["scaling_2v1"] = round(statistics.median(t / o for t, o in zip(two, one)), 3)
        if not args.no_ray:
            ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"extraction: {args.model} on {args.device} ({_device_name(args.device)}), {n} synthetic 640x480 JPEGs, batch {args.batch_size}, "
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


def _device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{os.cpu_count()} CPUs"


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
