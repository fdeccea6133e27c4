"""The VQA evaluation server's file: `write_submission`'s checks, and `clipfeat predict vqa` on a
finished run writing the file that answers every test2015 question."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from clipfeat.pipeline.cli import cli
from clipfeat.trainers.vqa.submission import (
    TEST_DEV_NOTE,
    SubmissionError,
    required_question_ids,
    submission_name,
    write_submission,
)

QUESTIONS = {
    "data_subtype": "test2015",
    "questions": [{"question_id": q, "image_id": q // 10, "question": "What is it?"} for q in (30, 10, 20, 40)],
}


def _preds(ids, answer="yes"):
    return [{"question_id": q, "answer": answer} for q in ids]


# -- write_submission ----------------------------------------------------------------------------


def test_a_complete_set_is_written_in_the_questions_order(tmp_path):
    out = write_submission(_preds([40, 10, 30, 20]), QUESTIONS, tmp_path / "sub.json", split="test2015")
    assert out == tmp_path / "sub.json" and not list(tmp_path.glob("*.tmp"))
    assert json.loads(out.read_text()) == _preds([30, 10, 20, 40])  # question_id and answer only
    # from files too; the test-dev phase wants the same test2015 file
    (tmp_path / "q.json").write_text(json.dumps(QUESTIONS))
    (tmp_path / "p.json").write_text(json.dumps([{**p, "extra": 1} for p in _preds([10, 20, 30, 40], "2")]))
    out = write_submission(tmp_path / "p.json", tmp_path / "q.json", tmp_path / "dev.json", split="test-dev2015")
    assert json.loads(out.read_text()) == _preds([30, 10, 20, 40], "2")
    assert required_question_ids(QUESTIONS) == [30, 10, 20, 40]


@pytest.mark.parametrize("preds,message", [
    (_preds([10, 20]), r"test2015 submission: 2 of the 4 test2015 questions have no prediction \(e\.g\. 30, 40\);"
                       r" .*predict on test2015 .*clipfeat predict vqa --run RUN --split test2015"
                       r" \[--features STORE\]"),
    (_preds([10, 20, 30, 40, 50, 7]), r"2 predictions answer ids that are not test2015 questions \(e\.g\. 7, 50\)"),
    (_preds([10, 20, 30]) + _preds([99]), r"1 of the 4 .*\(e\.g\. 40\) and 1 predictions answer ids .*\(e\.g\. 99\)"),
    (_preds([10, 20, 30, 40, 20, 10]), r"predictions answer 2 question ids more than once \(e\.g\. (10, 20|20, 10)\); give exactly one answer per question"),
    (_preds([10, 20, 30]) + [{"question_id": 40, "answer": 3}],
     r"entry 3 \(question_id 40\) has answer 3, not a string"),
    (_preds([10, 20, 30]) + [{"question_id": "40", "answer": "3"}], r"entry 3 has no int question_id"),
    ({"question_id": 10, "answer": "yes"}, r"predictions is a dict, not a list"),
])
def test_incomplete_extra_duplicate_or_malformed_predictions_are_refused_in_one_line(tmp_path, preds, message):
    path = tmp_path / "sub.json"
    with pytest.raises(SubmissionError, match=message) as e:
        write_submission(preds, QUESTIONS, path, split="test2015")
    assert "\n" not in str(e.value) and not path.exists()


def test_the_questions_must_be_test2015s(tmp_path):
    dev = {**QUESTIONS, "data_subtype": "test-dev2015"}
    with pytest.raises(SubmissionError, match="questions file is test-dev2015's; .*every test2015 question"):
        write_submission(_preds([10, 20, 30, 40]), dev, tmp_path / "sub.json", split="test-dev2015")
    with pytest.raises(SubmissionError, match="choose one of test-dev2015, test2015"):
        write_submission(_preds([10, 20, 30, 40]), QUESTIONS, tmp_path / "sub.json", split="val2014")
    with pytest.raises(SubmissionError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("[{")
        write_submission(tmp_path / "bad.json", QUESTIONS, tmp_path / "sub.json", split="test2015")
    with pytest.raises(SubmissionError, match="no 'questions' list"):
        write_submission(_preds([10]), {"annotations": []}, tmp_path / "sub.json", split="test2015")


def test_submission_name_follows_the_challenge_convention():
    assert submission_name("test2015", "vqa-mcan") == "vqa_OpenEnded_mscoco_test2015_vqa-mcan_results.json"
    assert submission_name("test-dev2015", "my_run 2") == "vqa_OpenEnded_mscoco_test-dev2015_my-run-2_results.json"


# -- clipfeat predict vqa ------------------------------------------------------------------------

SMALL = ["butd.hidden=64", "butd.word_dim=32", "batch_size=128", "min_answer_count=1", "warmup_steps=5", "epochs=1",
         "progress=false"]


def _with_test2015(data: str, folder: Path, extra: tuple[dict, ...] = ()) -> Path:
    """The fixture's files, plus a test2015 questions file in the official format: the val questions
    asked again (a superset of the fixture's test-dev2015, the first 40 of them), and `extra`."""
    folder.mkdir()
    for f in Path(data).glob("*.json"):
        (folder / f.name).symlink_to(f)
    val = json.loads((Path(data) / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    test = {**val, "data_subtype": "test2015", "questions": val["questions"] + list(extra)}
    (folder / "v2_OpenEnded_mscoco_test2015_questions.json").write_text(json.dumps(test))
    return folder


@pytest.mark.slow
def test_predict_a_finished_run_writes_the_test2015_submission(coco_data, tmp_path):
    store, data = coco_data
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", "vqa", "--features", store, "--data", data, "--out", str(run), "--set",
                                 "predict_splits=test-dev2015", *SMALL])
    assert r.exit_code == 0, r.output
    assert (run / "predictions_test-dev2015.json").is_file() and TEST_DEV_NOTE in r.output  # no file: why, in a line
    assert not list(run.glob("vqa_OpenEnded_*"))

    test_data = _with_test2015(data, tmp_path / "data")
    r = CliRunner().invoke(cli, ["predict", "vqa", "--run", str(run), "--split", "test2015", "--data", str(test_data)])
    assert r.exit_code == 0, r.output
    sub = run / "vqa_OpenEnded_mscoco_test2015_run_results.json"
    assert str(sub) in r.output and json.loads(r.output.strip().splitlines()[-1])["files"]["submission"] == str(sub)
    expected = required_question_ids(test_data / "v2_OpenEnded_mscoco_test2015_questions.json")
    got = json.loads(sub.read_text())
    assert [p["question_id"] for p in got] == expected and all(isinstance(p["answer"], str) for p in got)
    assert {p["question_id"] for p in json.loads((run / "predictions_test2015.json").read_text())} == set(expected)
    # the same model gives the same answers to test-dev2015's questions
    dev = {p["question_id"]: p["answer"] for p in json.loads((run / "predictions_test-dev2015.json").read_text())}
    assert dev and all(dev[p["question_id"]] == p["answer"] for p in got if p["question_id"] in dev)

    # a test2015 question whose image is not in the store: predictions, but no file the server would refuse
    missing = _with_test2015(data, tmp_path / "data2",
                             ({"question_id": 10**9, "image_id": 987654321, "question": "Why?"},))
    sub.unlink()
    r = CliRunner().invoke(cli, ["predict", "vqa", "--run", str(run), "--split", "test2015", "--data", str(missing)])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert f"1 of the {len(expected) + 1} test2015 questions have no prediction (e.g. {10**9})" in r.output
    assert not sub.exists()

    # tasks whose trainer has no predict hook say so in one line
    r = CliRunner().invoke(cli, ["predict", "gqa", "--run", str(run), "--split", "testdev"])
    assert r.exit_code == 2 and "clipfeat predict gqa: not supported" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["predict", "vqa", "--run", str(tmp_path), "--split", "test2015"])
    assert r.exit_code == 2 and "no config.json there" in r.output
