"""`metric`: the official VQA accuracy, reimplemented to give the same numbers.

Reproduces what GT-Vision-Lab/VQA `PythonEvaluationTools/vqaEvaluation/vqaEval.py` (master,
a013f00) computes, quirks included, so scores here can be quoted next to published ones:

- Every answer has '\\n' and '\\t' replaced by ' ' and is stripped.
- Only when a question's 10 (cleaned) annotator answers are not all the same string are the
  annotator answers *and* the predicted answer normalised (punctuation, then number words,
  articles and contractions). With unanimous annotators the prediction is compared as is:
  "Yes" scores 0 against ten "yes".
- Accuracy of one question = mean over the 10 annotators of min(1, matches among the other
  annotators / 3). "The other annotators" are the answer records that differ, as dicts, from the
  left-out one; official files give every record a distinct `answer_id`, so that is 9 of them.
- Overall, per-question-type and per-answer-type scores are `round(100 * float(sum(accs)) /
  len(accs), 2)`, summed in the order of the *annotation file*: `VQAEval.__init__` sets
  `self.params = {'question_id': vqa.getQuesIds()}` and `evaluate(quesIds=None)` iterates
  `self.params['question_id']` (vqaEval.py lines 20 and 71), and `VQA.getQuesIds()` returns
  `[ann['question_id'] for ann in self.dataset['annotations']]` (PythonHelperTools/vqaTools/vqa.py
  lines 85 and 93; the same in the Python 3 port c4e6a0e). The order of the results file never
  matters. It shows in the last digit: floats summed in another order can round a mean that lies
  on a tie (x.xx5) the other way.

Normalisation quirks kept on purpose (see `process_punctuation`): a digit-comma-digit anywhere
in the text makes *every* punctuation mark be deleted instead of turned into a space; the period
rule's intended look-behind `(?<!\\d)` is written as a no-op look-ahead `(?!<=\\d)`, so a period
is kept only when a digit follows it ("2.5", "a.5", ".5"); `re.UNICODE` is passed to `sub` as
its *count*, so at most 32 periods are removed. Contraction keys with capitals ("Im", "Ive")
never match because the text is lower-cased first.

Deliberate departures, where the official code asserts, raises a bare KeyError or silently
double counts: results whose question ids differ from the annotations', duplicated question ids,
non-string answers and malformed files raise a one-line `ValueError` saying what to fix.

Prepare annotations once with `load_annotations` and pass the result to `evaluate` every epoch:
the annotator answers are then cleaned and normalised only once; predicted answers go through an
`lru_cache`d `normalize_answer`. Inputs are never mutated (the official code rewrites them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..files import load_json

__all__ = [
    "ARTICLES",
    "COMMA_STRIP_REGEX",
    "CONTRACTIONS",
    "NUMBER_WORDS",
    "PERIOD_STRIP_REGEX",
    "PUNCTUATION",
    "VQAAnnotations",
    "VQAScores",
    "answer_accuracy",
    "evaluate",
    "format_scores",
    "load_annotations",
    "normalize_answer",
    "process_digit_article",
    "process_punctuation",
    "soft_score",
]

# ---------------------------------------------------------------------------------------------
# Tables of the official evaluation (vqaEval.py at a013f00). Facts, reproduced verbatim; keep in
# sync with shared/data/vqa/vqa_eval_tables.json (a test checks it). Note the odd entries kept as
# they are: "somebody'd" -> "somebodyd", identity entries such as "let's", and capitalised keys
# ("Im", "Ive", "Id've", "I'dve") that can never match lower-cased text.
# ---------------------------------------------------------------------------------------------

CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}  # fmt: skip

# Official name: manualMap.
NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip

ARTICLES: tuple[str, ...] = ("a", "an", "the")

# Replaced by ' ' or deleted, in this order. Not in the list: "'", ':', '.', '%', '#', '&', '$', '*'.
PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!",
)  # fmt: skip

PERIOD_STRIP_REGEX = r"(?!<=\d)(\.)(?!\d)"  # sic: `(?!<=\d)` is a look-ahead that never fails
COMMA_STRIP_REGEX = r"(\d)(\,)(\d)"

_PERIOD_STRIP = re.compile(PERIOD_STRIP_REGEX)
_COMMA_STRIP = re.compile(COMMA_STRIP_REGEX)
_PERIOD_STRIP_COUNT = int(re.UNICODE)  # 32: the official code passes re.UNICODE as `count`
_ARTICLE_SET = frozenset(ARTICLES)

_ANNOTATIONS_FORMAT = (
    'expected the official v2_mscoco_*_annotations.json format: {"annotations": [{"question_id": int, '
    '"question_type": str, "answer_type": str, "answers": [{"answer": str, "answer_id": int}, ...]}, ...]}'
)
_QUESTIONS_FORMAT = (
    "expected the official v2_OpenEnded_mscoco_*_questions.json format: "
    '{"questions": [{"question_id": int, ...}, ...]}'
)
_RESULTS_FORMAT = 'expected the official results format: [{"question_id": int, "answer": str}, ...]'

JsonSource = str | os.PathLike[str]  # a path to a JSON file


# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------


def _clean(text: str) -> str:
    """'\\n' and '\\t' to ' ', then strip: applied to every answer before anything else."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text: str) -> str:
    """The official `processPunctuation`.

    Each mark of `PUNCTUATION` is deleted when it is followed or preceded by a space anywhere in
    the *original* text, or when the text contains a digit-comma-digit anywhere (then every mark
    is deleted: "1,000-2,000" -> "10002000"); otherwise it becomes a space ("t-shirt" ->
    "t shirt"). Then periods not followed by a digit are removed, at most 32 of them.
    """
    delete_all = _COMMA_STRIP.search(text) is not None
    out = text
    for p in PUNCTUATION:
        if delete_all or p + " " in text or " " + p in text:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """The official `processDigitArticle`: lower-case, split on whitespace, number words to digits
    ("two" -> "2", "none" -> "0"), drop "a"/"an"/"the", expand contractions ("dont" -> "don't"),
    join with single spaces."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join([CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLE_SET])


@lru_cache(maxsize=1 << 16)
def normalize_answer(text: str) -> str:
    """An answer as the official evaluation compares it when annotators disagree: cleaned
    ('\\n', '\\t' -> ' ', stripped), then `process_punctuation`, then `process_digit_article`.

    Use it to build answer vocabularies so that training targets match what is scored.
    """
    return process_digit_article(process_punctuation(_clean(text)))


# ---------------------------------------------------------------------------------------------
# Accuracy of one question
# ---------------------------------------------------------------------------------------------


def _leave_one_out(result: str, answers: Sequence[str], left_out: Sequence[int]) -> float:
    """Mean over annotators i of min(1, matches among the answers that remain without i / 3).

    `left_out[i]` is how many answers leaving annotator i out removes (1 unless answer records
    are identical dicts). Summed in annotator order with the same types as the official code, so
    the float is bit-identical.
    """
    total = answers.count(result)
    if total == 0:
        return 0.0
    accs = [min(1, (total - (k if a == result else 0)) / 3) for a, k in zip(answers, left_out)]
    return float(sum(accs)) / len(accs)


def answer_accuracy(result: str, gt_answers: Sequence[str]) -> float:
    """Official accuracy (0..1) of the predicted answer `result` against one question's annotator
    answers, including the unanimous-annotator quirk (see the module docstring).

    >>> answer_accuracy("two", ["2", "2", "2", "two", "3", "2", "2", "2", "2", "2"])
    1.0
    """
    if isinstance(gt_answers, str) or not gt_answers:
        raise ValueError("gt_answers must be a non-empty sequence of annotator answer strings")
    gts = [_clean(a) for a in gt_answers]
    res = _clean(result)
    if len(set(gts)) > 1:
        gts = [normalize_answer(a) for a in gts]
        res = normalize_answer(res)
    return _leave_one_out(res, gts, (1,) * len(gts))


def soft_score(count: int, *, num_annotators: int = 10) -> float:
    """Training target for an answer given by `count` of `num_annotators` annotators: the official
    leave-one-out accuracy that answer scores, min(1, matches / 3) averaged over the annotators
    (10 annotators: 0 -> 0, 1 -> 0.3, 2 -> 0.6, 3 -> 0.9, 4 or more -> 1)."""
    if not 0 <= count <= num_annotators:
        raise ValueError(f"count must be between 0 and num_annotators={num_annotators}, got {count}")
    # the `count` annotators who gave it see count-1 matches, the others see count
    return (count * min(1.0, (count - 1) / 3) + (num_annotators - count) * min(1.0, count / 3)) / num_annotators


# ---------------------------------------------------------------------------------------------
# Annotations, prepared once
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Question:
    answers: tuple[str, ...]  # as compared: cleaned, and normalised when annotators disagree
    left_out: tuple[int, ...]  # answers removed when leaving each one out (1 unless identical records)
    normalize: bool  # annotators disagree: normalise the predicted answer too
    question_type: str
    answer_type: str

    def accuracy(self, result: str) -> float:
        res = normalize_answer(result) if self.normalize else _clean(result)
        return _leave_one_out(res, self.answers, self.left_out)


@dataclass(frozen=True)
class VQAAnnotations:
    """Annotations with the annotator answers already cleaned and normalised; make one with
    `load_annotations` and pass it to `evaluate` as often as needed."""

    questions: Mapping[int, _Question]
    choices: Mapping[int, frozenset[str]] | None = None  # "Multiple Choice" task: allowed answers

    @property
    def question_ids(self) -> list[int]:
        return list(self.questions)

    def __len__(self) -> int:
        return len(self.questions)

    def __contains__(self, question_id: object) -> bool:
        return question_id in self.questions


def _is_id(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _examples(ids: Iterable[Any], n: int = 3) -> str:
    """The first few ids, for error messages: "e.g. 1, 5, 9"."""
    ids = list(ids)
    try:
        ids.sort()
    except TypeError:
        pass
    return "e.g. " + ", ".join(repr(i) for i in ids[:n]) if ids else "none"


def _prepare_question(ann: Any, i: int, memo: dict[str, str]) -> tuple[int, _Question]:
    where = f"annotations entry {i}"
    if not isinstance(ann, Mapping):
        raise ValueError(f"{where} is a {type(ann).__name__}, not an object; {_ANNOTATIONS_FORMAT}")
    qid = ann.get("question_id")
    if not _is_id(qid):
        raise ValueError(f"{where} has question_id {qid!r}, not an int; {_ANNOTATIONS_FORMAT}")
    where = f"annotations entry {i} (question_id {qid})"
    for key in ("question_type", "answer_type"):
        if not isinstance(ann.get(key), str):
            raise ValueError(f"{where} has {key} {ann.get(key)!r}, not a string; {_ANNOTATIONS_FORMAT}")
    records = ann.get("answers")
    if not isinstance(records, list) or not records:
        raise ValueError(f"{where} has no non-empty 'answers' list; {_ANNOTATIONS_FORMAT}")
    for r in records:
        if not isinstance(r, Mapping) or not isinstance(r.get("answer"), str):
            raise ValueError(f"{where} has an answer record without a string 'answer': {r!r}; {_ANNOTATIONS_FORMAT}")

    cleaned = [_clean(r["answer"]) for r in records]
    normalize = len(set(cleaned)) > 1
    if normalize:
        answers = []
        for a in cleaned:
            if a not in memo:
                memo[a] = normalize_answer(a)
            answers.append(memo[a])
    else:
        answers = cleaned

    # The official code leaves annotator i out with `item != gtAnsDatum`, a dict comparison made
    # after the answers were rewritten: identical records leave out together.
    ids = [r.get("answer_id") for r in records]
    try:
        distinct = None not in ids and len(set(ids)) == len(ids)
    except TypeError:  # unhashable answer_id: compare the records
        distinct = False
    if distinct:
        left_out = (1,) * len(records)
    else:
        recs = [{**r, "answer": a} for r, a in zip(records, answers)]
        left_out = tuple(sum(other == r for other in recs) for r in recs)

    return qid, _Question(tuple(answers), left_out, normalize, ann["question_type"], ann["answer_type"])


def _question_choices(questions: Any, ids: Mapping[int, Any]) -> Mapping[int, frozenset[str]] | None:
    """Check the questions file against the annotations; return the allowed answers of a
    Multiple Choice questions file (None for Open-Ended)."""
    questions = load_json(questions, "questions", _QUESTIONS_FORMAT)
    if not isinstance(questions, Mapping) or not isinstance(questions.get("questions"), list):
        raise ValueError(f"questions: no 'questions' list; {_QUESTIONS_FORMAT}")
    qids = []
    for i, q in enumerate(questions["questions"]):
        if not isinstance(q, Mapping) or not _is_id(q.get("question_id")):
            raise ValueError(f"questions entry {i} has no int question_id; {_QUESTIONS_FORMAT}")
        qids.append(q["question_id"])
    only_q, only_a = set(qids) - set(ids), set(ids) - set(qids)
    if only_q or only_a:
        raise ValueError(
            f"questions and annotations do not correspond: {len(only_a)} question ids only in the annotations"
            f" ({_examples(only_a)}), {len(only_q)} only in the questions ({_examples(only_q)});"
            " pass the questions file of the same split as the annotations"
        )
    if questions.get("task_type") != "Multiple Choice":
        return None
    choices = {}
    for q in questions["questions"]:
        mc = q.get("multiple_choices")
        if not isinstance(mc, list):
            raise ValueError(
                f"questions: question {q['question_id']} of a Multiple Choice file has no 'multiple_choices' list"
            )
        choices[q["question_id"]] = frozenset(mc)
    return choices


def load_annotations(annotations: Mapping[str, Any] | JsonSource, questions: Any = None) -> VQAAnnotations:
    """Read and prepare official annotations (a v2_mscoco_*_annotations.json dict or path) for
    `evaluate`. `questions` (a v2_OpenEnded_mscoco_*_questions.json dict or path), if given, must
    hold exactly the same question ids; a "Multiple Choice" questions file also restricts each
    answer to the question's `multiple_choices`, as the official loader does."""
    data = load_json(annotations, "annotations", _ANNOTATIONS_FORMAT)
    if not isinstance(data, Mapping) or not isinstance(data.get("annotations"), list):
        raise ValueError(f"annotations: no 'annotations' list; {_ANNOTATIONS_FORMAT}")
    memo: dict[str, str] = {}
    prepared: dict[int, _Question] = {}
    for i, ann in enumerate(data["annotations"]):
        qid, q = _prepare_question(ann, i, memo)
        if qid in prepared:
            raise ValueError(
                f"annotations: question_id {qid} appears more than once (entry {i}); {_ANNOTATIONS_FORMAT}"
            )
        prepared[qid] = q
    choices = None if questions is None else _question_choices(questions, prepared)
    return VQAAnnotations(prepared, choices)


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


@dataclass
class VQAScores:
    """Official VQA accuracies, in percent rounded to 2 decimals (the official `accuracy` and
    `evalQA`); dicts follow the evaluated questions' order (the annotation file's, or
    `question_ids`): `per_question` in that order, the types in the order they first occur."""

    overall: float
    per_answer_type: dict[str, float]
    per_question_type: dict[str, float]
    per_question: dict[int, float]

    def to_json(self) -> dict[str, Any]:
        """The official `VQAEval.accuracy` dict."""
        return {
            "overall": self.overall,
            "perAnswerType": dict(self.per_answer_type),
            "perQuestionType": dict(self.per_question_type),
        }


def read_results(results: Any, *, what: str = "results") -> dict[int, str]:
    """question_id -> answer of an official results list (or a path to one); ValueError, naming
    `what`, on a malformed entry, a non-string answer or a question answered twice."""
    results = load_json(results, what, _RESULTS_FORMAT)
    if not isinstance(results, list):
        raise ValueError(f"{what} is a {type(results).__name__}, not a list; {_RESULTS_FORMAT}")
    answers: dict[int, str] = {}
    duplicated: set[int] = set()
    for i, r in enumerate(results):
        if not isinstance(r, Mapping) or not _is_id(r.get("question_id")):
            raise ValueError(f"{what} entry {i} has no int question_id: {r!r}; {_RESULTS_FORMAT}")
        if not isinstance(r.get("answer"), str):
            raise ValueError(
                f"{what} entry {i} (question_id {r['question_id']}) has answer {r.get('answer')!r},"
                f" not a string; {_RESULTS_FORMAT}"
            )
        if r["question_id"] in answers:
            duplicated.add(r["question_id"])
        answers[r["question_id"]] = r["answer"]
    if duplicated:
        raise ValueError(
            f"{what} answer {len(duplicated)} question ids more than once ({_examples(duplicated)});"
            " give exactly one answer per question"
        )
    return answers


def _mean_percent(values: list[float]) -> float:
    return round(100 * float(sum(values)) / len(values), 2)


def evaluate(
    results: list[dict[str, Any]] | JsonSource,
    annotations: VQAAnnotations | Mapping[str, Any] | JsonSource,
    questions: Mapping[str, Any] | JsonSource | None = None,
    *,
    question_ids: Iterable[int] | None = None,
) -> VQAScores:
    """Official VQA accuracy of `results` ([{"question_id": int, "answer": str}, ...] or a path to
    such a JSON file) against `annotations` (an official annotations dict or path, or a prepared
    `VQAAnnotations` from `load_annotations`, the fast choice when evaluating repeatedly).

    As in the official code the results must answer exactly the annotated questions, and the
    questions are scored (and the means summed) in the annotation file's order, whatever the
    results' order; `question_ids` (the official `quesIds`) restricts the scores to those
    questions, in that order. `questions`, if given, is checked to hold the annotations' question ids.
    Raises ValueError, with what to fix, on mismatching ids and malformed inputs.
    """
    if isinstance(annotations, VQAAnnotations):
        prepared = annotations
        if questions is not None:
            prepared = VQAAnnotations(prepared.questions, _question_choices(questions, prepared.questions))
    else:
        prepared = load_annotations(annotations, questions)
    answers = read_results(results)

    missing = prepared.questions.keys() - answers.keys()
    extra = answers.keys() - prepared.questions.keys()
    if missing or extra:
        raise ValueError(
            f"results do not match the annotations: {len(missing)} annotated questions have no answer"
            f" ({_examples(missing)}) and {len(extra)} answered question ids are not annotated"
            f" ({_examples(extra)}); answer every annotated question exactly once, or evaluate against"
            " annotations filtered to the questions you answered"
        )
    if prepared.choices is not None:
        wrong = [q for q, a in answers.items() if a not in prepared.choices[q]]
        if wrong:
            raise ValueError(
                f"{len(wrong)} answers are not among their question's multiple_choices"
                f" (question ids {_examples(wrong)}); a Multiple Choice result must pick one of them"
            )

    if question_ids is None:
        order = list(prepared.questions)  # the annotation file's order, as the official vqa.getQuesIds()
    else:
        order = list(question_ids)
        unknown = [q for q in order if q not in prepared.questions]
        if unknown:
            raise ValueError(
                f"question_ids: {len(unknown)} ids are not annotated ({_examples(unknown)}); pass a subset of"
                " the annotations' question ids"
            )
        if len(set(order)) != len(order):
            raise ValueError("question_ids contains duplicates; pass each question id once")
    if not order:
        raise ValueError("nothing to evaluate: no questions (empty annotations or question_ids)")

    accs: list[float] = []
    per_question: dict[int, float] = {}
    by_qtype: dict[str, list[float]] = {}
    by_atype: dict[str, list[float]] = {}
    for qid in order:
        q = prepared.questions[qid]
        acc = q.accuracy(answers[qid])
        accs.append(acc)
        by_qtype.setdefault(q.question_type, []).append(acc)
        by_atype.setdefault(q.answer_type, []).append(acc)
        per_question[qid] = round(100 * acc, 2)
    return VQAScores(
        overall=_mean_percent(accs),
        per_answer_type={t: _mean_percent(v) for t, v in by_atype.items()},
        per_question_type={t: _mean_percent(v) for t, v in by_qtype.items()},
        per_question=per_question,
    )


def format_scores(scores: VQAScores) -> str:
    """A plain-text table: overall, then per answer type and per question type (sorted by name)."""
    w = max([len(name) for name in [*scores.per_answer_type, *scores.per_question_type]] + [len("question type") - 2])
    n = len(scores.per_question)
    lines = [f"VQA accuracy {scores.overall:.2f}  ({n} question{'' if n == 1 else 's'})", ""]
    for title, table in (("answer type", scores.per_answer_type), ("question type", scores.per_question_type)):
        lines.append(f"{title:<{w + 2}}{'acc':>8}")
        lines.extend(f"  {name:<{w}}{table[name]:8.2f}" for name in sorted(table))
        lines.append("")
    return "\n".join(lines).rstrip("\n")
