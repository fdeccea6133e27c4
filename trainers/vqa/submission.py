"""`submission`: the results file the VQA evaluation server (EvalAI, VQA Challenge) takes.

    write_submission(predictions, "DATA/vqa/v2_OpenEnded_mscoco_test2015_questions.json",
                     "runs/vqa/vqa_OpenEnded_mscoco_test2015_vqa_results.json", split="test2015")

The format is the official results format, one JSON list `[{"question_id": int, "answer": str}]`
(visualqa.org/evaluation.html). The questions it must answer are **all 447,793 questions of
test2015** (`v2_OpenEnded_mscoco_test2015_questions.json`), for the Test-Dev phase as well as
Test-Standard and Test-Challenge: test-dev2015 (`v2_OpenEnded_mscoco_test-dev2015_questions.json`)
is a subset of test2015, and each phase only *scores* its own part of the one file. So a file made
from test2015 predictions serves every phase, and a file that answers test-dev2015 alone is refused.

Where this comes from, and how sure it is:

- visualqa.org/challenge.html (GT-Vision-Lab/VQA-Website): the Test-Dev submission procedure "is
  identical to the full test set submission procedure"; a submission's result file holds the
  test-dev split for the Test-Dev phase, test-standard and test-dev for Test-Standard and
  Test-Challenge.
- The VQA challenge's EvalAI evaluation script as published (a template run on dummy splits, its
  real phase table commented in: 'test-dev2015': ['test-dev'], 'test2015': ['test-dev',
  'test-reserve', 'test-challenge', 'test-standard']) loads one annotation file for all phases and
  reads the results with `VQA.loadRes`, which asserts that the results' question ids are exactly
  the annotation file's (GT-Vision-Lab/VQA PythonHelperTools/vqaTools/vqa.py, a013f00, line 164).
- mlfoundations/open_flamingo `open_flamingo/scripts/fill_vqa_testdev_results.py` ("EvalAI
  requires VQAv2 submissions to have predictions for all the questions in the test2015 set, not
  just the test-dev set") and LLaVA's `scripts/convert_vqav2_for_submission.py` pad test-dev
  predictions to every test2015 question before uploading.

The deployed server's own script and its annotation file are not public: that a test-dev-only file
is refused is what those projects document, not something verified here against the server.

File name: the challenge's convention `vqa_OpenEnded_mscoco_{test-dev2015|test2015}_{alg}_results.json`
(visualqa.org/challenge_2016.html; the Codalab server of 2016 required it, EvalAI takes any name).
No torch here: a submission can be checked and written anywhere.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from clipfeat.features.errors import ClipfeatError

from ..files import load_json
from .metric import read_results

__all__ = ["SUBMISSION_SPLITS", "SubmissionError", "TEST_DEV_NOTE", "TEST_SPLIT", "required_question_ids",
           "submission_name", "write_submission"]

TEST_SPLIT = "test2015"  # the question set every phase's file must answer
SUBMISSION_SPLITS = ("test-dev2015", "test2015")  # phases: Test-Dev; Test-Standard and Test-Challenge

# What `clipfeat train vqa` / `clipfeat predict vqa` print for test-dev2015 predictions alone.
TEST_DEV_NOTE = (
    "test-dev2015: no submission file written: the evaluation server takes only files that answer every"
    " test2015 question, for its Test-Dev phase too (as open_flamingo and LLaVA document; not verified against"
    " the server); predict test2015 (predict_splits=test2015, or clipfeat predict vqa --run RUN --split test2015)"
    " and upload its file to either phase"
)

_RESULTS_FORMAT = 'expected the official results format [{"question_id": int, "answer": str}, ...]'
_QUESTIONS_FORMAT = 'expected v2_OpenEnded_mscoco_test2015_questions.json: {"questions": [{"question_id": int, ...}]}'


class SubmissionError(ClipfeatError):
    """A submission the evaluation server would refuse (exit code 2): questions without an answer,
    answers to questions it does not ask, answers given twice, non-string answers."""


def _is_id(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _examples(ids: Iterable[int], n: int = 3) -> str:
    """"e.g. 1, 5, 9": the smallest few ids, for messages."""
    return "e.g. " + ", ".join(str(i) for i in sorted(ids)[:n])


def _load(source: Any, what: str, expected: str) -> Any:
    try:
        return load_json(source, what, expected)
    except ValueError as e:
        raise SubmissionError(str(e)) from None
    except OSError as e:
        raise SubmissionError(f"{what} file {os.fspath(source)!r}: {e.strerror or e}; {expected}") from None


def submission_name(split: str, alg: str) -> str:
    """`vqa_OpenEnded_mscoco_{split}_{alg}_results.json`, the challenge's file name; characters of
    `alg` other than letters, digits and '-' become '-' (the name's '_' separate its fields)."""
    if split not in SUBMISSION_SPLITS:
        raise SubmissionError(f"submission split {split!r}: choose one of {', '.join(SUBMISSION_SPLITS)}")
    alg = re.sub(r"[^A-Za-z0-9-]+", "-", alg).strip("-") or "clipfeat"
    return f"vqa_OpenEnded_mscoco_{split}_{alg}_results.json"


def required_question_ids(questions: Mapping[str, Any] | str | os.PathLike[str]) -> list[int]:
    """The question ids of a questions file (`v2_OpenEnded_mscoco_*_questions.json`, a dict or a
    path) in file order: what a submission must answer."""
    data = _load(questions, "questions", _QUESTIONS_FORMAT)
    if not isinstance(data, Mapping) or not isinstance(data.get("questions"), list):
        raise SubmissionError(f"questions: no 'questions' list; {_QUESTIONS_FORMAT}")
    ids = []
    for i, q in enumerate(data["questions"]):
        if not isinstance(q, Mapping) or not _is_id(q.get("question_id")):
            raise SubmissionError(f"questions entry {i} has no int question_id; {_QUESTIONS_FORMAT}")
        ids.append(q["question_id"])
    if len(set(ids)) != len(ids):
        raise SubmissionError(f"questions: {len(ids) - len(set(ids))} question ids appear twice; {_QUESTIONS_FORMAT}")
    return ids


def write_submission(
    predictions: list[Mapping[str, Any]] | str | os.PathLike[str],
    questions: Mapping[str, Any] | str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    split: str,
) -> Path:
    """Check `predictions` ([{"question_id", "answer"}] or a path to such a JSON file) against the
    questions the server asks and write the file to upload to `path`; returns the path.

    `questions` is test2015's questions file (dict or path): every phase wants all of it (see the
    module docstring). `split` is the phase the file is meant for, "test2015" (Test-Standard,
    Test-Challenge) or "test-dev2015" (Test-Dev): it only names the phase in messages and refuses a
    questions file whose `data_subtype` is not test2015. Each question must be answered exactly
    once with a string, and no other id may appear; otherwise a one-line `SubmissionError` says how
    many are wrong and what to do. The file lists the questions in the questions file's order,
    `question_id` and `answer` only; it is written atomically.
    """
    if split not in SUBMISSION_SPLITS:
        raise SubmissionError(f"submission split {split!r}: choose one of {', '.join(SUBMISSION_SPLITS)}")
    where = f"{split} submission"
    data = _load(questions, "questions", _QUESTIONS_FORMAT)
    subtype = data.get("data_subtype") if isinstance(data, Mapping) else None
    if subtype is not None and subtype != TEST_SPLIT:
        raise SubmissionError(
            f"{where}: the questions file is {subtype}'s; the evaluation server wants every test2015 question"
            f" answered, for test-dev and test-std alike: pass v2_OpenEnded_mscoco_test2015_questions.json"
            f" and predictions for all of it"
        )
    required = required_question_ids(data)

    try:
        answers = read_results(predictions, what="predictions")
    except ValueError as e:
        raise SubmissionError(f"{where}: {e}") from None
    except OSError as e:
        raise SubmissionError(f"predictions file {os.fspath(predictions)!r}: {e.strerror or e}; {_RESULTS_FORMAT}") from None

    missing = set(required) - answers.keys()
    extra = answers.keys() - set(required)
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} of the {len(required)} test2015 questions have no prediction ({_examples(missing)})"
        )
    if extra:
        problems.append(f"{len(extra)} predictions answer ids that are not test2015 questions ({_examples(extra)})")
    if problems:
        raise SubmissionError(
            f"{where}: {' and '.join(problems)}; the evaluation server takes only a file that answers every"
            " test2015 question and nothing else: predict on test2015 with a store that holds all its images"
            " (clipfeat predict vqa --run RUN --split test2015 [--features STORE])"
        )

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps([{"question_id": q, "answer": answers[q]} for q in required]))
    os.replace(tmp, path)
    return path
