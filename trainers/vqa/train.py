"""`clipfeat train vqa`: a VQA v2 model trained on cached CLIP grid features.

    clipfeat train vqa --features features/coco-RN50x4.zarr --data DATA/vqa
    clipfeat train vqa ... --recipe mcan --set epochs=13 --out runs/mcan
    clipfeat train vqa --resume runs/mcan            # continue after a crash or with more epochs

Read top to bottom: config → loss → forward and predictions → the experiment (data:
vocabularies from the training split, soft targets, questions mapped to store rows; the
answer-prior baseline; the model; the step; evaluation with the official metric; predictions
of the best checkpoint in the official results format `[{"question_id": int, "answer": str}]`).
The loop, checkpoints and resume are `trainers.trainer.train`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipfeat.features import FeatureStore

from ..config import ConfigError, TrainConfig, opt
from ..grids import require_grids
from ..rundir import RunDir
from ..trainer import feature_rows, train
from . import TASK, metric
from .data import Batches, RawSplit, Vocab, answer_prior, build_answer_vocab, build_question_vocab, encode_split, load_split
from .models import BUTDConfig, MCANConfig, build_model

__all__ = ["Config", "Experiment", "VQAConfig", "forward", "main", "predict", "vqa_loss"]

METRIC = "accuracy"


@dataclass
class VQAConfig(TrainConfig):
    # data
    train_splits: tuple[str, ...] = opt(("train2014",), "splits to train on (comma-separated), e.g. train2014,val2014")
    eval_split: str = opt("val2014", "annotated split evaluated after every epoch")
    predict_splits: tuple[str, ...] = opt((), "extra splits to write predictions for, e.g. test-dev2015,test2015")
    min_answer_count: int = opt(9, "keep answers given for at least this many training questions")
    max_tokens: int = opt(14, "question length in tokens (longer ones are cut)")
    buffer_shards: int = opt(4, "store shards mixed together when shuffling (read locality vs. randomness)")
    # model: the name picks the section its sizes come from
    model: str = opt("butd", "butd (GRU + top-down attention) or mcan (MCAN-small encoder-decoder)")
    use_pos: bool = opt(True, "append each grid cell's box (x0, y0, x1, y1) to its feature")
    butd: BUTDConfig = opt(BUTDConfig(), "BUTD's sizes (model=butd)")
    mcan: MCANConfig = opt(MCANConfig(), "MCAN's sizes (model=mcan)")
    # optimisation (overrides of the shared defaults; the recipes set them)
    lr: float = opt(2e-3, "peak learning rate (AdamW)")
    epochs: int = opt(13, "passes over the training questions")
    batch_size: int = opt(256, "questions per step")


Config = VQAConfig


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
def predict(model, batches: Batches, answers: list[str], device: torch.device, *, id_key: str = "question_id",
            answer_key: str = "answer") -> list[dict]:
    """Results in the official format, one entry per question of the split, in split order:
    [{id_key: question id, answer_key: answer string}]. `answers`: the output string of each class."""
    model.eval()
    out = []
    qids = batches.split.question_ids.tolist()  # Python ints (VQA) or strings (GQA)
    for batch in batches():
        best = forward(model, batch, device).argmax(-1).cpu().numpy()
        out += [{id_key: qids[i], answer_key: answers[a]} for i, a in zip(batch["idx"].numpy(), best)]
    return out


def _merge(raws: list[RawSplit]) -> RawSplit:
    anns = [a for r in raws for a in (r.annotations or [])]
    if any(r.annotations is None for r in raws):
        raise ConfigError("train_splits must be annotated splits (train2014, val2014)")
    return RawSplit("+".join(r.name for r in raws), [q for r in raws for q in r.questions], anns)


# `clipfeat train vqa --help` shows these above the config keys
EXAMPLES = """\
  clipfeat train vqa --features features/coco-RN50x4.zarr --data DATA/vqa --out runs/vqa     # BUTD
  clipfeat train vqa --features features/coco-RN50x4.zarr --data DATA/vqa --out runs/vqa-mcan --recipe mcan
  clipfeat train vqa --resume runs/vqa --set epochs=20     # continue a run, or extend a finished one
  clipfeat train vqa --list-recipes
  DATA/vqa: v2_OpenEnded_mscoco_{split}_questions.json and v2_mscoco_{split}_annotations.json"""


class Experiment:
    """VQA v2 on a store of per-image grids: data, the model, its step and evaluation.

    GQA's experiment subclasses this one and replaces the data hooks (`load_splits`,
    `vocabularies`, `encode`, `prior_baseline`) and the scoring (`evaluate`, `predict`)."""

    name = "VQA"
    encode_split = staticmethod(encode_split)  # raw split -> VQASplit (GQA: its own)

    def __init__(self, cfg: VQAConfig, *, store: FeatureStore, device: torch.device, resume: dict | None) -> None:
        self.cfg, self.store, self.device = cfg, store, device
        channels = require_grids(store)
        train_raw, eval_raw = self.load_splits()
        if resume is not None:  # the vocabularies the checkpoint's output layer was built for
            extra = resume["extra"]
            self.qvocab, self.avocab = Vocab(extra["question_vocab"]), Vocab(extra["answer_vocab"])
            self.surface = extra["answer_surface"]
        else:
            self.qvocab, self.avocab, self.surface = self.vocabularies(train_raw)
        self.train, self.evals = self.encode(train_raw), self.encode(eval_raw)
        if not len(self.train) or not len(self.evals):
            raise ConfigError(f"no questions of {cfg.train_splits} / {cfg.eval_split} have images in {cfg.features}")
        print(f"vocabularies: {len(self.qvocab)} words, {len(self.avocab)} answers")
        self.train_batches = self.batches(self.train, shuffle=True)
        self.eval_batches = self.batches(self.evals, shuffle=False)
        self.steps_per_epoch = len(self.train_batches)
        self.baseline = self.prior_baseline(train_raw)

        self.model = build_model(cfg, vocab_size=len(self.qvocab), num_answers=len(self.avocab), channels=channels).to(device)
        self.extra = {"question_vocab": self.qvocab.itos, "answer_vocab": self.avocab.itos, "answer_surface": self.surface}
        self.title = f"{self.name} {cfg.model} on {store.meta.encoder.model}"
        self.start = None

    # -- data hooks ---------------------------------------------------------------------------------

    def load_splits(self) -> tuple[RawSplit, RawSplit]:
        cfg = self.cfg
        train_raw = _merge([load_split(cfg.data, s) for s in cfg.train_splits])
        eval_raw = load_split(cfg.data, cfg.eval_split)
        if eval_raw.annotations is None:
            raise ConfigError(f"eval_split={cfg.eval_split} has no annotations file; evaluate on val2014, predict test splits")
        return train_raw, eval_raw

    def vocabularies(self, train_raw: RawSplit) -> tuple[Vocab, Vocab, list[str]]:
        """(question words, answer classes, the output string of each answer class)."""
        return (build_question_vocab(train_raw.questions), *build_answer_vocab(train_raw.annotations, self.cfg.min_answer_count))

    def encode(self, raw: RawSplit):
        cfg = self.cfg
        sp = self.encode_split(raw, self.store, self.qvocab, self.avocab, max_tokens=cfg.max_tokens, strict=cfg.strict)
        note = f" ({sp.skipped} skipped: image not in the store)" if sp.skipped else ""
        print(f"{sp.name}: {len(sp)} of {len(raw.questions)} questions{note}")
        return sp

    def prior_baseline(self, train_raw: RawSplit) -> float:
        """The answer-prior baseline (most common training answer per question type): the floor
        any model that looks at the image must clear."""
        self.gt = metric.load_annotations({"annotations": self.evals.annotations})  # prepared once, scored every epoch
        prior = answer_prior(train_raw)
        return metric.evaluate([{"question_id": int(q), "answer": prior.get(a["question_type"], "yes")}
                                for q, a in zip(self.evals.question_ids, self.evals.annotations)], self.gt).overall

    # -- what the trainer calls ---------------------------------------------------------------------

    def batches(self, split, *, shuffle: bool) -> Batches:
        cfg = self.cfg
        return Batches(split, self.store, batch_size=cfg.batch_size, num_answers=len(self.avocab), shuffle=shuffle,
                       seed=cfg.seed, buffer_shards=cfg.buffer_shards)

    def feature_sample(self) -> dict:
        return self.train_batches.load(feature_rows(len(self.train), self.cfg.seed))

    def train_step(self, batch: dict) -> dict:
        logits = forward(self.model, batch, self.device)
        return {"loss": vqa_loss(logits, batch["targets"].to(self.device)), "samples": len(logits)}

    def evaluate(self, epoch: int) -> dict:
        scores = metric.evaluate(predict(self.model, self.eval_batches, self.surface, self.device), self.gt)
        per_type = {f"acc_{t}": v for t, v in scores.per_answer_type.items()}
        return {"accuracy": scores.overall, **per_type, "baseline": self.baseline}

    def predict(self, run: RunDir) -> dict:
        run.write_json(run.predictions(self.cfg.eval_split), predict(self.model, self.eval_batches, self.surface, self.device))
        for split in self.cfg.predict_splits:
            batches = self.batches(self.encode(load_split(self.cfg.data, split)), shuffle=False)
            run.write_json(run.predictions(split), predict(self.model, batches, self.surface, self.device))
        return {"baseline_accuracy": self.baseline}


def main(argv: list[str] | None = None):
    return train(TASK, argv)
