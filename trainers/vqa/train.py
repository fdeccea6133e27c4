"""`clipfeat train vqa`: a VQA v2 model trained on cached CLIP grid features.

    clipfeat train vqa --features features/coco-RN50x4.zarr --data DATA/vqa
    clipfeat train vqa ... --recipe mcan-small --out runs/mcan      # mcan-vqa exactly (butd: bottom-up-attention-vqa)
    clipfeat train vqa --resume runs/mcan            # continue after a crash or with more epochs

Read top to bottom: config → loss → forward and predictions → the experiment (data:
vocabularies from the training split, soft targets, questions mapped to store rows; the
answer-prior baseline; the model; the step; evaluation with the official metric; predictions
of the best checkpoint in the official results format `[{"question_id": int, "answer": str}]`).
The loop, checkpoints and resume are `trainers.trainer.train`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from clipfeat.features import FeatureStore

from ..config import ConfigError, TrainConfig, opt
from ..grids import require_grids
from ..rundir import RunDir
from ..trainer import feature_rows, train
from . import TASK, metric, submission
from .data import (Batches, RawSplit, Vocab, answer_prior, answer_rules, build_answer_vocab, build_question_vocab, encode_split,
                   load_split, question_text)
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
    answer_vocab_splits: tuple[str, ...] = opt((), "annotated splits the answer classes are counted on (default: train_splits)")
    question_vocab_splits: tuple[str, ...] = opt((), "splits whose questions make the word vocabulary (default: train_splits)")
    max_tokens: int = opt(14, "question length in tokens (longer ones are cut)")
    question_text: str = opt("clipfeat", "tokenisation and padding: clipfeat | butd (bottom-up-attention-vqa) | mcan (mcan-vqa)")
    answers: str = opt("clipfeat", "answer classes and soft-target counting: clipfeat | butd | mcan (see vqa/data.py)")
    glove: str = opt("", "word vectors (glove.6B.300d.txt / glove.840B.300d.txt, .zip, .gz, or a spaCy vectors folder) "
                         "that initialise the word embedding; empty: random")
    buffer_shards: int = opt(4, "store shards mixed together when shuffling (read locality vs. randomness)")
    # model: the name picks the section its sizes come from
    model: str = opt("butd", "butd (GRU + top-down attention) or mcan (MCAN-small encoder-decoder)")
    use_pos: bool = opt(True, "append each grid cell's box (x0, y0, x1, y1) to its feature")
    feature_norm: bool = opt(True, "standardise grid channels with training statistics (clipfeat's; the sources feed raw features)")
    butd: BUTDConfig = opt(BUTDConfig(), "BUTD's sizes (model=butd)")
    mcan: MCANConfig = opt(MCANConfig(), "MCAN's sizes (model=mcan)")
    loss: str = opt("bce_per_question", "bce_per_question: BCE summed over answers, mean over questions (bottom-up-attention-vqa) | "
                                        "bce_sum: summed over answers and questions, on sigmoid outputs (mcan-vqa)")
    # optimisation (overrides of the shared defaults; the recipes set them)
    lr: float = opt(2e-3, "peak learning rate")
    epochs: int = opt(13, "passes over the training questions")
    batch_size: int = opt(256, "questions per step")


Config = VQAConfig


def vqa_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str = "bce_per_question") -> torch.Tensor:
    """Binary cross-entropy of logits [B, A] against soft scores [B, A].

    bce_per_question: summed over answers, averaged over questions (bottom-up-attention-vqa
        train.py:9-14: BCE-with-logits mean over B * A, times A).
    bce_sum: summed over answers and questions, computed as the source does on sigmoid
        probabilities (mcan-vqa core/exec.py:60 BCELoss(reduction='sum'), net.py:128 sigmoid;
        torch clamps each log at -100 there).
    """
    logits = logits.float()
    if kind == "bce_per_question":
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / len(logits)
    if kind == "bce_sum":
        return F.binary_cross_entropy(torch.sigmoid(logits), targets, reduction="sum")
    raise ConfigError(f"loss={kind!r}; use bce_per_question or bce_sum")


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


def _merge_questions(raws: list[RawSplit]) -> RawSplit:
    return RawSplit("+".join(r.name for r in raws), [q for r in raws for q in r.questions], None)


def _merge(raws: list[RawSplit]) -> RawSplit:
    anns = [a for r in raws for a in (r.annotations or [])]
    if any(r.annotations is None for r in raws):
        raise ConfigError("train_splits must be annotated splits (train2014, val2014)")
    return RawSplit("+".join(r.name for r in raws), [q for r in raws for q in r.questions], anns)


# `clipfeat train vqa --help` shows these above the config keys
EXAMPLES = """\
  clipfeat train vqa --features features/coco-RN50x4.zarr --data DATA/vqa --out runs/vqa     # BUTD
  clipfeat train vqa --features features/coco-RN50x4.zarr --data DATA/vqa --out runs/vqa-mcan --recipe mcan-small
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
        self.text, self.rules = question_text(cfg.question_text), answer_rules(cfg.answers)
        self._raw: dict[str, RawSplit] = {}  # split -> its parsed files (`raw`)
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

        self.train_samples = len(self.train)  # N of mcan's warm-up thresholds
        self.model = build_model(cfg, vocab_size=len(self.qvocab), num_answers=len(self.avocab), channels=channels,
                                 left_padded=self.text.pad_left).to(device)
        if cfg.glove and resume is None:
            self.init_words()
        self.extra = {"question_vocab": self.qvocab.itos, "answer_vocab": self.avocab.itos, "answer_surface": self.surface}
        self.title = f"{self.name} {cfg.model} on {store.meta.encoder.model}"
        self.start = None

    # -- data hooks ---------------------------------------------------------------------------------

    def raw(self, split: str) -> RawSplit:
        """A split's files, parsed once per experiment (the vocabularies and the training /
        evaluation data name the same splits: the references count on train + val)."""
        if split not in self._raw:
            self._raw[split] = load_split(self.cfg.data, split)
        return self._raw[split]

    def load_splits(self) -> tuple[RawSplit, RawSplit]:
        cfg = self.cfg
        train_raw = _merge([self.raw(s) for s in cfg.train_splits])
        eval_raw = self.raw(cfg.eval_split)
        if eval_raw.annotations is None:
            raise ConfigError(f"eval_split={cfg.eval_split} has no annotations file; evaluate on val2014, predict test splits")
        return train_raw, eval_raw

    def vocabularies(self, train_raw: RawSplit) -> tuple[Vocab, Vocab, list[str]]:
        """(question words, answer classes, the output string of each answer class). The
        references count answers on train + val and words on every split's questions
        (`answer_vocab_splits`, `question_vocab_splits`); by default both come from training."""
        cfg = self.cfg
        q_raw = _merge_questions([self.raw(s) for s in cfg.question_vocab_splits]) if cfg.question_vocab_splits else train_raw
        a_raw = _merge([self.raw(s) for s in cfg.answer_vocab_splits]) if cfg.answer_vocab_splits else train_raw
        return (build_question_vocab(q_raw.questions, text=self.text),
                *build_answer_vocab(a_raw.annotations, cfg.min_answer_count, rules=self.rules))

    def init_words(self) -> None:
        """The word embedding's rows from `glove` (words it lacks: zero rows, as both references)."""
        from ..glove import init_embedding, load_vectors

        emb = self.model.w_emb
        first = 0 if emb.padding_idx is None else 1  # a padding row stays zero
        words = self.qvocab.itos[first:]
        path = Path(self.cfg.glove)
        if not path.is_absolute() and not path.exists() and (Path(self.cfg.data) / path).exists():
            path = Path(self.cfg.data) / path  # the recipes name the file; it may sit next to the VQA files
        vectors, found = load_vectors(path, words, dim=emb.embedding_dim, key="glove", progress=self.cfg.progress)
        init_embedding(emb, vectors, slice(first, None))
        print(f"glove: {found} of {len(words)} words initialised from {path}")

    def encode(self, raw: RawSplit):
        cfg = self.cfg
        sp = self.encode_split(raw, self.store, self.qvocab, self.avocab, max_tokens=cfg.max_tokens, strict=cfg.strict,
                               text=self.text, rules=self.rules)
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
                       seed=cfg.seed, buffer_shards=cfg.buffer_shards, drop_last=cfg.drop_last and shuffle)

    def feature_sample(self) -> dict:
        return self.train_batches.load(feature_rows(len(self.train), self.cfg.seed))

    def train_step(self, batch: dict) -> dict:
        logits = forward(self.model, batch, self.device)
        return {"loss": vqa_loss(logits, batch["targets"].to(self.device), self.cfg.loss), "samples": len(logits)}

    def evaluate(self, epoch: int) -> dict:
        scores = metric.evaluate(predict(self.model, self.eval_batches, self.surface, self.device), self.gt)
        per_type = {f"acc_{t}": v for t, v in scores.per_answer_type.items()}
        return {"accuracy": scores.overall, **per_type, "baseline": self.baseline}

    def predict(self, run: RunDir, splits: tuple[str, ...] | None = None) -> dict:
        """The loaded model's predictions_{split}.json for the eval split and `predict_splits`, or for
        `splits` (what `clipfeat predict vqa --run RUN --split S` asks). test2015's are also written as
        the evaluation server's file, which serves its test-dev and test-std phases alike (`submission`)."""
        cfg = self.cfg
        asked = splits is not None
        files = {}
        todo = list(dict.fromkeys((cfg.eval_split, *cfg.predict_splits) if splits is None else splits))
        for split in todo:
            raw = None if split == cfg.eval_split else load_split(cfg.data, split)
            batches = self.eval_batches if raw is None else self.batches(self.encode(raw), shuffle=False)
            results = predict(self.model, batches, self.surface, self.device)
            run.write_json(run.predictions(split), results)
            files[split] = str(run.predictions(split))
            print(f"{split}: {len(results)} predictions in {run.predictions(split)}")
            if split == submission.TEST_SPLIT:
                path = run.path / submission.submission_name(split, run.path.resolve().name)
                try:  # every test2015 question answered: its images must all be in the store
                    submission.write_submission(results, {"questions": raw.questions}, path, split=split)
                except submission.SubmissionError as e:
                    if asked:
                        raise
                    print(f"no submission file: {e}")  # the training run itself succeeded
                else:
                    files["submission"] = str(path)
                    print(f"{split}: evaluation server file (test-dev and test-std phases) in {path}")
            elif split == "test-dev2015" and submission.TEST_SPLIT not in todo:
                print(submission.TEST_DEV_NOTE)
        return {"baseline_accuracy": self.baseline, "files": files}


def main(argv: list[str] | None = None):
    return train(TASK, argv)
