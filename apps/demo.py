"""`make demo`: the whole of clipfeat on built-in synthetic data, in a few minutes on a laptop.

    python -m clipfeat.apps.demo [--dir demo] [--model RN50] [--pretrained openai] [--quick]

1. Writes small datasets in their real on-disk layouts under DIR/data: COCO 2014 (images
   of coloured shapes, captions, VQA v2 questions), Visual Genome (`image_data.json`,
   `VG_100K*/`) with GQA's balanced question files about its images, Flickr30k
   (`flickr30k-images/`, Karpathy's `dataset_flickr30k.json`), and Matterport/R2R
   (connectivity graphs, skyboxes, `R2R_*.json` instructions: every viewpoint's neighbours
   show as coloured landmarks in its panorama, and instructions name the landmarks along the path).
2. `clipfeat extract` on each through a local Ray (R2R: skyboxes rendered into 36 views per
   viewpoint), then `clipfeat info` and `clipfeat verify`.
3. Trains VQA (BUTD), captioning (Transformer, cross-entropy), navigation (EnvDrop-style
   follower), GQA (BUTD on the VG store) and captioning on Flickr30k for short schedules,
   scores them with `clipfeat eval`, and prints a summary of the stores, metrics, run folders
   and plots.

Without --pretrained the encoder's weights are a fixed random initialisation saved to
DIR/MODEL-random.pt (this machine may have no internet): the pipeline, the stores and every
check are real, the features carry only what a random network keeps (colours, layout).
Rerunning skips what is done (extraction resumes, finished training runs are reused).
`--model-config/--checkpoint` run it with another (e.g. a tiny) model; `--quick` shrinks the
data and schedules (the test suite runs the demo that way).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

__all__ = ["main", "paint_skyboxes"]

# (full, quick) sizes
COCO = ({"train2014": 48, "val2014": 16}, {"train2014": 16, "val2014": 8})
VG = (96, 12)  # also GQA's images: its questions come with the VG layout
FLICKR30K = (48, 12)
R2R_SCANS = (6, 3)  # the last one is the unseen-house validation scan
R2R_SIDE = (3, 2)  # viewpoints per scan: side x side
R2R_PATHS = (100, 8)  # paths (one instruction each) per scan
R2R_LANDMARKS = 10  # landmark kinds (each a distinct colour), so each recurs across the training houses
SCHEDULES = (  # --set overrides of each trainer
    {"vqa": ["epochs=8", "batch_size=64", "warmup_steps=10"],
     "gqa": ["epochs=8", "batch_size=64", "warmup_steps=10"],
     "caption": ["epochs=30", "batch_size=8", "warmup_steps=20", "d_model=128", "ff_dim=256", "enc_layers=1", "dec_layers=2",
                 "heads=4", "min_word_count=2", "eval_split=val", "predict_splits=test"],
     "nav": ["epochs=15", "batch_size=16", "hidden=256", "word_dim=64", "angle_size=32", "min_word_count=1", "lr=1e-3",
             "feat_dropout=0.1"]},
    {"vqa": ["epochs=1", "batch_size=32", "warmup_steps=1"],
     "gqa": ["epochs=1", "batch_size=32", "warmup_steps=1"],
     "caption": ["epochs=1", "batch_size=8", "warmup_steps=1", "d_model=32", "ff_dim=64", "enc_layers=1", "dec_layers=1",
                 "heads=2", "min_word_count=1", "eval_split=val", "predict_splits=test", "beam_size=2"],
     "nav": ["epochs=1", "batch_size=8", "hidden=32", "word_dim=16", "angle_size=8", "min_word_count=1"]},
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="demo", help="where data, stores and runs go (default: demo)")
    ap.add_argument("--model", default="RN50", help="open_clip model name (default: RN50)")
    ap.add_argument("--pretrained", default=os.environ.get("PRETRAINED") or None, help="open_clip tag, e.g. openai (needs the internet)")
    ap.add_argument("--checkpoint", help="local weights for --model (instead of a random initialisation)")
    ap.add_argument("--model-config", help="open_clip model config JSON registering --model")
    ap.add_argument("--quick", action="store_true", help="tiny data and one epoch each (what the test suite runs)")
    args = ap.parse_args(argv)
    q = int(args.quick)
    d = Path(args.dir)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local Ray for this process only: no token to set up

    from clipfeat.pipeline.cli import cli

    data = write_data(d / "data", q)
    weights = _weights(args, d)
    stores = {name: str(d / f"{name}-{args.model}.zarr") for name in ("coco", "vg", "r2r", "flickr30k")}
    runs = {task: str(d / "runs" / task) for task in ("vqa", "caption", "nav", "gqa", "caption-flickr30k")}
    extract = ["--model", args.model, *weights, "--device", "auto", "--batch-size", "16"]
    coco, vg, r2r, gqa, flickr = data["coco"], data["vg"], data["r2r"], data["gqa"], data["flickr30k"]
    steps = [
        ["extract", "--dataset", "coco", "--root", coco, "--out", stores["coco"], "--shard-size", "16", *extract],
        ["extract", "--dataset", "vg", "--root", vg, "--out", stores["vg"], "--shard-size", "16", *extract],
        # R2R: a viewpoint is 36 views, so a batch of 72 views is two viewpoints
        ["extract", "--dataset", "r2r", "--root", r2r, "--out", stores["r2r"], "--shard-size", "4",
         *extract[:-2], "--batch-size", "72"],
        ["extract", "--dataset", "flickr30k", "--root", flickr, "--out", stores["flickr30k"], "--shard-size", "16", *extract],
        *(["info", s] for s in stores.values()),
        *(["verify", s] for s in stores.values()),
        ["train", "vqa", "--features", stores["coco"], "--data", coco, *_out(runs["vqa"]), "--set", *SCHEDULES[q]["vqa"]],
        ["eval", "vqa", "--results", f"{runs['vqa']}/predictions_val2014.json",
         "--annotations", f"{coco}/v2_mscoco_val2014_annotations.json"],
        ["train", "caption", "--features", stores["coco"], "--data", coco, *_out(runs["caption"]), "--set", *SCHEDULES[q]["caption"]],
        ["eval", "caption", "--results", f"{runs['caption']}/predictions_test.json", "--annotations", f"{coco}/annotations/captions_val2014.json"],
        ["train", "nav", "--features", stores["r2r"], "--data", r2r, *_out(runs["nav"]), "--set", *SCHEDULES[q]["nav"]],
        ["eval", "nav", "--results", f"{runs['nav']}/predictions_val_unseen.json", "--split-file", f"{r2r}/R2R_val_unseen.json",
         "--connectivity", f"{r2r}/connectivity"],
        # the registries' proofs: a task added as one package (GQA, on the VG store) and a
        # dataset added as one module (Flickr30k, captioned by the caption task)
        ["train", "gqa", "--features", stores["vg"], "--data", gqa, *_out(runs["gqa"]), "--set", *SCHEDULES[q]["gqa"]],
        ["eval", "gqa", "--results", f"{runs['gqa']}/predictions_testdev.json",
         "--questions", f"{gqa}/testdev_balanced_questions.json"],
        ["train", "caption", "--features", stores["flickr30k"], "--data", f"{flickr}/dataset_flickr30k.json",
         *_out(runs["caption-flickr30k"]), "--set", *SCHEDULES[q]["caption"], "train_splits=train"],
    ]
    for step in steps:
        print("\n$ clipfeat " + " ".join(step), flush=True)
        try:
            cli.main(step, prog_name="clipfeat", standalone_mode=False)
        except SystemExit as e:
            if e.code:
                return int(e.code)
    print(summary(stores, runs))
    return 0


def write_data(root: Path, quick: int) -> dict[str, str]:
    """The synthetic datasets under root (kept when present); name -> dataset root."""
    from clipfeat.manifests.synthetic import make_coco, make_flickr30k, make_vg
    from clipfeat.trainers.nav.synthetic import make_nav_task

    out = {name: str(root / name) for name in ("coco", "vg", "r2r", "gqa", "flickr30k")}
    if not os.path.isdir(os.path.join(out["coco"], "val2014")):
        print(f"writing a synthetic COCO 2014 layout to {out['coco']}")
        make_coco(out["coco"], splits=COCO[quick])
    if not os.path.isfile(os.path.join(out["gqa"], "testdev_balanced_questions.json")):
        print(f"writing a synthetic Visual Genome layout to {out['vg']} and GQA questions about it to {out['gqa']}")
        make_vg(out["vg"], count=VG[quick], gqa=out["gqa"])
    if not os.path.isfile(os.path.join(out["flickr30k"], "dataset_flickr30k.json")):
        print(f"writing a synthetic Flickr30k layout to {out['flickr30k']}")
        make_flickr30k(out["flickr30k"], n_images=FLICKR30K[quick])
    if not os.path.isfile(os.path.join(out["r2r"], "R2R_val_unseen.json")):
        print(f"writing a synthetic Matterport/R2R layout to {out['r2r']} (skyboxes, graphs, instructions)")
        task = make_nav_task(out["r2r"], store=False, scans=R2R_SCANS[quick], unseen=1, side=R2R_SIDE[quick],
                             paths_per_scan=R2R_PATHS[quick], landmarks=R2R_LANDMARKS, seed=0)
        paint_skyboxes(out["r2r"], task["sights"], face_size=(256, 64)[quick])
    return out


def paint_skyboxes(root: str, sights: dict, *, face_size: int = 256) -> None:
    """Matterport skybox faces for each `{scan}_{viewpoint}` of a synthetic R2R task: a room
    (floor, walls, ceiling) in which every neighbour shows as a disc of its landmark's colour,
    20 degrees wide in angle, in the direction the agent would walk to reach it (the poses are
    unrotated, so world directions are cube directions)."""
    from matplotlib import colormaps
    from PIL import Image

    from clipfeat.pipeline.panorama import render_skybox

    # the 10 most distinct colours first, then 40 more: [50, 3]
    colours = (255 * np.concatenate([colormaps[m].colors for m in ("tab10", "tab20b", "tab20")])).astype(np.uint8)
    cos_radius = math.cos(math.radians(20))
    for key, seen in sights.items():
        scan, vp = key.split("_")
        folder = os.path.join(root, "v1", "scans", scan, "matterport_skybox_images")
        os.makedirs(folder, exist_ok=True)

        def paint(w: np.ndarray, seen=seen) -> np.ndarray:  # w: unit world directions [..., 3]
            rgb = np.empty(w.shape, np.uint8)
            rgb[:] = (170, 165, 150)  # walls
            rgb[w[..., 2] < -0.35] = (90, 80, 70)  # floor
            rgb[w[..., 2] > 0.6] = (235, 235, 230)  # ceiling
            for direction, landmark in seen:
                rgb[w @ direction > cos_radius] = colours[landmark % len(colours)]
            return rgb

        for i, face in enumerate(render_skybox(paint, None, size=face_size)):
            Image.fromarray(face).save(os.path.join(folder, f"{vp}_skybox{i}_sami.jpg"), quality=90)


def summary(stores: dict[str, str], runs: dict[str, str]) -> str:
    """The closing table: what each store holds, what each model scored, where things are."""
    from clipfeat.features import open_store

    lines = ["", "=" * 78, "clipfeat demo: summary", "", "stores"]
    for name, url in stores.items():
        st = open_store(url)
        lay = st.meta.layout
        shape = f"pooled {list(lay.item_shape('pooled'))}" + (f", grid {list(lay.item_shape('grid'))}" if lay.has_grid else "")
        size = sum(f.stat().st_size for f in Path(url).rglob("*") if f.is_file())
        lines.append(f"  {url:<34} {len(st):>4} items  {shape:<38} {size / 2**20:6.1f} MiB")
    lines += ["", "trained models (held-out split, best epoch)"]
    vqa = _best_eval(runs["vqa"], "accuracy")
    lines.append(f"  VQA (BUTD)         val2014 accuracy {vqa['accuracy']:.2f} (answer prior: {vqa['baseline']:.2f})")
    cap, cap_val = json.loads(Path(runs["caption"], "scores_test.json").read_text()), _best_eval(runs["caption"], "CIDEr")
    lines.append(f"  captioning         test CIDEr {100 * cap['CIDEr']:.1f}, BLEU-4 {100 * cap['Bleu_4']:.1f} (beam search); "
                 f"val CIDEr-D {100 * cap_val['CIDEr']:.1f} (best fixed caption: {100 * cap_val['baseline']:.1f})")
    example = json.loads(Path(runs["caption"], "predictions_test.json").read_text())[0]
    lines.append(f"                     e.g. image {example['image_id']}: \"{example['caption']}\"")
    nav = _best_eval(runs["nav"], "success_rate")
    lines.append(f"  navigation         val_unseen (a new house) success rate {nav['success_rate']:.2f}, SPL {nav['spl']:.2f}, "
                 f"navigation error {nav['nav_error']:.1f} m")
    gqa = _best_eval(runs["gqa"], "accuracy")
    lines.append(f"  GQA (BUTD, VG)     val accuracy {gqa['accuracy']:.2f} (binary {gqa['binary']:.2f}, open {gqa['open']:.2f}; "
                 f"answer prior: {gqa['baseline']:.2f})")
    fl = _best_eval(runs["caption-flickr30k"], "CIDEr")
    lines.append(f"  Flickr30k captions val CIDEr-D {100 * fl['CIDEr']:.1f} (best fixed caption: {100 * fl['baseline']:.1f})")
    lines += ["", "run folders (config.json, metrics.jsonl, checkpoints, predictions, curve.png)"]
    lines += [f"  {task:<17} {path:<40} plot: {path}/curve.png" for task, path in runs.items()]
    lines.append("=" * 78)
    return "\n".join(lines)


def write_random_weights(model: str, path: str) -> None:
    import open_clip
    import torch

    torch.manual_seed(0)
    torch.save(open_clip.create_model(model).state_dict(), path)


def _weights(args, d: Path) -> list[str]:
    if args.pretrained:
        return ["--pretrained", args.pretrained]
    cfg = ["--model-config", args.model_config] if args.model_config else []
    if args.checkpoint:
        return [*cfg, "--checkpoint", args.checkpoint]
    ckpt = d / f"{args.model}-random.pt"
    if not ckpt.exists():
        print(f"no --pretrained: saving a seeded random {args.model} to {ckpt} (offline demo; features are not meaningful)")
        d.mkdir(parents=True, exist_ok=True)
        write_random_weights(args.model, str(ckpt))
    return [*cfg, "--checkpoint", str(ckpt)]


def _out(run: str) -> list[str]:
    """Resume a run that exists (a finished one is reused), else start it."""
    return ["--resume", run] if os.path.exists(os.path.join(run, "ckpt_latest.pt")) else ["--out", run]


def _best_eval(run: str, metric: str) -> dict:
    """The eval record of the run's best epoch in metrics.jsonl (every record carries `best`)."""
    records = [json.loads(line) for line in Path(run, "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    return next((r for r in evals if r[metric] == evals[-1]["best"]), evals[-1])


if __name__ == "__main__":
    sys.exit(main())
