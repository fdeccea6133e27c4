"""GQA's accuracy, as the official `eval.py` (gqadataset.org, evaluate.html) computes it.

- Only questions with `isBalanced` true are scored (every question of the `*_balanced_*` files).
- A question scores 1 when the prediction equals the gold `answer` as a string, exactly: no
  lower-casing, stripping or normalisation on either side.
- `binary` / `open` is a property of the question: open when `types.structural` is "query",
  binary otherwise (verify, logical, choose, compare).
- accuracy, binary and open are means over the scored questions, in percent.

Deliberate departure: where the official script stops with a bare KeyError (a balanced
question with no prediction) or silently keeps the last of duplicated predictions, this
raises a one-line `ValueError` saying what to fix. Consistency, validity, plausibility,
grounding and distribution need files not published for test-dev and are not computed.
No torch here, so `clipfeat eval gqa` starts fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..files import load_json

__all__ = ["GQAScores", "evaluate", "format_scores", "load_questions", "load_results"]


@dataclass
class GQAScores:
    accuracy: float  # percent, over the balanced questions
    binary: float  # percent, questions whose structural type is not "query"
    open: float  # percent, structural type "query"
    counts: dict[str, int] = field(default_factory=dict)  # questions scored: accuracy / binary / open

    def to_json(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "binary": self.binary, "open": self.open}


def load_questions(source: Any) -> dict[str, dict]:
    """A `*_balanced_questions.json` file (path or loaded object): {questionId: {imageId,
    question, answer, types, isBalanced, ...}}."""
    qs = load_json(source, "questions", "expected GQA's {questionId: {imageId, question, answer, types, ...}}")
    if not isinstance(qs, Mapping) or not all(isinstance(q, Mapping) and "question" in q for q in qs.values()):
        raise ValueError("questions must be GQA's {questionId: {imageId, question, answer, types, ...}} object")
    return {str(k): v for k, v in qs.items()}


def load_results(source: Any) -> dict[str, str]:
    """A submission file (path or loaded list) [{"questionId": str, "prediction": str}] -> {qid: prediction}."""
    res = load_json(source, "results", 'expected [{"questionId": ..., "prediction": ...}]')
    if not isinstance(res, list) or not all(isinstance(r, Mapping) and "questionId" in r and "prediction" in r for r in res):
        raise ValueError('results must be a list of {"questionId": ..., "prediction": ...} objects')
    out: dict[str, str] = {}
    for r in res:
        qid = str(r["questionId"])
        if qid in out:
            raise ValueError(f"results hold question {qid} twice; keep one prediction per question")
        if not isinstance(r["prediction"], str):
            raise ValueError(f"results: the prediction of question {qid} is not a string")
        out[qid] = r["prediction"]
    return out


def evaluate(results: Any, questions: Any) -> GQAScores:
    """Score `results` against `questions` (paths or loaded objects)."""
    preds = load_results(results)
    qs = load_questions(questions)
    scored = {"accuracy": [], "binary": [], "open": []}
    missing = []
    for qid, q in qs.items():
        if not q.get("isBalanced", True):
            continue
        if qid not in preds:
            missing.append(qid)
            continue
        if "answer" not in q:
            raise ValueError(f"question {qid} has no answer; score a split with answers (train, val, testdev)")
        score = 1.0 if preds[qid] == q["answer"] else 0.0
        scored["accuracy"].append(score)
        scored["open" if q["types"]["structural"] == "query" else "binary"].append(score)
    if missing:
        raise ValueError(f"results miss {len(missing)} of {len(qs)} questions (e.g. {missing[0]}); predict every question")
    mean = {k: 100.0 * sum(v) / len(v) if v else 0.0 for k, v in scored.items()}
    return GQAScores(mean["accuracy"], mean["binary"], mean["open"], {k: len(v) for k, v in scored.items()})


def format_scores(scores: GQAScores) -> str:
    c = scores.counts
    return "\n".join([f"GQA accuracy {scores.accuracy:.2f}  ({c.get('accuracy', 0)} questions)",
                      f"  binary {scores.binary:8.2f}  ({c.get('binary', 0)})",
                      f"  open   {scores.open:8.2f}  ({c.get('open', 0)})"])
