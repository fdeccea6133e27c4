"""`clipfeat train gqa`: GQA (balanced) with the VQA models on Visual Genome grid features.

    clipfeat train gqa --features features/vg-RN50x4.zarr --data DATA/gqa
    clipfeat train gqa ... --recipe mcan --out runs/gqa-mcan

The VQA task's experiment, with GQA's data and metric in place of VQA v2's: questions from
`{split}_balanced_questions.json`, answer classes from the training answers, one answer per
question and a softmax cross-entropy over the classes (`gqa_loss`); evaluation with GQA's exact-match accuracy (binary / open); predictions in GQA's
submission format `[{"questionId": str, "prediction": str}]`. Read `trainers/vqa/train.py`
for the model, the loss and the loop's side.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import ConfigError, opt
from ..rundir import RunDir
from ..trainer import train
from ..vqa import train as vqa
from ..vqa.data import build_question_vocab
from . import TASK, metric
from .data import GQARaw, answer_prior, build_answer_vocab, encode_split, load_split

__all__ = ["Config", "Experiment", "GQAConfig", "gqa_loss", "main", "prepare"]

METRIC = "accuracy"


@dataclass
class GQAConfig(vqa.VQAConfig):
    # GQA's splits and answer rule; every other key (model sections, optimisation) is VQA's
    train_splits: tuple[str, ...] = opt(("train",), "balanced splits to train on, e.g. train or train,val")
    eval_split: str = opt("val", "balanced split with answers evaluated after every epoch (val or testdev)")
    predict_splits: tuple[str, ...] = opt(("testdev",), "more splits to write submission files for (scored when answered)")
    min_answer_count: int = opt(1, "answer classes: training answers given at least this often")
    max_tokens: int = opt(20, "question length in tokens (GQA's questions run longer than VQA's)")
    loss: str = opt("ce", "ce: softmax cross-entropy over the answer classes (LXMERT's --mce_loss); "
                    "bce: VQA's sigmoid BCE summed over classes (LXMERT's default)")


Config = GQAConfig


def gqa_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """`loss=ce`: softmax cross-entropy against the one answer of each question, averaged over
    questions whose answer is a class (LXMERT's `--mce_loss` for GQA, `src/tasks/gqa.py`; its
    default is BCE). GQA has one gold answer, where VQA's sigmoid per answer models ten
    annotators' soft scores; with one-hot targets BCE first pushes every logit down, and on the
    synthetic set it stalled on the majority answer for one seed in three (CE for none).
    targets: VQA-style dense targets [B, A], one 1 per row (all 0 when the answer is no class)."""
    label = targets.argmax(-1).masked_fill(targets.sum(-1) == 0, -100)  # [B]
    return F.cross_entropy(logits.float(), label, ignore_index=-100)

EXAMPLES = """\
  clipfeat train gqa --features features/vg-RN50x4.zarr --data DATA/gqa --out runs/gqa              # BUTD
  clipfeat train gqa --features features/vg-RN50x4.zarr --data DATA/gqa --out runs/gqa-mcan --recipe mcan
  clipfeat eval gqa --results runs/gqa/predictions_testdev.json --questions DATA/gqa/testdev_balanced_questions.json
  DATA/gqa: {train,val,testdev}_balanced_questions.json; the store: clipfeat extract --dataset vg (GQA's imageId = VG image id)"""


def prepare(cfg: GQAConfig, *, resume) -> GQAConfig:
    if cfg.loss not in ("ce", "bce"):
        raise ConfigError(f"loss must be ce or bce, not {cfg.loss!r}")
    return cfg


class Experiment(vqa.Experiment):
    name = "GQA"
    encode_split = staticmethod(encode_split)

    def load_splits(self) -> tuple[GQARaw, GQARaw]:
        cfg = self.cfg
        parts = [load_split(cfg.data, s) for s in cfg.train_splits]
        if not all(p.answered for p in parts):
            raise ConfigError("train_splits must be splits with answers (train, val)")
        train_raw = GQARaw("+".join(p.name for p in parts), [q for p in parts for q in p.question_ids],
                           [q for p in parts for q in p.questions], answered=True)
        eval_raw = load_split(cfg.data, cfg.eval_split)
        if not eval_raw.answered:
            raise ConfigError(f"eval_split={cfg.eval_split} has no answers; evaluate on val or testdev")
        return train_raw, eval_raw

    def vocabularies(self, train_raw: GQARaw):
        avocab = build_answer_vocab(train_raw, self.cfg.min_answer_count)
        return build_question_vocab(train_raw.questions, text=self.text), avocab, list(avocab.itos)

    def questions(self, split) -> dict[str, dict]:
        """The metric's view of an encoded split: {questionId: question record}."""
        return dict(zip(split.question_ids.tolist(), split.annotations))

    def prior_baseline(self, train_raw: GQARaw) -> float:
        """The answer prior per detailed question type, scored like a model."""
        prior = answer_prior(train_raw)
        top = self.avocab.itos[0]  # the most frequent training answer, for types training never asked
        results = [{"questionId": q, "prediction": prior.get(a["types"]["detailed"], top)}
                   for q, a in self.questions(self.evals).items()]
        return metric.evaluate(results, self.questions(self.evals)).accuracy

    def train_step(self, batch: dict) -> dict:
        logits = vqa.forward(self.model, batch, self.device)
        loss = gqa_loss if self.cfg.loss == "ce" else vqa.vqa_loss
        return {"loss": loss(logits, batch["targets"].to(self.device)), "samples": len(logits)}

    def results(self, batches) -> list[dict]:
        return vqa.predict(self.model, batches, self.surface, self.device, id_key="questionId", answer_key="prediction")

    def evaluate(self, epoch: int) -> dict:
        s = metric.evaluate(self.results(self.eval_batches), self.questions(self.evals))
        return {"accuracy": s.accuracy, "binary": s.binary, "open": s.open, "baseline": self.baseline}

    def predict(self, run: RunDir) -> dict:
        scores = {}
        for split in dict.fromkeys((self.cfg.eval_split, *self.cfg.predict_splits)):
            sp = self.evals if split == self.cfg.eval_split else self.encode(load_split(self.cfg.data, split))
            results = self.results(self.batches(sp, shuffle=False))
            run.write_json(run.predictions(split), results)
            if sp.annotations is not None:
                s = metric.evaluate(results, self.questions(sp))
                scores[split] = s.to_json()
                print(f"{split}:\n{metric.format_scores(s)}")
        return {"baseline_accuracy": self.baseline, "scores": scores}


def main(argv: list[str] | None = None):
    return train(TASK, argv)
