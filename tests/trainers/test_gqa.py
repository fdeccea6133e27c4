"""GQA: the metric as the official eval.py computes it, and the task end to end on a synthetic
Visual Genome store with GQA's balanced question files."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from clipfeat.pipeline.cli import cli
from clipfeat.trainers.gqa import evaluate
from clipfeat.trainers.gqa.data import load_split

SMALL = ((160, 120), (120, 160), (144, 144))

QUESTIONS = {  # one of each structural type; the last is not balanced and is never scored
    "01": {"question": "What color is it?", "imageId": "1", "answer": "red", "isBalanced": True,
           "types": {"structural": "query", "semantic": "attr", "detailed": "color"}},
    "02": {"question": "Is there a cat?", "imageId": "1", "answer": "yes", "isBalanced": True,
           "types": {"structural": "verify", "semantic": "obj", "detailed": "exist"}},
    "03": {"question": "Is it red or blue?", "imageId": "2", "answer": "blue", "isBalanced": True,
           "types": {"structural": "choose", "semantic": "attr", "detailed": "chooseAttr"}},
    "04": {"question": "Are both red?", "imageId": "2", "answer": "no", "isBalanced": True,
           "types": {"structural": "logical", "semantic": "attr", "detailed": "same"}},
    "05": {"question": "What is it?", "imageId": "2", "answer": "dog", "isBalanced": False,
           "types": {"structural": "query", "semantic": "cat", "detailed": "categoryThat"}},
}


def _results(**pred):
    return [{"questionId": q, "prediction": p} for q, p in pred.items()]


def test_metric_is_exact_match_over_balanced_questions_binary_unless_query():
    s = evaluate(_results(**{"01": "red", "02": "no", "03": "blue", "04": "no", "05": "cat"}), QUESTIONS)
    assert (s.accuracy, s.binary, s.open) == (75.0, pytest.approx(200 / 3), 100.0)  # 05 is not balanced
    assert s.counts == {"accuracy": 4, "binary": 3, "open": 1}
    # exact strings: no lower-casing or stripping, as eval.py's `predicted == gold`
    s = evaluate(_results(**{"01": "Red", "02": "yes ", "03": "blue", "04": "no"}), QUESTIONS)
    assert s.accuracy == 50.0 and s.open == 0.0
    assert s.to_json() == {"accuracy": 50.0, "binary": pytest.approx(200 / 3), "open": 0.0}


def test_metric_refuses_incomplete_or_duplicated_results():
    with pytest.raises(ValueError, match="results miss 1 of 5 questions .e.g. 04.; predict every question"):
        evaluate(_results(**{"01": "red", "02": "no", "03": "blue"}), QUESTIONS)
    dup = _results(**{"01": "red", "02": "no", "03": "blue", "04": "no"}) + _results(**{"01": "blue"})
    with pytest.raises(ValueError, match="question 01 twice"):
        evaluate(dup, QUESTIONS)
    with pytest.raises(ValueError, match="questionId"):
        evaluate([{"question_id": 1, "answer": "x"}], QUESTIONS)


def test_eval_command_prints_the_scores(tmp_path):
    q, r = tmp_path / "q.json", tmp_path / "r.json"
    q.write_text(json.dumps(QUESTIONS))
    r.write_text(json.dumps(_results(**{"01": "red", "02": "no", "03": "blue", "04": "no"})))
    out = CliRunner().invoke(cli, ["eval", "gqa", "--results", str(r), "--questions", str(q), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == {"accuracy": 75.0, "binary": pytest.approx(200 / 3), "open": 100.0}
    out = CliRunner().invoke(cli, ["eval", "gqa", "--results", str(r), "--questions", str(q)])
    assert out.exit_code == 0 and "GQA accuracy 75.00" in out.output and "binary" in out.output
    r.write_text("[]")
    out = CliRunner().invoke(cli, ["eval", "gqa", "--results", str(r), "--questions", str(q)])
    assert out.exit_code == 2 and "predict every question" in out.output


@pytest.fixture(scope="module")
def gqa_data(tmp_path_factory, tiny_models, ray_local):
    """(VG store, GQA folder): 150 synthetic VG images and their balanced questions."""
    from clipfeat.manifests.synthetic import make_vg
    from clipfeat.pipeline.job import ExtractConfig, run_extract

    root = tmp_path_factory.mktemp("vg")
    make_vg(root, count=150, sizes=SMALL, seed=7, gqa=root / "gqa")
    store = str(tmp_path_factory.mktemp("stores") / "vg-tinyvit128.zarr")
    run_extract(ExtractConfig(out=store, spec=tiny_models["tinyvit128"], dataset="vg", root=str(root), shard_size=64,
                              batch_size=32, device="cpu", workers=1, threads=2, progress=False))
    return store, str(root / "gqa")


def test_synthetic_files_are_in_gqa_format(gqa_data):
    _, data = gqa_data
    raw = load_split(data, "testdev")
    assert raw.answered and len(raw.questions) > 40
    q = raw.questions[0]
    assert set(q) >= {"imageId", "question", "answer", "fullAnswer", "types", "isBalanced", "groups", "equivalent"}
    assert isinstance(q["imageId"], str) and set(q["types"]) == {"structural", "semantic", "detailed"}
    assert any(qid.startswith("0") for qid in raw.question_ids)  # ids keep their leading zeros


@pytest.mark.slow
def test_gqa_learns_beyond_the_answer_prior_and_writes_submission_files(gqa_data, tmp_path):
    """BUTD (the VQA task's model, reused) on GQA: clearly above the answer prior on val;
    testdev predictions in GQA's submission format for every testdev question, scored by the
    same metric `clipfeat eval gqa` uses."""
    from clipfeat.trainers.gqa import main

    store, data = gqa_data
    out = tmp_path / "gqa"
    result = main(["--features", store, "--data", data, "--out", str(out), "--set", "progress=false", "epochs=12",
                   "butd.hidden=128", "butd.word_dim=64", "batch_size=64", "warmup_steps=10", "lr=2e-3"])
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    # best val accuracy over 3 seeds x amp on/off: 48.7-62.3 against the prior's 37.2 (softmax CE;
    # sigmoid BCE stalled at the prior for one seed in three, see gqa_loss)
    assert evals[-1]["baseline"] > 0 and result.best > evals[-1]["baseline"] + 5, evals
    preds = json.loads((out / "predictions_testdev.json").read_text())
    with open(f"{data}/testdev_balanced_questions.json") as f:
        questions = json.load(f)
    assert {p["questionId"] for p in preds} == set(questions) and all(isinstance(p["prediction"], str) for p in preds)
    r = CliRunner().invoke(cli, ["eval", "gqa", "--results", str(out / "predictions_testdev.json"),
                                 "--questions", f"{data}/testdev_balanced_questions.json", "--json"])
    assert r.exit_code == 0 and set(json.loads(r.output)) == {"accuracy", "binary", "open"}
