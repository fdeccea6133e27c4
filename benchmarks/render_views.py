"""Skybox rendering speed: the simulator's 36 views per viewpoint, against the CLIP forward on them.

Data: B viewpoints of six random 1024x1024 uint8 faces (the content does not change the speed)
with Matterport-like poses (camera y down, a random turn about z, a small tilt).

  render         `render_views`: faces on the device -> uint8 [B, 36, 3, 480, 640]: the atlas, the
                 cube lookup (a sampling grid per pose) and the bilinear sampling. Every repeat
                 uses new poses, as a pipeline that renders each viewpoint once does.
  render, cached grid   `poses=None` (synthetic data): one sampling grid for the batch, kept
                 from the previous call
  preprocess     the views -> 224x224 uint8 as the extraction job resizes R2R views
                 (`images.tensor_preprocess`: bicubic shorter side 224, centre crop), for reference
  RN50 forward   `encoder.Encoder.normalize` + `encode` (grid + pooled) of open_clip's RN50 with
                 random weights on those 36 x 224 x 224 inputs of one viewpoint, one batch; half
                 precision on CUDA, as the extraction job runs it

  render_fraction = render time per view / RN50 forward time per view      (target < 0.10)

Each figure: the median over --repeats, render and forward interleaved in every repeat.
Run:  python benchmarks/render_views.py [--quick] [--json] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import time


def random_poses(rng, n: int):
    """Matterport-like camera-to-world poses: camera x right, y down, z forward; turned about z, tilted < 2 degrees."""
    import numpy as np

    camera = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
    out = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        a, tx, ty = rng.uniform(0, 2 * math.pi), rng.normal(0, 0.015), rng.normal(0, 0.015)
        rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
        rx = np.array([[1, 0, 0], [0, math.cos(tx), -math.sin(tx)], [0, math.sin(tx), math.cos(tx)]])
        ry = np.array([[math.cos(ty), 0, math.sin(ty)], [0, 1, 0], [-math.sin(ty), 0, math.cos(ty)]])
        out[i, :3, :3] = rx @ ry @ rz @ camera
        out[i, :3, 3] = rng.uniform(-10, 10, 3)
    return out


def rn50_encoder(device: str):
    """open_clip RN50 with random weights, set up as `encoder.load_encoder` sets up a model."""
    import open_clip
    import torch
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    from clipfeat.pipeline.encoder import Encoder

    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that no pretrained weights were loaded
    torch.manual_seed(0)
    model = open_clip.create_model("RN50")
    half = device == "cuda"
    model = model.to(device=device, dtype=torch.float16 if half else torch.float32)
    if half:
        model = model.to(memory_format=torch.channels_last)
    return Encoder(model, kind="resnet", device=device, mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD, half=half)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 viewpoints, 2 repeats (< 1 minute on 2 CPUs)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch", type=int, help="viewpoints per render_views call (default 4; quick 2)")
    ap.add_argument("--face-size", type=int, default=1024, help="skybox face side (Matterport's _sami faces: 1024)")
    ap.add_argument("--repeats", type=int, help="runs per figure; the median is reported (default 5; quick 2)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    args = ap.parse_args(argv)
    b = args.batch or (2 if args.quick else 4)
    repeats = args.repeats or (2 if args.quick else 5)

    import numpy as np
    import torch

    from clipfeat.pipeline.images import Preprocessor, tensor_preprocess
    from clipfeat.pipeline.panorama import VIEW_HEIGHT, VIEW_WIDTH, VIEWS, render_views

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda was asked but this machine has no usable GPU; use --device cpu")
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn):
        sync()
        t = time.perf_counter()
        out = fn()
        sync()
        return out, time.perf_counter() - t

    rng = np.random.default_rng(0)
    gen = torch.Generator(device=dev).manual_seed(0)
    faces = torch.randint(0, 256, (b, 6, 3, args.face_size, args.face_size), dtype=torch.uint8, device=dev, generator=gen)
    enc = rn50_encoder(args.device)
    pre = Preprocessor(mode="fixed", size=224)
    n = b * VIEWS

    views = render_views(faces, random_poses(rng, b))  # warm-up: allocations, thread pools
    render_views(faces, None), render_views(faces, None)  # the identity pose met twice: its grid is kept
    pixels = tensor_preprocess(views[0], pre)
    enc.encode(enc.normalize(pixels))
    res: dict[str, list[float]] = {"render": [], "cached": [], "preprocess": [], "rn50": []}
    for rep in range(repeats):
        poses = random_poses(rng, b)  # new poses: no grid to reuse
        views, dt = timed(lambda: render_views(faces, poses))
        res["render"].append(dt / n)
        _, dt = timed(lambda: render_views(faces, None))  # its grid is kept since the warm-up

        res["cached"].append(dt / n)
        pixels, dt = timed(lambda: tensor_preprocess(views[0], pre))  # one viewpoint's 36 views
        res["preprocess"].append(dt / VIEWS)
        _, dt = timed(lambda: [t.cpu() for t in enc.encode(enc.normalize(pixels))])
        res["rn50"].append(dt / VIEWS)
        print(f"  repeat {rep + 1}: " + ", ".join(f"{k} {v[-1] * 1e3:.2f} ms/view" for k, v in res.items()), file=sys.stderr, flush=True)

    med = {k: statistics.median(v) for k, v in res.items()}
    fraction = statistics.median(r / f for r, f in zip(res["render"], res["rn50"]))
    name = torch.cuda.get_device_name() if dev.type == "cuda" else f"{args.threads} CPU threads"
    print(f"\nskybox -> 36 views: {b} viewpoints x {VIEWS} views per call, {args.face_size}² faces -> "
          f"{VIEW_WIDTH}x{VIEW_HEIGHT}, {args.device} ({name}), median of {repeats}")
    print(f"{'stage':<44}{'ms/view':>10}{'views/s':>10}")
    rows = [("render (new poses: lookup + sampling)", med["render"]), ("render, kept sampling grid (poses=None)", med["cached"]),
            ("preprocess 640x480 -> 224 (resize + crop)", med["preprocess"]), ("RN50 forward at 224 (batch 36)", med["rn50"])]
    for label, sec in rows:
        print(f"{label:<44}{sec * 1e3:>10.2f}{1 / sec:>10.1f}")
    print(f"render_fraction (render / RN50 forward, per view) = {fraction:.3f}  (target < 0.10)")
    out = {"views_per_s": round(1 / med["render"], 1), "views_per_s_cached_grid": round(1 / med["cached"], 1),
           "preprocess_views_per_s": round(1 / med["preprocess"], 1), "rn50_views_per_s": round(1 / med["rn50"], 1),
           "render_fraction": round(fraction, 4), "device": args.device, "device_name": name, "batch": b,
           "face_size": args.face_size, "threads": args.threads, "repeats": repeats, "quick": args.quick}
    if args.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
