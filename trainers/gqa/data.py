"""GQA's balanced question files over a store of Visual Genome images.

Files as distributed (in `--data DIR`), one JSON object per split:
    {split}_balanced_questions.json   {questionId: {"imageId", "question", "answer", "fullAnswer",
                                        "types": {"structural", "semantic", "detailed"}, "isBalanced", ...}}
for split in train, val, testdev (answers given), and submission splits without `answer`.

Questions are samples; images are store rows (key = the VG image id, GQA's `imageId`). The
questions become a `VQASplit` with one target per question (the answer, score 1), so the VQA
models, batches and loss serve GQA unchanged.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipfeat.features import FeatureStore

from ..config import ConfigError
from ..grids import Vocab
from ..vqa.data import QUESTION_TEXT, QuestionText, VQASplit, encode_questions, rows_in_store

__all__ = ["GQARaw", "answer_prior", "build_answer_vocab", "encode_split", "load_split", "questions_file"]


@dataclass
class GQARaw:
    name: str
    question_ids: list[str]  # in the file's order
    questions: list[dict]  # the file's records, aligned with question_ids
    answered: bool  # every question has its `answer` (train, val, testdev)


def questions_file(data_dir: str | Path, split: str) -> Path:
    return Path(data_dir) / f"{split}_balanced_questions.json"


def load_split(data_dir: str | Path, split: str) -> GQARaw:
    path = questions_file(data_dir, split)
    if not path.is_file():
        raise ConfigError(f"{path} not found; --data must hold GQA's {split}_balanced_questions.json")
    try:
        obj = json.loads(path.read_text())
        ids = [str(k) for k in obj]
        questions = [obj[k] for k in obj]
        if not all(isinstance(q, dict) and "imageId" in q and "question" in q for q in questions):
            raise KeyError("imageId / question")
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{path} is not GQA's {{questionId: {{imageId, question, answer, ...}}}} format ({e})") from None
    return GQARaw(split, ids, questions, answered=all("answer" in q for q in questions))


def build_answer_vocab(train: GQARaw, min_count: int = 1) -> Vocab:
    """Training answers given at least `min_count` times, most frequent first. GQA's answers are
    already canonical strings (its metric compares them exactly), so they are not normalised."""
    counts = Counter(q["answer"] for q in train.questions)
    answers = sorted((a for a, c in counts.items() if c >= min_count), key=lambda a: (-counts[a], a))
    if not answers:
        raise ConfigError(f"no answer occurs {min_count}+ times in the training split; lower --set min_answer_count")
    return Vocab(answers)


def encode_split(raw: GQARaw, store: FeatureStore, qvocab: Vocab, avocab: Vocab, *, max_tokens: int,
                 strict: bool, text: QuestionText = QUESTION_TEXT["clipfeat"], rules=None) -> VQASplit:
    """Questions whose image is in the store, tokenised; one-hot targets where the answer is a
    class. `annotations` keeps each kept question's record (the metric's input). `rules` (VQA's
    answer normalisations) do not apply: GQA's answers are compared exactly."""
    keep, rows = rows_in_store(store, [q["imageId"] for q in raw.questions], what=f"{raw.name} questions", strict=strict)
    idx = [avocab.stoi.get(raw.questions[i]["answer"], -1) if raw.answered else -1 for i in keep]
    has = np.array(idx) >= 0 if idx else np.zeros(0, dtype=bool)
    return VQASplit(
        name=raw.name,
        question_ids=np.array([raw.question_ids[i] for i in keep], dtype=object),
        rows=rows,
        tokens=encode_questions([raw.questions[i]["question"] for i in keep], qvocab, max_tokens, text)[0],
        target_ptr=np.concatenate([[0], np.cumsum(has)]).astype(np.int64),
        target_idx=np.array([a for a in idx if a >= 0], dtype=np.int64),
        target_score=np.ones(int(has.sum()), dtype=np.float32),
        annotations=[raw.questions[i] for i in keep] if raw.answered else None,
        skipped=len(raw.questions) - len(keep),
    )


def answer_prior(train: GQARaw) -> dict[str, str]:
    """The answer-prior baseline: detailed question type -> most common training answer."""
    per_type: dict[str, Counter] = {}
    for q in train.questions:
        per_type.setdefault(q["types"]["detailed"], Counter())[q["answer"]] += 1
    return {t: max(c.items(), key=lambda kv: (kv[1], kv[0]))[0] for t, c in per_type.items()}
