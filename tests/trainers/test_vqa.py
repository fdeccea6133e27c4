"""The VQA trainer and the shared trainer core, end to end on a synthetic store."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from clipfeat.features import open_store
from clipfeat.pipeline.cli import cli
from clipfeat.trainers.config import ConfigError, TrainConfig
from clipfeat.trainers.rundir import load_checkpoint
from clipfeat.trainers.vqa import evaluate
from clipfeat.trainers.vqa.data import build_answer_vocab, build_question_vocab, encode_split, load_split, tokenize
from clipfeat.trainers.vqa.models import BUTD, MCAN
from clipfeat.trainers.vqa.train import main

# Small models and schedules for 2 CPU cores; the defaults are the papers' sizes.
BUTD_SMALL = ["butd.hidden=128", "butd.word_dim=64", "batch_size=64", "min_answer_count=1", "warmup_steps=20"]


def _train(coco_data, out, sets, *extra):
    store, data = coco_data
    return main(["--features", store, "--data", data, "--out", str(out), *extra, "--set", "progress=false", *sets])


# -- config -----------------------------------------------------------------------------------


def test_optimizer_decays_weight_matrices_only_and_fused_matches_the_reference_update():
    """make_optimizer: weight decay on weight matrices only (not biases, norms, embeddings); the
    fused AdamW it picks on CPU makes the same update as torch's reference implementation."""
    from clipfeat.trainers.optim import make_optimizer

    torch.manual_seed(0)
    model = BUTD(vocab_size=20, num_answers=7, channels=12, word_dim=8, hidden=16)
    opt = make_optimizer(model, TrainConfig(lr=1e-2, weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert opt.defaults["fused"] and (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    assert {id(p) for p in decay["params"]} == {id(p) for n, p in model.named_parameters()
                                                 if n.endswith("weight") and p.dim() >= 2 and not n.startswith("w_emb")}
    ref_model = BUTD(vocab_size=20, num_answers=7, channels=12, word_dim=8, hidden=16)
    ref_model.load_state_dict(model.state_dict())
    name, ref_params = {id(p): n for n, p in model.named_parameters()}, dict(ref_model.named_parameters())
    ref = torch.optim.AdamW([{"params": [ref_params[name[id(p)]] for p in g["params"]], "weight_decay": g["weight_decay"]}
                             for g in opt.param_groups], lr=1e-2, foreach=False)
    batch = (torch.randn(4, 6, 12), None, torch.rand(4, 6, 4), torch.tensor([[3, 4, 0]] * 4))
    for m, o in ((model, opt), (ref_model, ref)):
        m.eval()  # no dropout: the same gradients on both sides
        for _ in range(3):
            o.zero_grad()
            m(*batch).square().mean().backward()
            o.step()
    for (n, p), q in zip(model.named_parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=n)


def test_cli_reports_bad_config_in_one_line(coco_data, tmp_path):
    store, data = coco_data
    r = CliRunner().invoke(cli, ["train", "vqa", "--features", store, "--data", data, "--set", "modle=mcan"])
    assert r.exit_code == 2 and "unknown config key 'modle'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["train", "vqa", "--features", store, "--data", str(tmp_path)])
    assert r.exit_code == 2 and "v2_OpenEnded_mscoco_train2014_questions.json not found" in r.output
    r = CliRunner().invoke(cli, ["train", "vqa", "--features", store, "--data", data, "--set", "model=lxmert",
                                 f"out_dir={tmp_path / 'x'}"])
    assert r.exit_code == 2 and "use --set model=butd or model=mcan" in r.output


# -- data -------------------------------------------------------------------------------------


def test_data_soft_targets_tokens_and_missing_images(coco_data, tmp_path):
    store_path, data = coco_data
    store = open_store(store_path)
    raw = load_split(data, "train2014")
    assert tokenize("What's the man's shirt color?") == ["what's", "the", "man's", "shirt", "color"]
    qv = build_question_vocab(raw.questions)
    av, surface = build_answer_vocab(raw.annotations, 1)
    sp = encode_split(raw, store, qv, av, max_tokens=4, strict=True)
    assert len(sp) == len(raw.questions) and sp.skipped == 0 and sp.tokens.shape == (len(sp), 4)
    # soft targets follow the ten answers: 10 agree -> 1.0; 9 of 10 -> 1.0 and the dissent 0.3
    for i, ann in enumerate(sp.annotations):
        t = sp.targets(np.array([i]), len(av))[0]
        answers = [a["answer"] for a in ann["answers"]]
        top = av.stoi[ann["multiple_choice_answer"]]
        majority = answers.count(ann["multiple_choice_answer"])
        assert t[top] == pytest.approx({10: 1.0, 9: 1.0, 8: 1.0, 7: 1.0}[majority])
        if majority == 9:
            other = next(a for a in answers if a != ann["multiple_choice_answer"])
            if other in av.stoi:
                assert t[av.stoi[other]] == pytest.approx(0.3)
    assert "yes" in surface and "2" in surface
    # questions of images that are not in the store: counted and skipped, or an error with strict
    raw.questions.append({"question_id": 10**9, "image_id": 987654321, "question": "What is this?"})
    raw.annotations.append({**raw.annotations[0], "question_id": 10**9, "image_id": 987654321})
    assert encode_split(raw, store, qv, av, max_tokens=14, strict=False).skipped == 1
    with pytest.raises(ConfigError, match="1 of .* questions have no image features"):
        encode_split(raw, store, qv, av, max_tokens=14, strict=True)


@pytest.mark.parametrize("cls", [BUTD, MCAN])
def test_models_ignore_padding_cells(cls):
    """Variable grids (aspect stores) are padded: padded cells must not change the answer."""
    torch.manual_seed(0)
    kw = dict(vocab_size=20, num_answers=7, channels=12, word_dim=8)
    model = (BUTD(**kw, hidden=16) if cls is BUTD else MCAN(**kw, d_model=16, layers=2, heads=2, ff_dim=32)).eval()
    grid, pos = torch.randn(3, 6, 12), torch.rand(3, 6, 4)
    tokens = torch.tensor([[3, 4, 5, 0], [2, 0, 0, 0], [6, 7, 8, 9]])
    mask = torch.ones(3, 6, dtype=torch.bool)
    base = model(grid, mask, pos, tokens)
    padded = torch.cat([grid, 50 * torch.randn(3, 4, 12)], 1)
    pmask = torch.cat([mask, torch.zeros(3, 4, dtype=torch.bool)], 1)
    out = model(padded, pmask, torch.cat([pos, torch.rand(3, 4, 4)], 1), tokens)
    torch.testing.assert_close(out, base, atol=1e-5, rtol=1e-5)
    assert out.shape == (3, 7)


@pytest.mark.parametrize("cls", [BUTD, MCAN])
def test_training_step_under_the_trainers_autocast(cls):
    """One training step in the trainer's precision (bfloat16 autocast where the CPU has it),
    dropout on, padded cells: a finite loss and a gradient for every parameter."""
    from clipfeat.trainers.device import autocast
    from clipfeat.trainers.vqa.train import vqa_loss

    torch.manual_seed(0)
    kw = dict(vocab_size=20, num_answers=7, channels=12, word_dim=8)
    model = (BUTD(**kw, hidden=16) if cls is BUTD else MCAN(**kw, d_model=16, layers=2, heads=2, ff_dim=32)).train()
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[1, 4:] = False
    with autocast(torch.device("cpu")):
        logits = model(torch.randn(4, 6, 12), mask, torch.rand(4, 6, 4), torch.tensor([[3, 4, 0, 0]] * 4))
        loss = vqa_loss(logits, torch.rand(4, 7))
    loss.backward()
    assert torch.isfinite(loss)
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


# -- training ---------------------------------------------------------------------------------


@pytest.mark.slow
# the default recipe (clipfeat's BUTD); the reference recipes `butd` and `mcan-small` learn in
# tests/trainers/test_vqa_recipes.py (clipfeat's MCAN variant trains in test_registry's run)
@pytest.mark.parametrize("model,sets", [("butd", BUTD_SMALL + ["epochs=20"])])
def test_learns_beyond_the_answer_prior(coco_data, tmp_path, model, sets):
    """Held-out accuracy beats the best answer-prior baseline (most common answer per
    question type) by 20+ points: the model reads the image through the cached grid."""
    res = _train(coco_data, tmp_path / model, sets)
    evals = [r for r in map(json.loads, open(tmp_path / model / "metrics.jsonl")) if r["kind"] == "eval"]
    baseline = evals[-1]["baseline"]
    assert res.best >= baseline + 20, f"{model}: best {res.best} vs answer prior {baseline}"
    # predictions of the best checkpoint, scored by the official metric, give the logged best
    store, data = coco_data
    scores = evaluate(str(tmp_path / model / "predictions_val2014.json"), os.path.join(data, "v2_mscoco_val2014_annotations.json"))
    assert scores.overall == res.best


@pytest.mark.slow
def test_run_folder_cli_eval_and_test_predictions(coco_data, tmp_path):
    store, data = coco_data
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", "vqa", "--features", store, "--data", data, "--out", str(out), "--set",
                                 "epochs=2", "progress=false", "predict_splits=test-dev2015", *BUTD_SMALL])
    assert r.exit_code == 0, r.output
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "metrics.jsonl", "ckpt_latest.pt", "ckpt_best.pt", "curve.png",
            "predictions_val2014.json", "predictions_test-dev2015.json"} <= names
    ck = load_checkpoint(out / "ckpt_latest.pt")  # weights_only=True
    assert {"model", "optimizer", "scheduler", "config", "step", "epoch", "best"} <= set(ck)
    assert ck["epoch"] == 2 and ck["config"]["epochs"] == 2 and ck["extra"]["answer_surface"]
    test_dev = json.loads((out / "predictions_test-dev2015.json").read_text())
    assert len(test_dev) == 40 and all(isinstance(p["answer"], str) for p in test_dev)
    # `clipfeat eval vqa` on the written predictions agrees with the trainer's own evaluation
    r = CliRunner().invoke(cli, ["eval", "vqa", "--results", str(out / "predictions_val2014.json"), "--annotations",
                                 os.path.join(data, "v2_mscoco_val2014_annotations.json"), "--questions",
                                 os.path.join(data, "v2_OpenEnded_mscoco_val2014_questions.json"), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output.strip().splitlines()[-1])
    assert got["overall"] == ck["best"] and set(got["perAnswerType"]) == {"yes/no", "number", "other"}
    # a finished run is not overwritten by accident
    r = CliRunner().invoke(cli, ["train", "vqa", "--features", store, "--data", data, "--out", str(out)])
    assert r.exit_code == 2 and "--resume" in r.output


@pytest.mark.slow
def test_resume_after_kill_equals_uninterrupted_run(coco_data, tmp_path, run_killed):
    """SIGKILL right after epoch 1's checkpoint, resume: the same final weights and metrics
    as a run that never stopped (fixed seed, CPU)."""
    sets = BUTD_SMALL + ["epochs=2", "seed=3"]
    full = _train(coco_data, tmp_path / "full", sets)

    store, data = coco_data
    argv = ["--features", store, "--data", data, "--out", str(tmp_path / "cut"), "--set", "progress=false", *sets]
    run_killed("clipfeat.trainers.vqa.train", argv)
    assert load_checkpoint(tmp_path / "cut" / "ckpt_latest.pt")["epoch"] == 1
    resumed = main(["--resume", str(tmp_path / "cut")])

    assert resumed.epochs_run == 1 and resumed.last == full.last and resumed.best == full.best
    a = load_checkpoint(tmp_path / "full" / "ckpt_latest.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "ckpt_latest.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(x) for x in open(tmp_path / "cut" / "metrics.jsonl")]
    assert [r["epoch"] for r in log if r["kind"] == "eval"] == [1, 2]  # no duplicate records
