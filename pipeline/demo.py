"""`make demo`: the extraction job end to end on the built-in synthetic COCO data.

    python -m clipfeat.pipeline.demo [--dir demo] [--model RN50] [--pretrained openai]

Writes a small COCO-layout dataset (manifests.synthetic) under DIR/data/coco, then runs
`clipfeat extract` on it into DIR/coco-MODEL.zarr and prints `clipfeat info` and `verify`,
trains VQA (BUTD, 8 short epochs) on the store into DIR/runs/vqa and scores its predictions with
`clipfeat eval vqa`.
Without --pretrained the model's weights are a fixed random initialisation saved to
DIR/MODEL-random.pt (this machine may have no internet): the pipeline, the store and every
check are real, the features carry no meaning. Rerunning resumes/skips what is done.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="demo")
    ap.add_argument("--model", default="RN50")
    ap.add_argument("--pretrained", default=os.environ.get("PRETRAINED") or None, help="open_clip tag (needs the internet)")
    args = ap.parse_args(argv)

    from clipfeat.manifests.synthetic import make_coco

    from .cli import cli

    root = os.path.join(args.dir, "data", "coco")
    if not os.path.isdir(os.path.join(root, "val2014")):
        print(f"writing the synthetic COCO dataset to {root}")
        make_coco(root)
    weights = ["--pretrained", args.pretrained]
    if not args.pretrained:
        ckpt = os.path.join(args.dir, f"{args.model}-random.pt")
        if not os.path.exists(ckpt):
            import open_clip
            import torch

            print(f"no --pretrained: saving a seeded random {args.model} to {ckpt} (offline demo; features are not meaningful)")
            torch.manual_seed(0)
            torch.save(open_clip.create_model(args.model).state_dict(), ckpt)
        weights = ["--checkpoint", ckpt]
    out = os.path.join(args.dir, f"coco-{args.model}.zarr")
    run = os.path.join(args.dir, "runs", "vqa")
    steps = [
        ["extract", "--dataset", "coco", "--root", root, "--model", args.model, *weights, "--out", out,
         "--shard-size", "16", "--batch-size", "16", "--device", "auto"],
        ["info", out],
        ["verify", out],
        ["train", "vqa", "--features", out, "--data", root,
         *(["--resume", run] if os.path.exists(os.path.join(run, "ckpt_latest.pt")) else ["--out", run]),
         "--set", "epochs=8", "batch_size=64", "warmup_steps=10"],
        ["eval", "vqa", "--results", os.path.join(run, "predictions_val2014.json"),
         "--annotations", os.path.join(root, "v2_mscoco_val2014_annotations.json")],
    ]
    for step in steps:
        print("\n$ clipfeat " + " ".join(step), flush=True)
        try:
            cli.main(step, prog_name="clipfeat", standalone_mode=False)
        except SystemExit as e:
            if e.code:
                return int(e.code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
