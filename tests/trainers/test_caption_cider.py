"""CIDEr-D (`clipfeat.trainers.caption.cider`): agreement with pycocoevalcap's `Cider` on random
corpora (strings and token ids, repeated groups, unseen ids, empty and one-word sentences), the
properties SCST relies on (padding, fixed df, ranking), and input errors."""

from __future__ import annotations

import numpy as np
import pytest
from clipfeat.trainers.caption.cider import CiderD, cider_d

Cider = pytest.importorskip("pycocoevalcap.cider.cider").Cider

TOL = 1e-9


def _sentence(rng: np.random.Generator, vocab: int, max_len: int, prefix: str = "w") -> str:
    return " ".join(f"{prefix}{x}" for x in rng.integers(0, vocab, int(rng.integers(0, max_len + 1))))


def _random_case(seed: int) -> tuple[dict, dict]:
    """gts/res over a small vocabulary (so n-grams repeat within and across images), with empty and
    one-word references, 1..6 references per image, and candidates that copy a reference, take a
    prefix of one plus unseen words, are random (some words outside the corpus) or are empty."""
    rng = np.random.default_rng(seed)
    vocab = int(rng.integers(3, 30))
    gts: dict = {}
    res: dict = {}
    for i in range(int(rng.integers(2, 40))):
        refs = [_sentence(rng, vocab, 12) for _ in range(int(rng.integers(1, 7)))]
        if rng.random() < 0.2:
            refs[0] = f"w{rng.integers(vocab)}"  # one-word reference
        mode = int(rng.integers(5))
        if mode == 0:
            cand = refs[int(rng.integers(len(refs)))]
        elif mode == 1:
            words = refs[0].split()
            cand = " ".join(words[: int(rng.integers(0, len(words) + 1))] + _sentence(rng, 3, 2, "u").split())
        elif mode == 2:
            cand = _sentence(rng, vocab + 4, 14)
        elif mode == 3:
            cand = f"w{rng.integers(vocab)}"
        else:
            cand = ""
        gts[("img", i)] = refs
        res[("img", i)] = [cand]
    return gts, res


@pytest.mark.parametrize("seed", range(25))
def test_cider_d_matches_pycocoevalcap(seed):
    gts, res = _random_case(seed)
    mean_ref, per_ref = Cider().compute_score(gts, res)
    mean, per = cider_d(gts, res)
    assert per.shape == (len(gts),)
    np.testing.assert_allclose(per, per_ref, rtol=0, atol=TOL)
    assert abs(mean - mean_ref) < TOL
    # Bare strings are accepted for candidates and give the same.
    _, per_str = cider_d(gts, {k: v[0] for k, v in res.items()})
    np.testing.assert_array_equal(per_str, per)


def test_cider_d_nonzero_and_in_gts_key_order():
    gts = {"b": ["a man riding a horse", "a person on a horse"], "a": ["a cat on a mat", "the cat sat"],
           "c": ["two dogs play in the park", "dogs playing"]}
    res = {"a": ["a cat sat on a mat"], "c": ["a man on a horse"], "b": ["a man riding a horse"]}
    mean_ref, per_ref = Cider().compute_score(gts, res)
    mean, per = cider_d(gts, res)
    assert per[0] > per[1] > 0 and per[2] < per[1]  # keys b, a, c
    np.testing.assert_allclose(per, per_ref, rtol=0, atol=TOL)
    assert abs(mean - mean_ref) < TOL


def _ids_case(seed: int, samples: int):
    """Corpus of token-id refs (ids sparse and > 1, so the compact vocabulary is exercised) and
    `samples` candidates per image; returns refs, id->word, cands [N, T], groups [N]."""
    rng = np.random.default_rng(100 + seed)
    vocab = rng.choice(np.arange(1, 5000), size=int(rng.integers(4, 25)), replace=False)
    unseen = np.arange(5000, 5004)  # above every reference id
    n_img = int(rng.integers(2, 30))
    refs = [[rng.choice(vocab, int(rng.integers(0, 12))).tolist() for _ in range(int(rng.integers(1, 6)))]
            for _ in range(n_img)]
    t = 15
    groups = np.repeat(np.arange(n_img), samples)
    cands = np.zeros((groups.size, t), dtype=np.int64)
    for i, g in enumerate(groups):
        mode = int(rng.integers(4))
        if mode == 0:
            c = refs[g][int(rng.integers(len(refs[g])))]
        elif mode == 1:
            c = rng.choice(np.concatenate([vocab, unseen]), int(rng.integers(0, t + 1))).tolist()
        elif mode == 2:
            c = refs[g][0][:3] + rng.choice(unseen, 2).tolist() + refs[g][0][3:]
        else:
            c = rng.choice(vocab, int(rng.integers(1, 3))).tolist()
        c = c[:t]
        cands[i, : len(c)] = c
        cands[i, len(c) + 1 :] = rng.integers(1, 6000, max(t - len(c) - 1, 0))  # junk after the first 0
    return refs, cands, groups


@pytest.mark.parametrize("seed", range(10))
def test_scored_ids_match_pycocoevalcap_with_repeated_groups(seed):
    samples = 3
    refs, cands, groups = _ids_case(seed, samples)
    scores = CiderD(refs).score(cands, groups)
    assert scores.shape == (cands.shape[0],) and scores.dtype == np.float64

    def text(ids):
        return " ".join(f"t{x}" for x in ids)

    gts = {g: [text(r) for r in rs] for g, rs in enumerate(refs)}
    # Cider's df comes from gts only, so one compute_score per sample index gives every candidate.
    for s in range(samples):
        rows = np.flatnonzero(np.arange(groups.size) % samples == s)
        res = {}
        for i in rows:
            c = cands[i]
            res[int(groups[i])] = [text(c[: np.argmax(c == 0)] if (c == 0).any() else c)]
        _, per_ref = Cider().compute_score(gts, res)
        np.testing.assert_allclose(scores[rows], per_ref, rtol=0, atol=TOL)
    assert (scores > 0).any()


def test_identical_candidate_beats_shuffled_and_repeats_agree():
    rng = np.random.default_rng(0)
    refs = [[rng.integers(1, 50, 10).tolist() for _ in range(5)] for _ in range(20)]
    scorer = CiderD(refs)
    exact = np.array(refs[3][0])
    shuffled = exact.copy()
    while np.array_equal(shuffled, exact):
        rng.shuffle(shuffled)
    cands = np.stack([exact, shuffled, exact, exact])
    scores = scorer.score(cands, np.array([3, 3, 3, 4]))
    assert scores[0] > scores[1] > 0
    assert scores[2] == scores[0]  # the same group repeated gives the same value
    assert scores[3] < scores[0]  # against another image's references


def test_padding_after_first_zero_is_ignored():
    refs = [[[1, 2, 3, 4, 5], [1, 2, 9]], [[6, 7, 8], [2, 3]], [[4, 4, 4]]]
    scorer = CiderD(refs)
    clean = np.array([[1, 2, 3, 0, 0, 0, 0], [6, 7, 8, 2, 3, 0, 0], [0, 0, 0, 0, 0, 0, 0]])
    junk = np.array([[1, 2, 3, 0, 4, 5, 1], [6, 7, 8, 2, 3, 0, 9], [0, 4, 4, 4, 0, 1, 2]])
    groups = np.array([0, 1, 2])
    a, b = scorer.score(clean, groups), scorer.score(junk, groups)
    np.testing.assert_array_equal(a, b)
    assert a[0] > 0 and a[2] == 0  # an empty candidate scores 0
    # Trailing padding width does not matter either.
    np.testing.assert_array_equal(scorer.score(clean[:, :5], groups), a)


def test_unseen_ids_never_match_but_count_distinctly():
    refs = [[[1, 2, 3], [1, 2]], [[3, 4], [4, 5, 6]], [[7]]]
    scorer = CiderD(refs)
    groups = np.zeros(3, dtype=np.int64)
    # 100, 101, 10**12 are not in the corpus; two distinct unseen ids weigh differently from a repeated one.
    cands = np.array([[1, 2, 100, 100], [1, 2, 100, 101], [1, 2, 10**12, 3]])
    scores = scorer.score(cands, groups)
    gts = {0: ["1 2 3", "1 2"], 1: ["3 4", "4 5 6"], 2: ["7"]}
    for i, c in enumerate(["1 2 x x", "1 2 x y", "1 2 z 3"]):
        _, per_ref = Cider().compute_score(gts, {0: [c], 1: ["3"], 2: ["7"]})
        assert abs(scores[i] - per_ref[0]) < TOL
    assert scores[0] != scores[1]
    # Entirely unseen candidate: nothing matches.
    assert scorer.score(np.array([[100, 200, 300]]), np.array([0]))[0] == 0


def test_df_fixed_at_construction():
    refs, cands, groups = _ids_case(3, samples=5)
    scorer = CiderD(refs)
    full = scorer.score(cands, groups)
    rng = np.random.default_rng(1)
    subset = rng.choice(cands.shape[0], size=7, replace=False)
    part = scorer.score(cands[subset], groups[subset])
    np.testing.assert_allclose(part, full[subset], rtol=1e-13, atol=1e-13)
    # Each candidate alone, too.
    single = np.array([scorer.score(cands[i : i + 1], groups[i : i + 1])[0] for i in subset])
    np.testing.assert_allclose(single, full[subset], rtol=1e-13, atol=1e-13)
    # A smaller corpus changes df and ref_len, hence the scores.
    small = CiderD(refs[: int(groups[subset].max()) + 1]).score(cands[subset], groups[subset])
    assert not np.allclose(small, part)


def test_corner_corpora_match_pycocoevalcap():
    # One image: ref_len = log(1) = 0, so every weight and score is 0.
    gts, res = {0: ["a b c", "a b"]}, {0: ["a b c"]}
    assert Cider().compute_score(gts, res)[0] == 0 == cider_d(gts, res)[0]
    # One-word sentences only: only the unigram order counts, a perfect match gives 10 / 4.
    gts, res = {0: ["z"], 1: ["y"], 2: ["z"], 3: ["q"]}, {0: ["z"], 1: ["z"], 2: [""], 3: ["q q"]}
    _, per_ref = Cider().compute_score(gts, res)
    _, per = cider_d(gts, res)
    np.testing.assert_allclose(per, per_ref, rtol=0, atol=TOL)
    assert per[0] == pytest.approx(2.5)
    # All references empty: pycocoevalcap crashes (max of no df), here every score is 0.
    np.testing.assert_array_equal(CiderD([[[]], [[], []]]).score(np.array([[1, 2], [0, 0]]), np.array([0, 1])), [0, 0])


def test_n_orders():
    refs = [[[1, 2, 3, 4, 5]], [[6, 7]], [[8]]]
    cand = np.array([[1, 2, 3, 4, 5]])
    # Cosine 1 for every order the candidate has: n=4 -> 10, n=6 -> 5 of 6 orders, n=1 -> 10.
    assert CiderD(refs).score(cand, np.array([0]))[0] == pytest.approx(10.0)
    assert CiderD(refs, n=6).score(cand, np.array([0]))[0] == pytest.approx(10.0 * 5 / 6)
    assert CiderD(refs, n=1).score(cand, np.array([0]))[0] == pytest.approx(10.0)


def test_empty_batch():
    scorer = CiderD([[[1, 2]], [[3]]])
    assert scorer.score(np.zeros((0, 5), dtype=np.int64), np.zeros(0, dtype=np.int64)).shape == (0,)
    np.testing.assert_array_equal(scorer.score(np.zeros((2, 0), dtype=np.int64), np.array([0, 1])), [0, 0])


@pytest.mark.parametrize(
    ("refs", "kwargs", "match"),
    [
        ([], {}, "at least one image"),
        ([[[1, 2]], []], {}, "image 1 has no reference"),
        ([[[1, 0, 2]]], {}, ">= 1"),
        ([[[1, 2]]], {"n": 0}, "n must be"),
        ([[[1, 2]]], {"sigma": 0.0}, "sigma"),
    ],
)
def test_construction_errors(refs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        CiderD(refs, **kwargs)


@pytest.mark.parametrize(
    ("cands", "groups", "match"),
    [
        (np.array([1, 2]), np.array([0]), r"\[N, T\]"),
        (np.array([[1, 2]]), np.array([0, 1]), "groups must be"),
        (np.array([[1, 2]]), np.array([2]), r"in \[0, 2\)"),
        (np.array([[1, -2]]), np.array([0]), ">= 0"),
        (np.array([[1.0, 2.0]]), np.array([0]), "integer"),
    ],
)
def test_score_errors(cands, groups, match):
    with pytest.raises(ValueError, match=match):
        CiderD([[[1, 2]], [[3]]]).score(cands, groups)


def test_cider_d_errors():
    with pytest.raises(ValueError, match="same keys"):
        cider_d({1: ["a"]}, {2: ["a"]})
    with pytest.raises(ValueError, match="one-element"):
        cider_d({1: ["a"], 2: ["b"]}, {1: ["a", "b"], 2: ["b"]})
    with pytest.raises(ValueError, match="non-empty list"):
        cider_d({1: []}, {1: ["a"]})
    with pytest.raises(ValueError, match="empty"):
        cider_d({}, {})
