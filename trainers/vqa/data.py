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
from typing import Callable, Iterator, Sequence

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
    "tokenize_butd",
    "tokenize_mcan",
    "QUESTION_TEXT",
    "ANSWER_RULES",
    "question_text",
    "answer_rules",
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
_MCAN_STRIP = re.compile(r"([.,'!?\"()*#:;])")


def tokenize(question: str) -> list[str]:
    """Lower-cased word tokens; punctuation dropped, "what's" kept as one token."""
    return _TOKEN.findall(question.lower())


def tokenize_butd(question: str) -> list[str]:
    """bottom-up-attention-vqa's Dictionary.tokenize (dataset.py:29-40): lower-case, delete
    only "," and "?", split "'s" off as its own token, split on whitespace."""
    return question.lower().replace(",", "").replace("?", "").replace("'s", " 's").split()


def tokenize_mcan(question: str) -> list[str]:
    """mcan-vqa's tokenisation (core/data/data_utils.py:66-71): lower-case, delete
    .,'!?"()*#:; then turn - and / into spaces, split on whitespace."""
    return _MCAN_STRIP.sub("", question.lower()).replace("-", " ").replace("/", " ").split()


@dataclass(frozen=True)
class QuestionText:
    """How question strings become word ids (`question_text` config key)."""

    tokenize: Callable[[str], list[str]]
    pad: str
    unk: str | None  # None: no unknown-word entry (the source's vocabulary covers every split)
    pad_left: bool  # pad at the front (bottom-up-attention-vqa: the GRU's last step is the last word)
    by_frequency: bool  # word order: by count (clipfeat) or first occurrence (the references)


QUESTION_TEXT = {
    "clipfeat": QuestionText(tokenize, PAD, UNK, pad_left=False, by_frequency=True),
    # dataset.py:129-143: cut to 14, padding index in front; no UNK (create_dictionary.py builds
    # the dictionary from train, val, test2015 and test-dev2015 questions)
    "butd": QuestionText(tokenize_butd, PAD, None, pad_left=True, by_frequency=False),
    # data_utils.py:53-81, 132-150: PAD = 0, UNK = 1 (their literal strings are looked up in
    # GloVe), words in order of first occurrence over train, val, test2015 (and VG)
    "mcan": QuestionText(tokenize_mcan, "PAD", "UNK", pad_left=False, by_frequency=False),
}


def question_text(name: str) -> QuestionText:
    try:
        return QUESTION_TEXT[name]
    except KeyError:
        raise ConfigError(f"question_text={name!r}; use one of {', '.join(QUESTION_TEXT)}") from None


def build_question_vocab(questions: Sequence[dict], min_count: int = 1, text: QuestionText = QUESTION_TEXT["clipfeat"]) -> Vocab:
    counts = Counter(t for q in questions for t in text.tokenize(q["question"]))
    words = [w for w, c in counts.items() if c >= min_count]  # Counter keeps first-occurrence order
    if text.by_frequency:
        words.sort(key=lambda w: (-counts[w], w))
    return Vocab([text.pad, *([text.unk] if text.unk else []), *words])


def _mcan_answer(text: str) -> str:
    """mcan-vqa's prep_ans (core/data/ans_punct.py:103-106): the official normalisation, then
    commas deleted."""
    return normalize_answer(text).replace(",", "")


@dataclass(frozen=True)
class AnswerRules:
    """How answers become classes and soft targets (`answers` config key)."""

    vocab_form: Callable[[str], str]  # multiple_choice_answer -> its class string
    target_form: Callable[[str], str]  # each annotator answer -> the string counted for its target


ANSWER_RULES = {
    # the official normalisation on both sides, so targets match what the metric scores
    "clipfeat": AnswerRules(normalize_answer, normalize_answer),
    # tools/compute_softscore.py:178-212 counts the annotators' answers as given (not
    # normalised) against the normalised vocabulary
    "butd": AnswerRules(normalize_answer, lambda a: a),
    "mcan": AnswerRules(_mcan_answer, _mcan_answer),
}


def answer_rules(name: str) -> AnswerRules:
    try:
        return ANSWER_RULES[name]
    except KeyError:
        raise ConfigError(f"answers={name!r}; use one of {', '.join(ANSWER_RULES)}") from None


def build_answer_vocab(annotations: Sequence[dict], min_count: int = 9,
                       rules: AnswerRules = ANSWER_RULES["clipfeat"]) -> tuple[Vocab, list[str]]:
    """Normalised `multiple_choice_answer`s given for at least `min_count` training questions
    (bottom-up-attention-vqa's rule: 9 on train+val gives the usual 3,129 answers), and for
    each the raw spelling annotators used most, which is what predictions output: the official
    metric compares un-normalised strings when all ten annotators agree ("t-shirt" must not
    come out as "t shirt")."""
    counts: Counter = Counter()
    spellings: dict[str, Counter] = {}
    for a in annotations:
        raw = " ".join(a["multiple_choice_answer"].split())
        norm = rules.vocab_form(raw)
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


def encode_questions(texts: Sequence[str], qvocab: Vocab, max_tokens: int,
                     text: QuestionText = QUESTION_TEXT["clipfeat"]) -> tuple[np.ndarray, int]:
    """(question word ids [Q, max_tokens], words dropped). PAD = 0 (at the end, or in front
    with `text.pad_left`); longer questions are cut to their first max_tokens words; unknown
    words become UNK, or are dropped and counted where the vocabulary has no UNK."""
    tokens = np.zeros((len(texts), max_tokens), dtype=np.int64)
    unk = qvocab.stoi[text.unk] if text.unk else None
    dropped = 0
    for j, q in enumerate(texts):
        words = text.tokenize(q)[:max_tokens]
        ids = [qvocab.stoi.get(t, unk) for t in words]
        if unk is None:
            dropped += ids.count(None)
            ids = [i for i in ids if i is not None]
        if text.pad_left:
            tokens[j, max_tokens - len(ids):] = ids
        else:
            tokens[j, : len(ids)] = ids
    return tokens, dropped


def encode_split(
    raw: RawSplit, store: FeatureStore, qvocab: Vocab, avocab: Vocab, *, max_tokens: int, strict: bool,
    text: QuestionText = QUESTION_TEXT["clipfeat"], rules: AnswerRules = ANSWER_RULES["clipfeat"],
) -> VQASplit:
    """Tokenise, map images to store rows, compute soft targets. Questions whose image is not
    in the store (or failed / not yet extracted) are counted and skipped, or fail with `strict`.
    Soft score of an answer given c times: min(1, 0.3 c) for 10 annotators (`soft_score`)."""
    keep, rows = rows_in_store(store, [q["image_id"] for q in raw.questions], what=f"{raw.name} questions", strict=strict)
    tokens, dropped = encode_questions([raw.questions[i]["question"] for i in keep], qvocab, max_tokens, text)
    if dropped:
        print(f"{raw.name}: {dropped} words not in the question vocabulary left out (add the split to question_vocab_splits)")
    ptr, tidx, tscore = [0], [], []
    for i in keep:
        if raw.annotations is not None:
            counts = Counter(rules.target_form(a["answer"]) for a in raw.annotations[i]["answers"])
            for ans, c in counts.items():
                if ans in avocab.stoi:
                    tidx.append(avocab.stoi[ans])
                    tscore.append(soft_score(c))
        ptr.append(len(tidx))
    return VQASplit(
        name=raw.name,
        question_ids=np.array([raw.questions[i]["question_id"] for i in keep], dtype=np.int64),
        rows=rows,
        tokens=tokens,
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
                 shuffle: bool, seed: int = 0, buffer_shards: int = 4, drop_last: bool = False) -> None:
        super().__init__(split, store, batch_size=batch_size, shuffle=shuffle, seed=seed, buffer_shards=buffer_shards)
        self.num_answers = num_answers
        self.drop_last = drop_last  # mcan-vqa's DataLoader(drop_last=True): floor(N / B) steps per epoch

    def __len__(self) -> int:
        return len(self.split) // self.batch_size if self.drop_last else super().__len__()

    def __call__(self, epoch: int = 0) -> Iterator[dict]:
        order = self.order(epoch)
        for s in range(0, len(self) * self.batch_size if self.drop_last else len(order), self.batch_size):
            yield self.load(order[s : s + self.batch_size])

    def load(self, idx: np.ndarray) -> dict:
        sp = self.split
        batch = {"idx": torch.from_numpy(idx), **read_grids(self.store, sp.rows[idx]), "tokens": torch.from_numpy(sp.tokens[idx])}
        if sp.annotations is not None:
            batch["targets"] = sp.targets(idx, self.num_answers)
        return batch
