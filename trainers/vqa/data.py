"""VQA v2 data over a feature store: files, vocabularies, soft targets, batches.

Files as distributed (in `--data DIR`):
    v2_OpenEnded_mscoco_{split}_questions.json   {"questions": [{question_id, image_id, question}]}
    v2_mscoco_{split}_annotations.json           {"annotations": [{question_id, image_id, question_type,
                                                    answer_type, multiple_choice_answer, answers[10]}]}
for split in train2014, val2014 (annotated) and test-dev2015, test2015 (questions only).

Questions are samples; images are store rows (key = COCO image id). A batch of questions
reads each distinct image of the batch once through the store's batch reader, in the
shard-local order of `features.torch_data.shard_shuffle`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from clipfeat.features import FeatureStore

from ..config import ConfigError
from ..grids import RowBatches, Vocab, read_grids, store_rows
from .metric import normalize_answer, soft_score

__all__ = [
    "PAD",
    "UNK",
    "VQASplit",
    "Vocab",
    "load_split",
    "tokenize",
    "build_question_vocab",
    "build_answer_vocab",
    "encode_questions",
    "encode_split",
    "rows_in_store",
    "answer_prior",
    "Batches",
]

PAD, UNK = "<pad>", "<unk>"
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(question: str) -> list[str]:
    """Lower-cased word tokens; punctuation dropped, "what's" kept as one token."""
    return _TOKEN.findall(question.lower())


def build_question_vocab(questions: Sequence[dict], min_count: int = 1) -> Vocab:
    counts = Counter(t for q in questions for t in tokenize(q["question"]))
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return Vocab([PAD, UNK, *words])


def build_answer_vocab(annotations: Sequence[dict], min_count: int = 9) -> tuple[Vocab, list[str]]:
    """Normalised `multiple_choice_answer`s given for at least `min_count` training questions
    (bottom-up-attention-vqa's rule: 9 on train+val gives the usual 3,129 answers), and for
    each the raw spelling annotators used most, which is what predictions output: the official
    metric compares un-normalised strings when all ten annotators agree ("t-shirt" must not
    come out as "t shirt")."""
    counts: Counter = Counter()
    spellings: dict[str, Counter] = {}
    for a in annotations:
        raw = " ".join(a["multiple_choice_answer"].split())
        norm = normalize_answer(raw)
        counts[norm] += 1
        spellings.setdefault(norm, Counter())[raw] += 1
    answers = sorted((a for a, c in counts.items() if c >= min_count), key=lambda a: (-counts[a], a))
    if not answers:
        raise ConfigError(f"no answer occurs {min_count}+ times in the training split; lower --set min_answer_count")
    surface = [max(spellings[a].items(), key=lambda kv: (kv[1], kv[0]))[0] for a in answers]
    return Vocab(answers), surface


@dataclass
class RawSplit:
    name: str
    questions: list[dict]
    annotations: list[dict] | None  # None for the test splits


def load_split(data_dir: str | Path, split: str) -> RawSplit:
    """The split's questions (required) and annotations (when the file is there)."""
    d = Path(data_dir)
    qpath = d / f"v2_OpenEnded_mscoco_{split}_questions.json"
    apath = d / f"v2_mscoco_{split}_annotations.json"
    if not qpath.is_file():
        raise ConfigError(f"{qpath} not found; --data must hold the VQA v2 question files of split {split}")
    try:
        questions = json.loads(qpath.read_text())["questions"]
        annotations = json.loads(apath.read_text())["annotations"] if apath.is_file() else None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"{qpath.parent}: split {split} is not in the VQA v2 format ({e})") from None
    if annotations is not None:
        by_q = {a["question_id"]: a for a in annotations}
        missing = sum(q["question_id"] not in by_q for q in questions)
        if missing:
            raise ConfigError(f"{apath.name}: {missing} questions of {qpath.name} have no annotation; use matching files")
        annotations = [by_q[q["question_id"]] for q in questions]  # aligned with questions
    return RawSplit(split, questions, annotations)


@dataclass
class VQASplit:
    """A split encoded against the store and the vocabularies; arrays indexed by sample."""

    name: str
    question_ids: np.ndarray  # [Q] int64 (VQA), or str objects (GQA's ids keep their leading zeros)
    rows: np.ndarray  # [Q] int64 store row of the question's image
    tokens: np.ndarray  # [Q, max_tokens] int64, PAD = 0
    target_ptr: np.ndarray  # [Q+1] CSR offsets into target_idx / target_score
    target_idx: np.ndarray  # answer indices with a non-zero soft score
    target_score: np.ndarray  # float32 soft scores (0.3, 0.6, 0.9, 1.0)
    annotations: list[dict] | None  # official annotations of the kept questions (for the metric), None without answers
    skipped: int  # questions dropped because their image has no features in the store

    def __len__(self) -> int:
        return len(self.question_ids)

    def targets(self, idx: np.ndarray, num_answers: int) -> torch.Tensor:
        """Dense soft targets [B, A] for samples `idx`."""
        starts, lens = self.target_ptr[idx], self.target_ptr[idx + 1] - self.target_ptr[idx]
        sample = np.repeat(np.arange(len(idx)), lens)  # batch position of every (answer, score) entry
        entry = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)
        out = torch.zeros(len(idx), num_answers)
        out[torch.from_numpy(sample), torch.from_numpy(self.target_idx[entry])] = torch.from_numpy(self.target_score[entry])
        return out


def rows_in_store(store: FeatureStore, image_ids: Sequence, *, what: str, strict: bool) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the samples whose image has features in the store, their store rows).
    The others are left out (the caller reports the count), or fail with `strict`."""
    keep, rows = store_rows(store, image_ids)
    skipped = len(image_ids) - len(keep)
    if skipped and strict:
        raise ConfigError(
            f"{skipped} of {len(image_ids)} {what} have no image features in {store.url}; "
            "extract those images or drop --strict to skip them"
        )
    return keep, rows


def encode_questions(texts: Sequence[str], qvocab: Vocab, max_tokens: int) -> np.ndarray:
    """Question word ids [Q, max_tokens] (PAD = 0, unknown words UNK; longer questions cut)."""
    tokens = np.zeros((len(texts), max_tokens), dtype=np.int64)
    unk = qvocab.stoi[UNK]
    for j, text in enumerate(texts):
        ids = [qvocab.stoi.get(t, unk) for t in tokenize(text)[:max_tokens]]
        tokens[j, : len(ids)] = ids
    return tokens


def encode_split(
    raw: RawSplit, store: FeatureStore, qvocab: Vocab, avocab: Vocab, *, max_tokens: int, strict: bool
) -> VQASplit:
    """Tokenise, map images to store rows, compute soft targets. Questions whose image is not
    in the store (or failed / not yet extracted) are counted and skipped, or fail with `strict`."""
    keep, rows = rows_in_store(store, [q["image_id"] for q in raw.questions], what=f"{raw.name} questions", strict=strict)
    ptr, tidx, tscore = [0], [], []
    for i in keep:
        if raw.annotations is not None:
            counts = Counter(normalize_answer(a["answer"]) for a in raw.annotations[i]["answers"])
            for ans, c in counts.items():
                if ans in avocab.stoi:
                    tidx.append(avocab.stoi[ans])
                    tscore.append(soft_score(c))
        ptr.append(len(tidx))
    return VQASplit(
        name=raw.name,
        question_ids=np.array([raw.questions[i]["question_id"] for i in keep], dtype=np.int64),
        rows=rows,
        tokens=encode_questions([raw.questions[i]["question"] for i in keep], qvocab, max_tokens),
        target_ptr=np.array(ptr, dtype=np.int64),
        target_idx=np.array(tidx, dtype=np.int64),
        target_score=np.array(tscore, dtype=np.float32),
        annotations=None if raw.annotations is None else [raw.annotations[i] for i in keep],
        skipped=len(raw.questions) - len(keep),
    )


def answer_prior(train: RawSplit) -> dict[str, str]:
    """The answer-prior baseline: question_type -> most common (normalised) training answer."""
    per_type: dict[str, Counter] = {}
    for a in train.annotations or []:
        per_type.setdefault(a["question_type"], Counter())[normalize_answer(a["multiple_choice_answer"])] += 1
    return {t: max(c.items(), key=lambda kv: (kv[1], kv[0]))[0] for t, c in per_type.items()}


class Batches(RowBatches):
    """Batches of a split: {"idx", "grid" [B, cells, C] f16, "mask" [B, cells] bool | None,
    "pos" [B, cells, 4], "tokens" [B, T], "targets" [B, A] (annotated splits)}.

    Each distinct image of a batch is read once (a question batch of 256 touches ~50–250
    images). Training order: `shard_shuffle` over the questions' rows, a function of
    (seed, epoch); evaluation order: the split's order.
    """

    def __init__(self, split: VQASplit, store: FeatureStore, *, batch_size: int, num_answers: int,
                 shuffle: bool, seed: int = 0, buffer_shards: int = 4) -> None:
        super().__init__(split, store, batch_size=batch_size, shuffle=shuffle, seed=seed, buffer_shards=buffer_shards)
        self.num_answers = num_answers

    def __call__(self, epoch: int = 0) -> Iterator[dict]:
        order = self.order(epoch)
        for s in range(0, len(order), self.batch_size):
            yield self.load(order[s : s + self.batch_size])

    def load(self, idx: np.ndarray) -> dict:
        sp = self.split
        batch = {"idx": torch.from_numpy(idx), **read_grids(self.store, sp.rows[idx]), "tokens": torch.from_numpy(sp.tokens[idx])}
        if sp.annotations is not None:
            batch["targets"] = sp.targets(idx, self.num_answers)
        return batch
