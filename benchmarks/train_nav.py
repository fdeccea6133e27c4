"""R2R follower speed on the real navigation graphs: environment steps/s and training iterations/s.

Data: the 90 real connectivity graphs and R2R_train.json (default `../shared/data/r2r`),
random [36, 640] float16 view features for every viewpoint (RN50x4's pooled width; the values
do not change the speed), in memory as the trainer holds them.

  env      batches of 64 episodes driven by the expert (observe: the 36 views + candidates as
           tensors, the teacher's action, step), no model: agent steps/s
  train    the trainer's step at the default agent size (EnvDrop: hidden 512, words 256,
           angle features 128): a teacher-forced and a sampled rollout of 64 instructions,
           backward, AdamW: iterations/s, and the share of the iteration spent in the
           environment and feature lookup (observe + teacher + step + batch set-up)

  env_share = environment seconds / iteration seconds      (target < 0.20)

Each figure: the median over --repeats. Run:  python benchmarks/train_nav.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "r2r"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer iterations and repeats (< 1 minute)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder with R2R_train.json and connectivity/")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--dim", type=int, default=640, help="view feature size")
    args = ap.parse_args(argv)
    if not (Path(args.data) / "R2R_train.json").is_file():
        ap.error(f"{args.data} has no R2R_train.json; pass --data DIR with the R2R files and connectivity/")
    repeats = args.repeats or (1 if args.quick else 3)
    iters = 3 if args.quick else 10

    import numpy as np
    import torch

    from clipfeat.trainers.optim import make_optimizer
    from clipfeat.trainers.nav.data import PanoFeatures, build_vocab, encode_instructions, load_split
    from clipfeat.trainers.nav.env import World, make_batch
    from clipfeat.trainers.nav.graphs import load_graphs
    from clipfeat.trainers.nav.models import Follower
    from clipfeat.trainers.nav.train import NavConfig, rollout

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    graphs = load_graphs(Path(args.data) / "connectivity")
    keys = [f"{s}_{v}" for s, g in graphs.items() for v in g.viewpoints]
    feats = PanoFeatures(torch.randn(len(keys), 36, args.dim, generator=torch.Generator().manual_seed(0)).half(), keys)
    world = World(graphs, feats)
    train = load_split(args.data, "train")
    vocab = build_vocab(train)
    tokens = encode_instructions(train, vocab, 80)
    print(f"setup: {len(graphs)} scans, {len(keys)} viewpoints, {len(train)} instructions, "
          f"features {tuple(feats.feats.shape)} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)

    cfg = NavConfig()
    torch.manual_seed(0)
    model = Follower(vocab_size=len(vocab), feat_dim=args.dim, angle_size=cfg.angle_size, word_dim=cfg.word_dim,
                     hidden=cfg.hidden, action_dim=cfg.action_dim, dropout=cfg.dropout, feat_dropout=cfg.feat_dropout)
    optimizer = make_optimizer(model, cfg)
    dev = torch.device("cpu")
    rng = np.random.default_rng(0)
    B = args.batch_size

    def env_rate() -> float:
        steps, t = 0, time.perf_counter()
        for _ in range(iters):
            nb = make_batch(world, train, rng.choice(len(train), B, replace=False))
            while not nb.ended.all():
                nb.observe(dev)
                active = int((~nb.ended).sum())
                nb.step(nb.teacher())
                steps += active
        return steps / (time.perf_counter() - t)

    def train_rate() -> tuple[float, float]:
        env_s, t = 0.0, time.perf_counter()
        for _ in range(iters):
            idx = rng.choice(len(train), B, replace=False)
            tok = torch.from_numpy(tokens[idx])
            model.train()
            loss = 0.0
            for mode in ("teacher", "sample"):
                t_make = time.perf_counter()
                nb = make_batch(world, train, idx)
                env_s += time.perf_counter() - t_make
                loss = loss + rollout(model, nb, tok, dev, mode=mode, labels=True)
                env_s += nb.env_seconds
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        total = time.perf_counter() - t
        return iters / total, env_s / total

    results: dict[str, list[float]] = {"env_steps_per_s": [], "train_iters_per_s": [], "env_share": []}
    env_rate()  # warm-up (first-touch of the feature tensor, allocator)
    for rep in range(repeats):
        results["env_steps_per_s"].append(env_rate())
        it, share = train_rate()
        results["train_iters_per_s"].append(it)
        results["env_share"].append(share)
        print(f"  repeat {rep + 1}: " + ", ".join(f"{k} {v[-1]:.3g}" for k, v in results.items()), file=sys.stderr, flush=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nR2R follower on the real graphs ({len(graphs)} scans), batch {B}, random [36, {args.dim}] features, "
          f"{os.cpu_count()} CPU threads, median of {repeats}")
    print(f"  environment (expert, no model): {med['env_steps_per_s']:,.0f} agent steps/s")
    print(f"  training (teacher + sampled rollout, backward, AdamW; hidden {cfg.hidden}): "
          f"{med['train_iters_per_s']:.2f} iterations/s ({med['train_iters_per_s'] * B:.0f} instructions/s)")
    print(f"  environment + feature lookup share of an iteration: {med['env_share']:.1%} (target < 20%)")
    out = {"env_steps_per_s": round(med["env_steps_per_s"], 1), "train_iters_per_s": round(med["train_iters_per_s"], 3),
           "env_share": round(med["env_share"], 4), "batch_size": B, "dim": args.dim, "scans": len(graphs),
           "repeats": repeats, "quick": args.quick}
    if args.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
