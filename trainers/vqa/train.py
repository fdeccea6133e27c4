"""`clipfeat train vqa`: a VQA v2 model trained on cached CLIP grid features.

    clipfeat train vqa --features features/coco-RN50x4.zarr --data DATA/vqa
    clipfeat train vqa ... --set model=mcan epochs=13 --out runs/mcan
    clipfeat train vqa --resume runs/mcan            # continue after a crash or with more epochs

Read top to bottom: config → data (vocabularies from the training split, soft targets,
questions mapped to store rows) → model → loss → evaluation with the official metric → the
shared loop (`trainers.core.fit`) → predictions of the best checkpoint in the official
results format `[{"question_id": int, "answer": str}]`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from clipfeat.features import open_store

from ..core import (
    autocast,
    ConfigError,
    FitResult,
    RunDir,
    TrainConfig,
    fit,
    load_checkpoint,
    make_optimizer,
    make_scheduler,
    opt,
    parse_args,
    pick_device,
    seed_everything,
)
from . import metric
from .data import Batches, RawSplit, Vocab, answer_prior, build_answer_vocab, build_question_vocab, encode_split, load_split
from .models import build_model

__all__ = ["VQAConfig", "forward", "main", "predict", "vqa_loss"]

DEFAULT_LR = {"butd": 2e-3, "mcan": 1e-4}


@dataclass
class VQAConfig(TrainConfig):
    # data
    train_splits: tuple[str, ...] = opt(("train2014",), "splits to train on (comma-separated), e.g. train2014,val2014")
    eval_split: str = opt("val2014", "annotated split evaluated after every epoch")
    predict_splits: tuple[str, ...] = opt((), "extra splits to write predictions for, e.g. test-dev2015,test2015")
    min_answer_count: int = opt(9, "keep answers given for at least this many training questions")
    max_tokens: int = opt(14, "question length in tokens (longer ones are cut)")
    buffer_shards: int = opt(4, "store shards mixed together when shuffling (read locality vs. randomness)")
    # model
    model: str = opt("butd", "butd (GRU + top-down attention) or mcan (MCAN-small encoder-decoder)")
    word_dim: int = opt(300, "word embedding size")
    hidden: int = opt(1024, "butd: GRU and fusion size")
    d_model: int = opt(512, "mcan: transformer width")
    layers: int = opt(6, "mcan: encoder and decoder depth")
    heads: int = opt(8, "mcan: attention heads")
    ff_dim: int = opt(2048, "mcan: feed-forward size")
    dropout: float = opt(0.1, "dropout in attention (both) and transformer blocks (mcan)")
    classifier_dropout: float = opt(0.5, "butd: dropout before the answer classifier")
    use_pos: bool = opt(True, "append each grid cell's box (x0, y0, x1, y1) to its feature")
    # optimisation (overrides of the shared defaults)
    lr: float = opt(0.0, "peak learning rate; 0 = the model's default (butd 2e-3, mcan 1e-4)")
    epochs: int = opt(13, "passes over the training questions")
    batch_size: int = opt(256, "questions per step")


def vqa_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy against soft scores, summed over answers, averaged over questions
    (bottom-up-attention-vqa's loss)."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="sum") / len(logits)


def forward(model, batch: dict, device: torch.device) -> torch.Tensor:
    """Answer logits [B, A] for a batch of `Batches` (features moved to `device` as float32)."""
    mask = batch["mask"]
    return model(
        batch["grid"].to(device, torch.float32, non_blocking=True),
        None if mask is None else mask.to(device),
        batch["pos"].to(device),
        batch["tokens"].to(device),
    )


@torch.no_grad()
def predict(model, batches: Batches, answers: list[str], device: torch.device) -> list[dict]:
    """Official results format, one entry per question of the split, in split order.
    `answers`: the output string of each answer class."""
    model.eval()
    out = []
    qids = batches.split.question_ids
    for batch in batches():
        best = forward(model, batch, device).argmax(-1).cpu().numpy()
        out += [{"question_id": int(qids[i]), "answer": answers[a]} for i, a in zip(batch["idx"].numpy(), best)]
    return out




def _merge(raws: list[RawSplit]) -> RawSplit:
    anns = [a for r in raws for a in (r.annotations or [])]
    if any(r.annotations is None for r in raws):
        raise ConfigError("train_splits must be annotated splits (train2014, val2014)")
    return RawSplit("+".join(r.name for r in raws), [q for r in raws for q in r.questions], anns)


# `clipfeat train vqa --help` shows these above the config keys
EXAMPLES = """\
  clipfeat train vqa --features features/coco-RN50x4.zarr --data DATA/vqa --out runs/vqa     # BUTD
  clipfeat train vqa --features features/coco-RN50x4.zarr --data DATA/vqa --out runs/vqa-mcan --set model=mcan
  clipfeat train vqa --resume runs/vqa --set epochs=20     # continue a run, or extend a finished one
  DATA/vqa: v2_OpenEnded_mscoco_{split}_questions.json and v2_mscoco_{split}_annotations.json"""


def main(argv: list[str] | None = None) -> FitResult:
    args = parse_args(argv, VQAConfig, prog="clipfeat train vqa", examples=EXAMPLES,
                      description="Train a VQA v2 model (BUTD or MCAN) on cached CLIP grid features.")
    cfg: VQAConfig = args.config
    cfg = dataclasses.replace(cfg, lr=cfg.lr or DEFAULT_LR.get(cfg.model, 1e-3))
    run = RunDir.create(cfg.out_dir, "vqa", resume=args.resume is not None)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)

    # -- data ---------------------------------------------------------------------------------
    store = open_store(cfg.features, allow_partial=True)  # partial: train on what is extracted so far
    layout = store.meta.layout
    if layout.grid_channels is None or layout.views:
        raise ConfigError(f"{cfg.features} has no per-image grid features; extract a COCO store with grids")
    train_raw = _merge([load_split(cfg.data, s) for s in cfg.train_splits])
    eval_raw = load_split(cfg.data, cfg.eval_split)
    if eval_raw.annotations is None:
        raise ConfigError(f"eval_split={cfg.eval_split} has no annotations file; evaluate on val2014, predict test splits")
    resume_from = load_checkpoint(run.latest) if args.resume else None
    if resume_from is not None:  # the vocabularies the checkpoint's output layer was built for
        extra = resume_from["extra"]
        qvocab, avocab, surface = Vocab(extra["question_vocab"]), Vocab(extra["answer_vocab"]), extra["answer_surface"]
    else:
        qvocab = build_question_vocab(train_raw.questions)
        avocab, surface = build_answer_vocab(train_raw.annotations, cfg.min_answer_count)
    train = encode_split(train_raw, store, qvocab, avocab, max_tokens=cfg.max_tokens, strict=cfg.strict)
    evals = encode_split(eval_raw, store, qvocab, avocab, max_tokens=cfg.max_tokens, strict=cfg.strict)
    for sp, raw in ((train, train_raw), (evals, eval_raw)):
        note = f" ({sp.skipped} skipped: image not in the store)" if sp.skipped else ""
        print(f"{sp.name}: {len(sp)} of {len(raw.questions)} questions{note}")
    if not len(train) or not len(evals):
        raise ConfigError(f"no questions of {cfg.train_splits} / {cfg.eval_split} have images in {cfg.features}")
    print(f"vocabularies: {len(qvocab)} words, {len(avocab)} answers; run folder {run.path}")
    train_batches = Batches(train, store, batch_size=cfg.batch_size, num_answers=len(avocab), shuffle=True,
                            seed=cfg.seed, buffer_shards=cfg.buffer_shards)
    eval_batches = Batches(evals, store, batch_size=cfg.batch_size, num_answers=len(avocab), shuffle=False)

    # The answer-prior baseline (most common training answer per question type): the floor
    # any model that looks at the image must clear.
    gt = metric.load_annotations({"annotations": evals.annotations})  # prepared once, scored every epoch
    prior = answer_prior(train_raw)
    baseline = metric.evaluate([{"question_id": int(q), "answer": prior.get(a["question_type"], "yes")}
                                for q, a in zip(evals.question_ids, evals.annotations)], gt).overall

    # -- model --------------------------------------------------------------------------------
    model = build_model(cfg, vocab_size=len(qvocab), num_answers=len(avocab), channels=layout.grid_channels).to(device)
    if resume_from is None:  # feature statistics from up to 1,024 training questions' images
        sample = train_batches.load(np.sort(np.random.default_rng(cfg.seed).permutation(len(train))[:1024]))
        model.v_norm.fit(sample["grid"], sample["mask"])
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, total_steps=cfg.epochs * len(train_batches))

    def train_step(batch: dict) -> dict:
        logits = forward(model, batch, device)
        return {"loss": vqa_loss(logits, batch["targets"].to(device)), "samples": len(logits)}

    def evaluate(epoch: int) -> dict:
        scores = metric.evaluate(predict(model, eval_batches, surface, device), gt)
        per_type = {f"acc_{t}": v for t, v in scores.per_answer_type.items()}
        return {"accuracy": scores.overall, **per_type, "baseline": baseline}

    result = fit(
        run=run, cfg=cfg, model=model, optimizer=optimizer, scheduler=scheduler,
        train_batches=train_batches, steps_per_epoch=len(train_batches), train_step=train_step,
        evaluate=evaluate, metric="accuracy", device=device, resume_from=resume_from,
        extra={"question_vocab": qvocab.itos, "answer_vocab": avocab.itos, "answer_surface": surface}, title=f"VQA {cfg.model} on {store.meta.encoder.model}",
    )

    # -- predictions of the best checkpoint -----------------------------------------------------
    model.load_state_dict(load_checkpoint(run.best if run.best.exists() else run.latest)["model"])
    with autocast(device, cfg.amp):  # the precision the logged scores were computed in
        run.write_json(run.predictions(cfg.eval_split), predict(model, eval_batches, surface, device))
        for split in cfg.predict_splits:
            sp = encode_split(load_split(cfg.data, split), store, qvocab, avocab, max_tokens=cfg.max_tokens, strict=cfg.strict)
            batches = Batches(sp, store, batch_size=cfg.batch_size, num_answers=len(avocab), shuffle=False)
            run.write_json(run.predictions(split), predict(model, batches, surface, device))
    summary = {"run": str(run.path), "best_accuracy": result.best, "best_epoch": result.best_epoch,
               "baseline_accuracy": baseline, "train_samples_per_s": round(result.samples_per_s, 1)}
    print(json.dumps(summary))
    return result
