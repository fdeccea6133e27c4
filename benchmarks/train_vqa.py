"""What the feature cache buys a VQA trainer: samples/s from the store vs from RAM vs online.

Data: N synthetic COCO images (640x480-class JPEGs, ~7 VQA questions each) and their RN50
feature store (7x7 grid x 2048 channels, fixed 224 px; `--model RN50x4`: 9x9 x 2560 at 288 px;
`--preset clip-vil-vqa`: CLIP-ViL's configuration, RN50x4 on 600x1000 inputs, 18x31 x 2560),
written by the real pipeline (`run_extract`, random weights: weights do not change the speed).

Each recipe's trainer step (`--recipes`, default the reference `butd` and `mcan-small` at their
full sizes, plus clipfeat's `butd-clipfeat`: forward, the recipe's loss, backward, the recipe's
optimizer) on the same question batches (the trainer's shard-shuffled order), fed three ways:

  store    the trainer's loader: `Batches` over the store, read ahead in a thread (`Prefetcher`)
  ram      the same features already in a torch tensor in memory (the loader's ceiling)
  online   no cache: each batch's images read, decoded and resized (in a read-ahead thread, 2
           decode threads, the store's own preprocessing), then the encoder computes the grids in
           the loop, then the same step

  cached_vs_online_speedup = store / online       (target >= 20 on the 2-core CPU)
  loader_vs_ram_ratio      = store / ram          (target >= 0.9: the model bounds training)

Precision: the trainer's own (`core.autocast_dtype`: bfloat16 autocast on CPUs with native
bfloat16, float32 otherwise), or `--precision fp32`. The online feed's RN50 runs inside the same
autocast region as the step, as it would in an online trainer, so both sides get the speed-up.

Each figure: the median over --repeats, with the three feeds interleaved in every repeat.
JSON keys without a suffix are the first recipe's; `_<recipe>` keys give each recipe's.
Run:  python benchmarks/train_vqa.py [--quick] [--json] [--model RN50x4] [--preset clip-vil-vqa]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

warnings.filterwarnings("ignore", module="zarr")


def build(root: str, n: int, model: str, preset: str | None = None) -> tuple[str, object]:
    """Synthetic COCO + its store of `model` grids (with `preset`'s preprocessing); returns
    (store path, EncoderSpec)."""
    import open_clip
    import torch

    from clipfeat.manifests.synthetic import make_coco
    from clipfeat.pipeline.encoder import EncoderSpec
    from clipfeat.pipeline.job import ExtractConfig, run_extract

    make_coco(os.path.join(root, "coco"), splits={"train2014": n, "val2014": 8})
    torch.manual_seed(0)
    ckpt = os.path.join(root, f"{model}.pt")
    torch.save(open_clip.create_model(model).state_dict(), ckpt)
    spec = EncoderSpec(model=model, checkpoint=ckpt)
    store = os.path.join(root, f"coco-{model}.zarr")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    run_extract(ExtractConfig(out=store, spec=spec, dataset="coco", root=os.path.join(root, "coco"), shard_size=64,
                              batch_size=8 if preset else 32, device="cpu", workers=1, threads=2, progress=False, preset=preset))
    return store, spec


class Feeds:
    """The three ways of producing the trainer's batch for the same question indices."""

    def __init__(self, root: str, store_path: str, spec, batch_size: int) -> None:
        import numpy as np
        import torch

        from clipfeat.features import open_store
        from clipfeat.manifests import scan
        from clipfeat.pipeline.encoder import load_encoder
        from clipfeat.pipeline.images import load_image
        from clipfeat.pipeline.job import ExtractConfig, plan_store
        from clipfeat.trainers.vqa.data import Batches, build_answer_vocab, build_question_vocab, encode_split, load_split

        self.np, self.torch, self.load_image = np, torch, load_image
        data = os.path.join(root, "coco")
        self.store = open_store(store_path)
        raw = load_split(data, "train2014")
        self.qvocab = build_question_vocab(raw.questions)
        self.avocab, _ = build_answer_vocab(raw.annotations, 1)
        self.split = encode_split(raw, self.store, self.qvocab, self.avocab, max_tokens=14, strict=True)
        self.batches = Batches(self.split, self.store, batch_size=batch_size, num_answers=len(self.avocab), shuffle=True)
        # RAM: every image's grid in one tensor [N, 49, 2048] f16
        self.ram = torch.from_numpy(self.store.grid(np.arange(len(self.store))))
        # online: manifest paths, the store's own preprocessing, the same RN50
        manifest, _ = scan("coco", data)
        self.paths = [manifest.resolve(data, i) for i in range(len(manifest))]
        meta = self.store.meta  # the store's preprocessing, as the extraction planned it
        _, self.pre = plan_store(ExtractConfig(out=store_path, spec=spec, dataset="coco", root=data,
                                               preset=meta.preprocess.preset), manifest, "")
        self.encoder = load_encoder(spec, device="cpu", mean=self.pre.mean, std=self.pre.std)
        self.decode_pool = ThreadPoolExecutor(2)

    def order(self, epoch: int):
        idx = self.batches.order(epoch)
        size = self.batches.batch_size
        return [idx[s : s + size] for s in range(0, len(idx) - size + 1, size)]

    def from_store(self, idx):
        return self.batches.load(idx)

    def from_ram(self, idx):
        """The store loader's batch dict, with the grids gathered from the in-memory tensor."""
        torch, sp = self.torch, self.split
        grid = self.ram[torch.from_numpy(sp.rows[idx])]  # [B, 49, 2048] f16
        return {"idx": torch.from_numpy(idx), "grid": grid, "mask": None, "pos": _positions(self.store, len(idx), grid.shape[1]),
                "tokens": torch.from_numpy(sp.tokens[idx]), "targets": sp.targets(idx, len(self.avocab))}

    def decoded(self, idx):
        """Read-ahead part of the online feed: the batch's distinct images as uint8 pixels."""
        np = self.np
        uniq, inverse = np.unique(self.split.rows[idx], return_inverse=True)
        pixels = list(self.decode_pool.map(lambda r: self.pre(self.load_image(self.paths[r])[0]), uniq))
        return idx, np.stack(pixels), inverse

    def online(self, item):
        """In-loop part of the online feed: RN50 grids of the decoded images, then the batch."""
        torch = self.torch
        idx, pixels, inverse = item
        with torch.no_grad():
            _, grid = self.encoder.encode(self.encoder.normalize(pixels))  # [U, 49, 2048]
        sp = self.split
        g = grid[torch.from_numpy(inverse)]
        return {"idx": torch.from_numpy(idx), "grid": g, "mask": None, "pos": _positions(self.store, len(idx), g.shape[1]),
                "tokens": torch.from_numpy(sp.tokens[idx]), "targets": sp.targets(idx, len(self.avocab))}


def _positions(store, b: int, cells: int):
    import torch

    from clipfeat.trainers.grids import cell_positions

    return cell_positions(torch.tensor(store.meta.layout.grid_hw).expand(b, 2), cells)


def rate(feeds: Feeds, model, optimizer, batches, produce, *, prefetch: int = 4, then=None, dtype=None,
         loss_kind: str = "bce_per_question", clip: float = 0.0) -> float:
    """Training samples/s over `batches` (the first one is warm-up and not timed); `dtype`: the
    trainer's autocast dtype (`core.autocast_dtype`), which the step and the online encoder run
    under, None for float32."""
    import torch

    from clipfeat.trainers.device import autocast
    from clipfeat.trainers.prefetch import Prefetcher
    from clipfeat.trainers.vqa.train import forward, vqa_loss

    dev = torch.device("cpu")
    it = iter(Prefetcher(map(produce, batches), prefetch))
    t0, n = None, 0
    for i, item in enumerate(it):
        with autocast(dev, enabled=dtype is not None):  # the trainer's region: bfloat16 where dtype is set
            batch = then(item) if then else item
            loss = vqa_loss(forward(model, batch, dev), batch["targets"], loss_kind)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        if i == 0:
            t0 = time.perf_counter()
        else:
            n += len(batch["idx"])
    return n / (time.perf_counter() - t0)


def flops_per_sample(feeds: Feeds, model, optimizer, idx, dtype=None) -> tuple[float, float]:
    """(training step, online RN50) floating-point operations per question, counted by
    torch's FlopCounterMode on one batch: the step is forward + backward (the optimizer's
    elementwise update is not counted); the encoder runs once per distinct image of the batch."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from clipfeat.trainers.device import autocast
    from clipfeat.trainers.vqa.train import forward, vqa_loss

    dev = torch.device("cpu")
    batch = feeds.from_ram(idx)
    with FlopCounterMode(display=False) as step:
        with autocast(dev, enabled=dtype is not None):  # the trainer's region: bfloat16 where dtype is set
            loss = vqa_loss(forward(model, batch, dev), batch["targets"])
        loss.backward()
    optimizer.zero_grad(set_to_none=True)
    _, pixels, _ = feeds.decoded(idx)
    with FlopCounterMode(display=False) as enc, torch.no_grad():
        feeds.encoder.encode(feeds.encoder.normalize(pixels))
    return step.get_total_flops() / len(idx), enc.get_total_flops() / len(idx)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer images, steps and repeats (< 1 minute)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--images", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--model", default=None, help="the CLIP encoder of the store and of the online feed (default RN50, "
                                                  "or the preset's)")
    ap.add_argument("--preset", default=None, help="an extraction preset, e.g. clip-vil-vqa (CLIP-ViL's RN50x4 600x1000 grids)")
    ap.add_argument("--recipes", default="butd,mcan-small,butd-clipfeat", help="VQA recipes to time (their full model sizes)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per cached feed (online: a quarter, at least 1)")
    ap.add_argument("--precision", choices=("auto", "fp32"), default="auto",
                    help="auto: the trainer's autocast (bfloat16 on CPUs that have it); fp32: none")
    args = ap.parse_args(argv)
    images = args.images or (32 if args.quick else 256)
    repeats = args.repeats or (1 if args.quick else 3)
    steps_cached = args.steps or (4 if args.quick else 20)
    steps_online = max(1, steps_cached // 4)
    recipes = args.recipes.split(",")

    import torch

    from clipfeat.pipeline.presets import get_preset
    from clipfeat.trainers.config import apply_overrides
    from clipfeat.trainers.device import autocast_dtype
    from clipfeat.trainers.optim import make_optimizer
    from clipfeat.trainers.task import TASKS
    from clipfeat.trainers.vqa.data import question_text
    from clipfeat.trainers.vqa.models import build_model
    from clipfeat.trainers.vqa.train import VQAConfig

    model_name = args.model or (get_preset(args.preset).model if args.preset else "RN50")

    torch.set_num_threads(os.cpu_count() or 1)
    dtype = autocast_dtype(torch.device("cpu"), args.precision == "auto")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store, spec = build(tmp, images, model_name, args.preset)
        feeds = Feeds(tmp, store, spec, args.batch_size)
        print(f"setup: {images} images, {len(feeds.split)} questions, store {store} ({time.perf_counter() - t0:.0f} s)",
              file=sys.stderr, flush=True)
        results: dict[str, dict[str, list[float]]] = {}
        flops: dict[str, tuple[float, float]] = {}  # model -> (step, online encoder) per question
        for name in recipes:  # the recipe's model at its size, its optimizer, loss and clipping
            cfg = apply_overrides(VQAConfig(), {**TASKS["vqa"].recipes()[name].config, "min_answer_count": 1, "glove": ""})
            torch.manual_seed(0)
            model = build_model(cfg, vocab_size=len(feeds.qvocab), num_answers=len(feeds.avocab),
                                channels=feeds.store.meta.layout.grid_channels,
                                left_padded=question_text(cfg.question_text).pad_left).train()
            optimizer = make_optimizer(model, cfg)
            r = results.setdefault(name, {"store": [], "ram": [], "online": []})
            flops[name] = flops_per_sample(feeds, model, optimizer, feeds.order(0)[0], dtype)
            kw = dict(dtype=dtype, loss_kind=cfg.loss, clip=cfg.grad_clip)
            for rep in range(repeats):
                order = [b for e in range(64) for b in feeds.order(rep * 64 + e)][: steps_cached + 1]  # enough batches
                cached = order[: steps_cached + 1]
                r["store"].append(rate(feeds, model, optimizer, cached, feeds.from_store, **kw))
                r["ram"].append(rate(feeds, model, optimizer, cached, feeds.from_ram, **kw))
                r["online"].append(rate(feeds, model, optimizer, order[: steps_online + 1], feeds.decoded, prefetch=2,
                                        then=feeds.online, **kw))
                print(f"  {name} repeat {rep + 1}: " + ", ".join(f"{k} {v[-1]:.1f}/s" for k, v in r.items()),
                      file=sys.stderr, flush=True)

    med = {m: {k: statistics.median(v) for k, v in r.items()} for m, r in results.items()}
    hw = feeds.store.meta.layout.grid_hw
    print(f"\nVQA trainer input pipeline, {model_name} grids {hw[0]}x{hw[1]}{' (' + args.preset + ')' if args.preset else ''}, "
          f"{images} images, batch {args.batch_size}, {os.cpu_count()} CPU threads, "
          f"{str(dtype).removeprefix('torch.') if dtype else 'float32'}, median of {repeats}")
    print(f"{'recipe':<15}{'store /s':>10}{'RAM /s':>10}{'online /s':>11}{'store/online':>14}{'store/RAM':>11}")
    for m, v in med.items():
        print(f"{m:<15}{v['store']:>10.1f}{v['ram']:>10.1f}{v['online']:>11.2f}{v['store'] / v['online']:>14.1f}"
              f"{v['store'] / v['ram']:>11.3f}")
    # What the cache can buy is bounded by arithmetic: online, a question costs the step plus
    # its share of RN50 forwards; cached, the step alone. At equal FLOP/s on both sides the
    # speed-up is (step + encoder) / step, so a 20x speed-up needs a step of <= encoder / 19.
    enc_name = model_name[:6]
    print(f"\n{'recipe':<15}{'step GFLOP/q':>13}{enc_name + ' GFLOP/q':>16}{'FLOP ratio':>11}{'step GFLOP/s':>13}"
          f"{enc_name + ' GFLOP/s':>16}")
    for m, (step, enc) in flops.items():
        v = med[m]
        enc_rate = enc / (1 / v["online"] - 1 / v["store"])  # the online feed's extra seconds per question
        print(f"{m:<15}{step / 1e9:>13.3f}{enc / 1e9:>16.3f}{(step + enc) / step:>11.1f}{step * v['store'] / 1e9:>13.1f}"
              f"{enc_rate / 1e9:>16.1f}")
    first = recipes[0]
    print(f"a 20x speed-up at equal FLOP/s needs a step of <= {flops[first][1] / 19 / 1e9:.3f} GFLOP per question")
    d = med[first]
    out = {
        "cached_vs_online_speedup": round(d["store"] / d["online"], 2),
        "loader_vs_ram_ratio": round(d["store"] / d["ram"], 3),
        "step_gflop_per_question": round(flops[first][0] / 1e9, 4),
        "online_encoder_gflop_per_question": round(flops[first][1] / 1e9, 4),
        "flop_bound_speedup": round(sum(flops[first]) / flops[first][0], 2),
        "store_samples_s": round(d["store"], 1), "ram_samples_s": round(d["ram"], 1), "online_samples_s": round(d["online"], 2),
        "encoder": model_name, "preset": args.preset, "grid_hw": list(hw), "images": images, "batch_size": args.batch_size,
        "repeats": repeats, "quick": args.quick, "autocast": str(dtype).removeprefix("torch.") if dtype else None,
    }
    for m, v in med.items():
        out[f"cached_vs_online_speedup_{m}"] = round(v["store"] / v["online"], 2)
        out[f"loader_vs_ram_ratio_{m}"] = round(v["store"] / v["ram"], 3)
        out[f"samples_s_{m}"] = round(v["store"], 2)
        out[f"flop_bound_speedup_{m}"] = round(sum(flops[m]) / flops[m][0], 2)
    if args.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
