"""Captioning trainer speed: training images/s (XE and SCST) and decoding images/s (greedy, beam 3).

Data: N synthetic COCO images with 5 captions each and their RN50 feature store (7x7 grid x
2048 channels, fixed 224 px), written by the real pipeline (random RN50 weights: weights do
not change the speed). The captioner at its default size (d 512, 3 + 3 layers, ff 2048, 8
heads) fed by the trainer's own loader (`Batches` over the store, read ahead by `Prefetcher`):

  xe      one cross-entropy step: encoder once per image, decoder over its 5 captions,
          backward, AdamW
  scst    one SCST step: 5 samples per image (KV-cached decoding), the greedy baseline (eval
          mode), CIDEr-D rewards against the training references, one teacher-forced pass for
          the log-probs, backward, AdamW
  greedy  / beam3   decoding the images (no gradients), as the per-epoch evaluation and the final
          predictions do

plus the CIDEr-D reward alone: the vectorised `CiderD.score` vs pycocoevalcap's `Cider` on the
same SCST batch (250 candidates; pycocoevalcap recomputes document frequencies from the batch,
so its scores differ; the time is what compares).

A "sample" is an image for every figure (XE trains 5 captions per image, SCST 5 samples).
Each figure: the median over --repeats, the phases interleaved in every repeat.
Run:  python benchmarks/train_caption.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore", module="zarr")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def setup(root: str, images: int, batch_size: int):
    import numpy as np

    from clipfeat.features import open_store
    from clipfeat.trainers.caption.data import Batches, WordIds, build_vocab, encode_split, load_splits, pick_splits
    from train_vqa import build  # the same synthetic COCO + RN50 store

    store_path, _ = build(root, images)
    store = open_store(store_path)
    raw = pick_splits(load_splits(os.path.join(root, "coco")), ("train",), "train_splits")
    vocab = build_vocab(raw, min_count=1)
    split = encode_split(raw, store, vocab, WordIds(vocab), max_len=16, strict=True)
    batches = Batches(split, store, batch_size=batch_size, shuffle=True, seq_per_img=5, seed=0)
    return store, vocab, split, batches, np


def timed(batches_iter, step, steps: int) -> float:
    """Images/s over `steps` batches after one warm-up batch (the loader reads ahead in a thread)."""
    from clipfeat.trainers.prefetch import Prefetcher

    t0, n = None, 0
    for i, batch in enumerate(Prefetcher(batches_iter, 4)):
        step(batch)
        if i == 0:
            t0 = time.perf_counter()
        else:
            n += len(batch["idx"])
        if i == steps:
            break
    return n / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer images, steps and repeats (< 1 minute)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--images", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None, help="images per step (default 50; 16 with --quick)")
    args = ap.parse_args(argv)
    args.batch_size = args.batch_size or (16 if args.quick else 50)
    images = args.images or (48 if args.quick else 300)
    repeats = args.repeats or (1 if args.quick else 3)
    steps = 2 if args.quick else 5
    if images < args.batch_size * (steps + 1):
        ap.error(f"--images must be at least {args.batch_size * (steps + 1)} (one warm-up and {steps} timed batches)")

    import torch

    from pycocoevalcap.cider.cider import Cider

    from clipfeat.trainers.caption.cider import CiderD
    from clipfeat.trainers.caption.data import Batches
    from clipfeat.trainers.caption.decoding import sample, strip
    from clipfeat.trainers.caption.models import build_model
    from clipfeat.trainers.caption.train import CaptionConfig, cider_candidates, decode_split, encode_batch, scst_loss, xe_loss
    from clipfeat.trainers.optim import make_optimizer

    torch.set_num_threads(os.cpu_count() or 1)
    dev = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store, vocab, split, batches, np = setup(tmp, images, args.batch_size)
        print(f"setup: {len(split)} images, {len(split.caps)} captions, vocabulary {len(vocab)} "
              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        cfg = CaptionConfig()
        torch.manual_seed(0)
        model = build_model(cfg, vocab_size=len(vocab), channels=store.meta.layout.grid_channels,
                            pooled_dim=store.meta.layout.pooled_dim)
        optimizer = make_optimizer(model, cfg)
        cider = CiderD(split.refs)

        def train(loss_fn):
            def step(batch):
                model.train()
                loss = loss_fn(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            return step

        xe = train(lambda b: xe_loss(model, b, dev, 0.0))
        scst = train(lambda b: scst_loss(model, b, dev, cider, samples=5, baseline="greedy", max_len=16)["loss"])
        n_decode = min(len(split), args.batch_size * (steps + 1))
        head = dataclasses.replace(split, image_ids=split.image_ids[:n_decode], rows=split.rows[:n_decode])
        decode_batches = Batches(head, store, batch_size=args.batch_size, shuffle=False)

        def decode_rate(beam: int) -> float:
            t = time.perf_counter()
            decode_split(model, decode_batches, dev, beam_size=beam, max_len=16)
            return n_decode / (time.perf_counter() - t)

        # The reward alone, on one SCST batch of sampled captions. pycocoevalcap gets the same
        # ids as space-separated strings (no tokenisation cost on either side).
        batch = next(iter(decode_batches()))
        with torch.no_grad():
            caps = sample(model.eval(), encode_batch(model, batch, dev), 5, 16)
        cands, groups = cider_candidates(caps), np.repeat(batch["idx"].numpy(), 5)
        gts = {k: [" ".join(map(str, r)) for r in split.refs[g]] for k, g in enumerate(groups)}
        res = {k: [" ".join(map(str, c)) or "0"] for k, c in enumerate(strip(caps))}

        results: dict[str, list[float]] = {k: [] for k in ("xe", "scst", "greedy", "beam3", "cider_ms", "pycoco_cider_ms")}
        for rep in range(repeats):
            results["xe"].append(timed(batches(rep), xe, steps))
            results["scst"].append(timed(batches(rep), scst, steps))
            results["greedy"].append(decode_rate(1))
            results["beam3"].append(decode_rate(3))
            t = time.perf_counter()
            for _ in range(5):
                cider.score(cands, groups)
            results["cider_ms"].append((time.perf_counter() - t) / 5 * 1e3)
            t = time.perf_counter()
            Cider().compute_score(gts, res)
            results["pycoco_cider_ms"].append((time.perf_counter() - t) * 1e3)
            print(f"  repeat {rep + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in results.items()), file=sys.stderr,
                  flush=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nCaptioning trainer (d 512, 3+3 layers), {images} images, batch {args.batch_size} images, "
          f"{os.cpu_count()} CPU threads, median of {repeats}")
    print(f"{'phase':<34}{'images/s':>10}")
    print(f"{'XE training (5 captions/image)':<34}{med['xe']:>10.1f}")
    print(f"{'SCST training (5 samples/image)':<34}{med['scst']:>10.1f}")
    print(f"{'decoding, greedy':<34}{med['greedy']:>10.1f}")
    print(f"{'decoding, beam 3':<34}{med['beam3']:>10.1f}")
    print(f"CIDEr-D reward of {len(cands)} samples: {med['cider_ms']:.1f} ms vectorised vs "
          f"{med['pycoco_cider_ms']:.1f} ms pycocoevalcap ({med['pycoco_cider_ms'] / med['cider_ms']:.0f}x)")
    out = {
        "xe_samples_per_s": round(med["xe"], 1), "scst_samples_per_s": round(med["scst"], 1),
        "greedy_images_per_s": round(med["greedy"], 1), "beam3_images_per_s": round(med["beam3"], 1),
        "cider_reward_ms": round(med["cider_ms"], 2), "pycocoevalcap_cider_ms": round(med["pycoco_cider_ms"], 2),
        "images": images, "batch_size": args.batch_size, "repeats": repeats, "quick": args.quick,
    }
    if args.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
