"""The reference VQA recipes against their sources: parameter counts and shapes at equal sizes,
the learning rate of every step, the loss on a fixed batch, tokenisation and targets.

Expected figures are computed here from the sources' definitions (not from clipfeat's code):
- `butd`: hengyuan-hu/bottom-up-attention-vqa@3925206 base_model.py:52-60 build_baseline0_newatt
  (language_model.py, attention.py NewAttention, fc.py FCNet, classifier.py SimpleClassifier;
  weight_norm(dim=None): a scalar g and the matrix v per linear layer).
- `mcan-small`: MILVLG/mcan-vqa@6b165e9 core/model/net.py, mca.py, net_utils.py, optim.py.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from clipfeat.trainers.config import apply_overrides
from clipfeat.trainers.optim import make_optimizer, make_scheduler
from clipfeat.trainers.task import TASKS
from clipfeat.trainers.vqa.models import build_model
from clipfeat.trainers.vqa.train import VQAConfig, vqa_loss


def recipe(name: str, **sizes) -> VQAConfig:
    cfg = apply_overrides(VQAConfig(), TASKS["vqa"].recipes()[name].config)
    return apply_overrides(cfg, sizes) if sizes else cfg


def shapes(model) -> Counter:
    return Counter(tuple(p.shape) for p in model.parameters())


# -- architecture -------------------------------------------------------------------------------


def test_butd_parameters_equal_build_baseline0_newatt():
    N, E, H, V, A = 20, 300, 8, 16, 5  # words (+1 padding row), embedding, num_hid, v_dim, answers
    cfg = recipe("butd", **{"butd.hidden": H})
    model = build_model(cfg, vocab_size=N + 1, num_answers=A, channels=V, left_padded=True)
    # the source's tensors: WordEmbedding, GRU (r, z, n gates), NewAttention (v_proj, q_proj
    # FCNets, linear), q_net, v_net FCNets, SimpleClassifier; each weight-normed Linear is
    # (bias [out], g [], v [out, in])
    def wn(i, o):
        return [(o,), (), (o, i)]

    expected = Counter([(N + 1, E), (3 * H, E), (3 * H, H), (3 * H,), (3 * H,),
                        *wn(V, H), *wn(H, H), *wn(H, 1), *wn(H, H), *wn(V, H), *wn(H, 2 * H), *wn(2 * H, A)])
    assert shapes(model) == expected
    total = (N + 1) * E + 3 * H * E + 7 * H * H + 2 * H * V + 13 * H + 2 * H * A + A + 8  # the closed form
    assert sum(p.numel() for p in model.parameters()) == total == 14_401
    # full size on CLIP-ViL's RN50x4 grids, e.g. a 19,901-word dictionary and 3,129 answers
    big = build_model(recipe("butd"), vocab_size=19_902, num_answers=3129, channels=2560, left_padded=True)
    assert sum(p.numel() for p in big.parameters()) == (19_902 * 300 + 3 * 1024 * 300 + 7 * 1024**2 + 2 * 1024 * 2560
                                                       + 13 * 1024 + 2 * 1024 * 3129 + 3129 + 8)
    # weight_norm(dim=None) starts at PyTorch's default weight: g = ||v||_F
    lin = model.att_v[0]
    assert torch.allclose(lin.parametrizations.weight.original0, lin.parametrizations.weight.original1.norm())


def test_mcan_small_parameters_equal_mcan_vqa():
    V, E, H, L, F_, A, heads = 30, 300, 16, 2, 12, 7, 2
    cfg = recipe("mcan-small", **{"mcan.d_model": H, "mcan.layers": L, "mcan.ff_dim": 4 * H, "mcan.heads": heads})
    model = build_model(cfg, vocab_size=V, num_answers=A, channels=F_)
    M, G, O = H, 1, 2 * H  # FLAT_MLP_SIZE = HIDDEN_SIZE, FLAT_GLIMPSES 1, FLAT_OUT_SIZE 2H (small_model.yml)

    def lin(i, o):
        return [(o, i), (o,)]

    mhatt = [*lin(H, H)] * 4
    ffn = [*lin(H, 4 * H), *lin(4 * H, H)]
    norm = [(H,), (H,)]
    sa = mhatt + ffn + norm * 2
    sga = mhatt * 2 + ffn + norm * 3
    attflat = [*lin(H, M), *lin(M, G), *lin(H * G, O)]
    expected = Counter([(V, E), (4 * H, E), (4 * H, H), (4 * H,), (4 * H,), *lin(F_, H), *(sa * L), *(sga * L),
                        *(attflat * 2), (O,), (O,), *lin(O, A)])
    assert shapes(model) == expected
    total = (E * V + 4 * H * (E + H + 2) + F_ * H + H + L * (28 * H * H + 32 * H)
             + 2 * (H * M + M + M * G + G + H * G * O + O) + 2 * O + O * A + A)
    assert sum(p.numel() for p in model.parameters()) == total
    # MCAN-small itself (H 512, 6 layers, 2048-d features, 3129 answers): 51,640,891 + 300 V
    small = build_model(recipe("mcan-small"), vocab_size=1, num_answers=3129, channels=2048)
    assert sum(p.numel() for p in small.parameters()) == 51_640_891 + 300
    assert model.w_emb.padding_idx is None  # mcan-vqa trains the PAD word's vector too


def test_mcan_layer_norm_is_mcan_vqas():
    from clipfeat.trainers.vqa.models import MCANLayerNorm

    x = torch.randn(3, 5, 16)
    ln = MCANLayerNorm(16)
    ref = (x - x.mean(-1, keepdim=True)) / (x.std(-1, unbiased=True, keepdim=True) + 1e-6)
    assert torch.allclose(ln(x), ref, atol=1e-6)
    assert not torch.allclose(ln(x), F.layer_norm(x, (16,)), atol=1e-3)  # not nn.LayerNorm (biased var)


# -- schedule -----------------------------------------------------------------------------------


def _lrs(cfg, model, steps_per_epoch, samples):
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, total_steps=cfg.epochs * steps_per_epoch, steps_per_epoch=steps_per_epoch,
                           samples_per_epoch=samples)
    out = []
    for _ in range(cfg.epochs * steps_per_epoch):  # what the loop does every step
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return opt, out


def test_mcan_small_lr_of_every_step_is_mcan_vqas():
    cfg = recipe("mcan-small")
    model = torch.nn.Linear(2, 2)
    N = 4_000  # training questions; drop_last: floor(N / 64) steps per epoch
    spe = N // 64
    opt, lrs = _lrs(cfg, model, spe, N)
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["betas"] == (0.9, 0.98) and opt.defaults["eps"] == 1e-9

    def mcan_rate(s, epoch):  # optim.py:36-49 (s: the 1-indexed update) and exec.py:139-140
        base = 1e-4 * 0.2 ** sum(epoch >= e for e in (10, 12))
        for k in (1, 2, 3):
            if s <= int(N / 64 * k):
                return base * k / 4
        return base

    expected = [mcan_rate(i + 1, i // spe) for i in range(13 * spe)]
    assert lrs == pytest.approx(expected, rel=1e-12)
    per_epoch = [lrs[e * spe + spe // 2] for e in range(13)]  # 2.5e-5, 5e-5, 7.5e-5, 1e-4 x 7, 2e-5 x 2, 4e-6
    assert per_epoch == pytest.approx([2.5e-5, 5e-5, 7.5e-5] + [1e-4] * 7 + [2e-5] * 2 + [4e-6])


def test_butd_lr_is_adamax_default_at_every_step():
    cfg = recipe("butd", epochs=3)
    opt, lrs = _lrs(cfg, torch.nn.Linear(2, 2), 7, 7 * 512)
    assert isinstance(opt, torch.optim.Adamax) and opt.defaults["betas"] == (0.9, 0.999) and opt.defaults["eps"] == 1e-8
    assert lrs == [2e-3] * 21 and cfg.grad_clip == 0.25 and cfg.batch_size == 512 and recipe("butd").epochs == 30


# -- loss ---------------------------------------------------------------------------------------


def test_losses_on_a_fixed_batch_equal_the_sources_formulas():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, generator=g) * 3
    targets = torch.tensor([[0, 0.3, 0, 1, 0, 0], [0.6, 0, 0, 0, 0, 0.9], [0] * 6, [1, 0, 0, 0, 0.3, 0]])
    p = torch.sigmoid(logits)
    bce = -(targets * torch.log(p) + (1 - targets) * torch.log(1 - p))  # [B, A]
    # bottom-up-attention-vqa train.py:9-14: mean over B x A, times A
    assert vqa_loss(logits, targets, recipe("butd").loss).item() == pytest.approx(bce.sum().item() / 4, rel=1e-6)
    assert F.binary_cross_entropy_with_logits(logits, targets).item() * 6 == pytest.approx(bce.sum().item() / 4, rel=1e-6)
    # mcan-vqa exec.py:60: BCELoss(reduction='sum') over the sub-batch, not divided
    assert vqa_loss(logits, targets, recipe("mcan-small").loss).item() == pytest.approx(bce.sum().item(), rel=1e-6)


# -- text and targets ---------------------------------------------------------------------------


def test_tokenisers_and_padding_follow_the_sources():
    from clipfeat.trainers.vqa.data import QUESTION_TEXT, build_question_vocab, encode_questions, tokenize_butd, tokenize_mcan

    q = "What's the man's T-shirt color, in 2/3 of it?"
    assert tokenize_butd(q) == ["what", "'s", "the", "man", "'s", "t-shirt", "color", "in", "2/3", "of", "it"]
    assert tokenize_mcan(q) == ["whats", "the", "mans", "t", "shirt", "color", "in", "2", "3", "of", "it"]
    text = QUESTION_TEXT["butd"]
    vocab = build_question_vocab([{"question": "is it red?"}, {"question": "what is it"}], text=text)
    assert vocab.itos == ["<pad>", "is", "it", "red", "what"]  # first occurrence, no UNK
    tokens, dropped = encode_questions(["is it blue", "what is it"], vocab, 4, text)
    assert tokens.tolist() == [[0, 0, 1, 2], [0, 4, 1, 2]] and dropped == 1  # padded in front
    mvocab = build_question_vocab([{"question": "is it red?"}], text=QUESTION_TEXT["mcan"])
    assert mvocab.itos[:2] == ["PAD", "UNK"]
    tokens, _ = encode_questions(["is it blue"], mvocab, 4, QUESTION_TEXT["mcan"])
    assert tokens.tolist() == [[2, 3, 1, 0]]


def test_soft_targets_follow_the_sources():
    from clipfeat.trainers.vqa.data import ANSWER_RULES

    answers = ["Two", "two", "2", "two", "1,000", "1000", "yes", "two", "two ", "2"]
    for name, form in (("butd", ANSWER_RULES["butd"].target_form), ("mcan", ANSWER_RULES["mcan"].target_form)):
        counts = Counter(form(a) for a in answers)
        if name == "butd":  # compute_softscore.py: the annotators' strings as given
            assert counts["two"] == 3 and counts["2"] == 2 and counts["1000"] == 1
        else:  # prep_ans: official normalisation ("two" -> "2"), then commas deleted
            assert counts["2"] == 7 and counts["1000"] == 2


# -- learning -----------------------------------------------------------------------------------


@pytest.fixture
def glove_file(coco_data, tmp_path):
    """A tiny word-vector file in GloVe's text format holding the synthetic questions' words
    (most of them: a few are left out, as real GloVe lacks some VQA words)."""
    import numpy as np

    _, data = coco_data
    words = set()
    for split in ("train2014", "val2014"):
        for q in json.load(open(f"{data}/v2_OpenEnded_mscoco_{split}_questions.json"))["questions"]:
            words.update(q["question"].lower().replace("?", " ").replace(",", " ").replace("'s", " 's").split())
    rng = np.random.default_rng(0)
    path = tmp_path / "glove.6B.300d.txt"
    with open(path, "w") as f:
        for w in sorted(words)[:-3]:
            f.write(w + " " + " ".join(f"{x:.5f}" for x in rng.normal(0, 0.4, 300)) + "\n")
    return str(path)


# Model sizes for 2 CPU cores; every other value (optimizer, schedule, batch, epochs, loss,
# targets, tokenisation, GloVe initialisation) is the recipe's. The synthetic data has no
# test2015 questions file, so the word vocabulary comes from the splits it has.
SMALL = {
    "butd": ["butd.hidden=128"],
    "mcan-small": ["mcan.d_model=64", "mcan.layers=1", "mcan.heads=4", "mcan.ff_dim=256"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["butd", "mcan-small"])
def test_reference_recipe_learns_beyond_the_answer_prior(coco_data, glove_file, tmp_path, name, capsys):
    import os

    from clipfeat.trainers.vqa import evaluate
    from clipfeat.trainers.vqa.train import main

    store, data = coco_data
    seed = int(os.environ.get("CLIPFEAT_TEST_SEED", "0"))
    res = main(["--features", store, "--data", data, "--out", str(tmp_path / name), "--recipe", name, "--set",
                "progress=false", f"glove={glove_file}", "min_answer_count=1", f"seed={seed}",
                "question_vocab_splits=train2014,val2014,test-dev2015", *SMALL[name],
                *(["amp=true"] if os.environ.get("CLIPFEAT_TEST_AMP") == "1" else [])])
    out = capsys.readouterr().out
    assert "words initialised from" in out
    evals = [r for r in map(json.loads, open(tmp_path / name / "metrics.jsonl")) if r["kind"] == "eval"]
    baseline = evals[-1]["baseline"]
    # best over 3 seeds x amp off/on (tiny sizes): butd 61.3-63.8, mcan-small 61.8-63.5, prior 45.1
    assert res.best >= baseline + 10, f"{name}: best {res.best} vs answer prior {baseline}"
    scores = evaluate(str(tmp_path / name / "predictions_val2014.json"), f"{data}/v2_mscoco_val2014_annotations.json")
    assert scores.overall == res.best
