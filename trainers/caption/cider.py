"""`cider`: CIDEr-D, vectorised with numpy, as the reward of self-critical sequence training.

Computes what coco-caption's CIDEr-D (`pycocoevalcap.cider.cider.Cider`, i.e.
`pycocoevalcap/cider/cider_scorer.py`) computes, to floating-point rounding (~1e-12), when the
document frequencies come from the same references. For one candidate c of image g with
references s_1..s_m:

- n-grams of orders k = 1..n (n = 4) are counted per sentence (term frequency tf);
- document frequency df(x) = number of images of the df corpus whose references contain the
  n-gram x at least once (the union of the image's reference n-grams, so an n-gram counts once
  per image however many references use it);
- ref_len = log(number of images in the df corpus); an n-gram's weight is
  tf * (ref_len - log(max(1, df))), so n-grams absent from the corpus weigh tf * ref_len;
- per order k and reference s: sum over the candidate's k-grams x of
  min(w_c(x), w_s(x)) * w_s(x) (the "-D" clipping), divided by |w_c|_k * |w_s|_k only when both
  norms are nonzero (otherwise the sum is 0 anyway, all weights being >= 0);
- times a Gaussian length penalty exp(-(len_c - len_s)^2 / (2 sigma^2)), sigma = 6;
- averaged over the references, then over the n orders, times 10.

Quirks of the original reproduced on purpose:

- The "length" in the penalty is not the number of words but the number of *bigrams*,
  max(words - 1, 0): `counts2vec` adds the term frequencies of n-grams whose 0-based order index
  is 1 (`if n == 1`). So a one-word and an empty sentence have the same length. This never
  changes a score: the difference from word counts only arises when one side is empty, and then
  its cosine is 0 anyway (no n-grams, or all reference weights 0).
- Only the n-grams the candidate has are visited, and the weights are never negative, so the
  score of an empty candidate is 0; a one-word candidate identical to one-word references scores
  at most 2.5 (only the unigram order is nonzero, and the mean is over all 4 orders).
- With a single image in the df corpus ref_len = log 1 = 0 and every score is 0.

Deliberate departures: pycocoevalcap's `n` argument does not work (its `precook` always counts
1..4-grams, so `Cider(n=3)` raises IndexError and `Cider(n=5)` returns 4/5 of the n=4 score);
here `n` means the n-grams of orders 1..n. Where pycocoevalcap asserts (an image without
references, mismatched keys, a `res` list of length != 1) this raises `ValueError`. A corpus whose
references are all empty, on which pycocoevalcap crashes (`max()` of no document frequencies), is
accepted: every score is 0.

Implementation. An n-gram is given an exact int64 id by chaining: the k-gram starting at position
p is the pair (id of the (k-1)-gram at p, token at p+k-1), encoded as prefix_id * (V + 1) + token
and made dense per order with `np.unique` (corpus) or looked up with `np.searchsorted`
(candidates). The codes are bounded by (number of distinct (k-1)-grams) * (V + 1), not by V**n,
so any vocabulary size is exact without overflow (G = number of distinct corpus n-grams, gid in
[0, G) is the global dense id). `CiderD` fixes the corpus at construction and stores the idf of
every corpus n-gram [G] and the term frequencies of each reference's n-grams under a sorted
combined int64 key ref * G + gid (CSR by reference; the references of image g are the contiguous
block ref_ptr[g]:ref_ptr[g+1]), plus per-reference per-order norms [R, n] and lengths [R].
`score` extracts the candidates' n-grams with the same chaining (plus a batch-local chain that
keeps ids unseen in the corpus distinct for tf), expands each candidate n-gram found in the corpus
against the references of its image, and looks all reference weights up with one `searchsorted`
on the combined key; sums are `bincount`s. There is no Python loop over candidates, references or
n-grams, only over the n orders.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

__all__ = ["CiderD", "cider_d"]

_INT64_MAX = np.iinfo(np.int64).max


def _chain_code(prefix: np.ndarray, token: np.ndarray, base: int, n_prefix: int) -> np.ndarray:
    """Exact int64 code of (prefix id in [0, n_prefix), token in [1, base)) pairs."""
    if n_prefix * base > _INT64_MAX:  # cannot happen for any realistic corpus; guard exactness anyway
        raise ValueError(f"n-gram codes would overflow int64 ({n_prefix} prefixes x base {base})")
    return prefix * base + token


def _unique_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values [U] and their counts [U].

    Sort-based on purpose: numpy >= 2.3 routes `np.unique` without inverse/index through a hash
    table that is several times slower than a (SIMD) sort on tens of millions of int64.
    """
    ordered = np.sort(values)
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1]))) if ordered.size else np.zeros(0, np.int64)
    return ordered[starts], np.diff(np.append(starts, ordered.size))


def _lookup(table: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of each query [Q] in the sorted distinct `table`, or -1 where it is absent.

    Queries are searched in sorted order: numpy's binary search then starts from the previous
    hit and stays in cache, which is several times faster on a table of millions of keys.
    """
    out = np.full(query.size, -1, dtype=np.int64)
    if table.size == 0 or query.size == 0:
        return out
    order = np.argsort(query)
    sorted_query = query[order]
    at = np.searchsorted(table, sorted_query)
    hit = at < table.size
    hit[hit] = table[at[hit]] == sorted_query[hit]
    out[order[hit]] = at[hit]
    return out


def _positions(lengths: np.ndarray) -> np.ndarray:
    """For sentences laid end to end, the number of tokens from each token to its sentence end.

    lengths [S] -> remaining [sum(lengths)]: sentence s contributes lengths[s], ..., 1.
    """
    total = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths  # [S] offset of each sentence
    ends = np.repeat(starts + lengths, lengths)  # [total] end offset of each token's sentence
    return ends - np.arange(total, dtype=np.int64)


class CiderD:
    """Document frequencies from a corpus of references, fixed at construction (SCST: the training references).

    `refs[g]` are the reference captions of image g, each a sequence of int token ids >= 1
    (0 is reserved for padding); every image needs at least one reference, a reference may be
    empty. `score(cands, groups)` then gives the CIDEr-D of candidate i against the references of
    image groups[i], with df and ref_len = log(len(refs)) of this corpus.
    """

    def __init__(self, refs: Sequence[Sequence[Sequence[int]]], *, n: int = 4, sigma: float = 6.0) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.n = int(n)
        self.sigma = float(sigma)

        # One Python pass over the corpus to flatten it; everything after is vectorised.
        n_refs = np.fromiter((len(r) for r in refs), dtype=np.int64, count=len(refs))  # [I]
        if n_refs.size == 0:
            raise ValueError("refs is empty: the df corpus needs at least one image")
        if (n_refs == 0).any():
            raise ValueError(f"image {int(np.argmin(n_refs))} has no reference captions")
        sentences = list(itertools.chain.from_iterable(refs))
        lengths = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))  # [R]
        tokens = np.fromiter(itertools.chain.from_iterable(sentences), dtype=np.int64, count=int(lengths.sum()))
        if tokens.size and tokens.min() < 1:
            raise ValueError("reference token ids must be >= 1 (0 is padding)")

        self.n_images = int(n_refs.size)
        self.ref_len = float(np.log(float(self.n_images)))  # log of the df corpus size, as coco-caption
        self.ref_ptr = np.concatenate(([0], np.cumsum(n_refs)))  # [I+1] CSR: refs of image g
        self.n_refs = n_refs  # [I]
        n_sent = int(lengths.size)
        # Penalty "length" = number of bigrams (coco-caption's 0-based `if n == 1`), see module docstring.
        self.ref_length = np.maximum(lengths - 1, 0)  # [R]

        # Unigram ids: dense ranks of the corpus vocabulary, 1..V (0 stays free for "absent").
        self.vocab, _ = _unique_counts(tokens)  # [V] sorted distinct token ids of the corpus
        self.base = int(self.vocab.size) + 1
        dense = np.searchsorted(self.vocab, tokens) + 1  # [Ntok] in 1..V
        remaining = _positions(lengths)  # [Ntok]
        sent_of_tok = np.repeat(np.arange(n_sent, dtype=np.int64), lengths)  # [Ntok]

        # Per order: the sorted distinct chain codes (a lookup table for candidates) and, for every
        # occurrence, (sentence, global n-gram id). gid = order offset + rank of its code.
        self.order_codes: list[np.ndarray] = []
        offsets = [0]
        occ_sent: list[np.ndarray] = []
        occ_gid: list[np.ndarray] = []
        prev_id = np.zeros(tokens.size, dtype=np.int64)  # [Ntok] id of the (k-1)-gram at p (k=1: 0)
        n_prev = 1
        for k in range(1, self.n + 1):
            pos = np.flatnonzero(remaining >= k)  # starts of k-grams
            code = _chain_code(prev_id[pos], dense[pos + k - 1], self.base, n_prev)
            uniq, local = np.unique(code, return_inverse=True)
            self.order_codes.append(uniq)
            occ_sent.append(sent_of_tok[pos])
            occ_gid.append(local + offsets[-1])
            prev_id = np.zeros(tokens.size, dtype=np.int64)
            prev_id[pos] = local
            n_prev = max(int(uniq.size), 1)
            offsets.append(offsets[-1] + int(uniq.size))
        del prev_id, dense, remaining, sent_of_tok
        self.offsets = np.asarray(offsets, dtype=np.int64)  # [n+1] gid range of each order
        n_grams = int(offsets[-1])
        self.n_grams = n_grams
        g_mult = max(n_grams, 1)  # multiplier of the combined (ref, gid) key

        # tf per (reference, n-gram): the sorted unique combined keys are the CSR lookup table.
        combined = np.concatenate(occ_sent) * g_mult + np.concatenate(occ_gid)
        del occ_sent, occ_gid
        self.ref_keys, tf = _unique_counts(combined)  # [E] sorted (ref, gid) keys
        del combined
        ent_ref = self.ref_keys // g_mult  # [E]
        ent_gid = self.ref_keys - ent_ref * g_mult  # [E]

        # df: each n-gram once per image (union over the image's references).
        img_of_ref = np.repeat(np.arange(self.n_images, dtype=np.int64), n_refs)  # [R]
        per_image, _ = _unique_counts(img_of_ref[ent_ref] * g_mult + ent_gid)
        df = np.bincount(per_image % g_mult, minlength=n_grams).astype(np.float64)  # [G], all >= 1
        del per_image
        # idf part of the weight, ref_len - log(max(1, df)); the extra last entry is for gid -1
        # (a candidate n-gram not in the corpus: df 0 -> log(max(1, 0)) = 0 -> ref_len).
        self.idf = np.append(self.ref_len - np.log(np.maximum(1.0, df)), self.ref_len)  # [G+1]

        ref_w = tf.astype(np.float64) * self.idf[ent_gid]  # [E] weight of each (ref, n-gram)
        # Only tf is kept (weights are recomputed bit-identically as tf * idf[gid] in `score`): a
        # quarter of the memory of float64 weights. The extra last entry (0) is what a lookup miss
        # (index -1) reads.
        self.ref_tf = np.append(tf, 0).astype(np.min_scalar_type(int(tf.max(initial=0))))  # [E+1]
        ent_order = np.searchsorted(self.offsets, ent_gid, side="right") - 1  # [E] order index 0..n-1
        sq = np.bincount(ent_ref * self.n + ent_order, weights=ref_w**2, minlength=n_sent * self.n)
        self.ref_norm = np.sqrt(sq).reshape(n_sent, self.n)  # [R, n]

    def score(self, cands: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """CIDEr-D of each candidate against the references of its image.

        cands [N, T] int token ids, right-padded with 0 (everything from the first 0 on is
        ignored; ids never seen in the corpus are fine and never match). groups [N] int: index g
        of the image whose references candidate i is scored against (may repeat). Returns [N]
        float64 on coco-caption's x10 scale.
        """
        cands = np.asarray(cands)
        groups = np.asarray(groups)
        if cands.ndim != 2:
            raise ValueError(f"cands must be [N, T], got shape {cands.shape}")
        if groups.shape != (cands.shape[0],):
            raise ValueError(f"groups must be [N] = [{cands.shape[0]}], got shape {groups.shape}")
        if cands.size and not np.issubdtype(cands.dtype, np.integer):
            raise ValueError(f"cands must hold integer token ids, got {cands.dtype}")
        if groups.size and not np.issubdtype(groups.dtype, np.integer):
            raise ValueError(f"groups must hold integer image indices, got {groups.dtype}")
        n_c, t = cands.shape
        if n_c == 0:
            return np.zeros(0, dtype=np.float64)
        groups = groups.astype(np.int64)
        if groups.min() < 0 or groups.max() >= self.n_images:
            raise ValueError(f"groups must be in [0, {self.n_images}), got [{groups.min()}, {groups.max()}]")
        cands = cands.astype(np.int64)
        if cands.size and cands.min() < 0:
            raise ValueError("candidate token ids must be >= 0 (0 is padding)")
        nn = self.n

        # Lengths up to the first 0; remaining[i, p] = tokens left from p (<= 0 in the padding).
        is_pad = cands == 0
        length = np.where(is_pad.any(axis=1), is_pad.argmax(axis=1), t) if t else np.zeros(n_c, dtype=np.int64)  # [N]
        remaining = (length[:, None] - np.arange(t)[None, :]).ravel()  # [N*T]
        flat = cands.ravel()  # [N*T]
        row = np.repeat(np.arange(n_c, dtype=np.int64), t)  # [N*T]

        # Two chains: a batch-local one to count tf exactly (unseen ids stay distinct), and a
        # corpus one to find each n-gram's corpus id (-1 when any part is outside the corpus).
        batch_vocab, batch_tok = np.unique(flat, return_inverse=True)
        batch_tok = batch_tok.reshape(-1) + 1  # [N*T] in 1..|batch_vocab|
        batch_base = int(batch_vocab.size) + 1
        vi = np.minimum(np.searchsorted(self.vocab, flat), max(self.vocab.size - 1, 0))
        seen = (self.vocab[vi] == flat) if self.vocab.size else np.zeros(flat.size, dtype=bool)
        corp_tok = np.where(seen, vi + 1, 0)  # [N*T] 1..V, 0 = not in corpus

        occ_row, occ_bid, occ_gid, occ_order = [], [], [], []
        b_prev = np.zeros(flat.size, dtype=np.int64)  # batch id of the (k-1)-gram at p
        c_prev = np.zeros(flat.size, dtype=np.int64)  # corpus local id of it, -1 if absent
        nb_prev = 1
        b_offset = 0
        for k in range(1, nn + 1):
            pos = np.flatnonzero(remaining >= k)  # starts of k-grams (never in padding)
            if pos.size == 0:
                break
            last = pos + k - 1
            code = _chain_code(b_prev[pos], batch_tok[last], batch_base, nb_prev)
            buniq, blocal = np.unique(code, return_inverse=True)
            # Corpus lookup: exact code of (prefix corpus id, token) in this order's table.
            table = self.order_codes[k - 1]
            ok = np.flatnonzero((c_prev[pos] >= 0) & (corp_tok[last] > 0))
            clocal = np.full(pos.size, -1, dtype=np.int64)  # local id in order k, -1 = absent
            clocal[ok] = _lookup(table, c_prev[pos[ok]] * self.base + corp_tok[last[ok]])
            found = clocal >= 0

            occ_row.append(row[pos])
            occ_bid.append(blocal + b_offset)
            occ_gid.append(np.where(found, clocal + self.offsets[k - 1], -1))
            occ_order.append(np.full(pos.size, k - 1, dtype=np.int64))
            b_prev = np.zeros(flat.size, dtype=np.int64)
            b_prev[pos] = blocal
            c_prev = np.full(flat.size, -1, dtype=np.int64)
            c_prev[pos] = clocal
            nb_prev = int(buniq.size)
            b_offset += int(buniq.size)

        norm_c = np.zeros((n_c, nn))  # [N, n]
        pen_len = np.maximum(length - 1, 0)  # [N] bigram count, the original's "length"
        if occ_row:
            o_row = np.concatenate(occ_row)
            o_gid = np.concatenate(occ_gid)
            o_order = np.concatenate(occ_order)
            # tf per (candidate, n-gram); first occurrence carries its corpus id and order.
            key = o_row * b_offset + np.concatenate(occ_bid)
            _, first, tf = np.unique(key, return_index=True, return_counts=True)
            e_row, e_gid, e_order = o_row[first], o_gid[first], o_order[first]  # [E]
            e_w = tf * self.idf[e_gid]  # [E] candidate weights; gid -1 (absent from corpus) reads ref_len
            norm_c = np.sqrt(np.bincount(e_row * nn + e_order, weights=e_w**2, minlength=n_c * nn)).reshape(n_c, nn)
            # Only n-grams that exist in the corpus can have a nonzero reference weight.
            keep = e_gid >= 0
            e_row, e_gid, e_order, e_w = e_row[keep], e_gid[keep], e_order[keep], e_w[keep]
        else:
            e_row = e_gid = e_order = np.zeros(0, dtype=np.int64)
            e_w = np.zeros(0)

        # Pairs (candidate i, j-th reference of its image), flat index p = pair_ptr[i] + j.
        cand_nref = self.n_refs[groups]  # [N]
        pair_ptr = np.concatenate(([0], np.cumsum(cand_nref)))  # [N+1]
        n_pairs = int(pair_ptr[-1])
        p_cand = np.repeat(np.arange(n_c, dtype=np.int64), cand_nref)  # [P]
        p_ref = self.ref_ptr[groups][p_cand] + np.arange(n_pairs) - pair_ptr[p_cand]  # [P] global ref index

        # Expand candidate n-grams x references of their image, look up w_ref by (ref, gid).
        e_cnt = cand_nref[e_row]  # [E]
        x_ent = np.repeat(np.arange(e_row.size, dtype=np.int64), e_cnt)  # [X]
        x_start = np.cumsum(e_cnt) - e_cnt
        x_pair = pair_ptr[e_row][x_ent] + np.arange(x_ent.size) - x_start[x_ent]  # [X]
        x_key = p_ref[x_pair] * max(self.n_grams, 1) + e_gid[x_ent]
        w_ref = self.ref_tf[_lookup(self.ref_keys, x_key)] * self.idf[e_gid[x_ent]]  # [X] misses read tf 0
        w_hyp = e_w[x_ent]
        dot = np.bincount(x_pair * nn + e_order[x_ent], weights=np.minimum(w_hyp, w_ref) * w_ref, minlength=n_pairs * nn)
        dot = dot.reshape(n_pairs, nn)  # [P, n]

        nc, nr = norm_c[p_cand], self.ref_norm[p_ref]  # [P, n] each
        both = (nc != 0) & (nr != 0)  # the original divides only then (else the sum is 0 anyway)
        cos = np.where(both, dot / np.where(both, nc * nr, 1.0), dot)
        delta = (pen_len[p_cand] - self.ref_length[p_ref]).astype(np.float64)  # [P]
        penalty = np.exp(-(delta**2) / (2 * self.sigma**2))
        per_pair = cos.sum(axis=1) * penalty  # [P]
        return np.bincount(p_cand, weights=per_pair, minlength=n_c) / nn / cand_nref * 10.0


def cider_d(gts: Mapping[Hashable, list[str]], res: Mapping[Hashable, list[str] | str]) -> tuple[float, np.ndarray]:
    """CIDEr-D of whitespace-tokenised captions with df from `gts`, as `Cider().compute_score(gts, res)`.

    gts[key] = reference captions, res[key] = the candidate (a string or a one-element list).
    Returns (mean, per-image scores [len(gts)] in gts key order).
    """
    if set(gts.keys()) != set(res.keys()):
        raise ValueError("gts and res must have the same keys")
    if not gts:
        raise ValueError("gts is empty")
    vocab: dict[str, int] = {}

    def ids(text: str) -> list[int]:
        # Ids in order of first appearance; candidate-only words get ids too and never match.
        return [vocab.setdefault(w, len(vocab) + 1) for w in text.split()]

    refs = []
    hyps = []
    for key in gts:
        if isinstance(gts[key], str) or len(gts[key]) == 0:
            raise ValueError(f"gts[{key!r}] must be a non-empty list of strings")
        refs.append([ids(s) for s in gts[key]])
    for key in gts:
        hyp = res[key]
        if not isinstance(hyp, str):
            if len(hyp) != 1:
                raise ValueError(f"res[{key!r}] must be a string or a one-element list, got {len(hyp)} elements")
            hyp = hyp[0]
        hyps.append(ids(hyp))
    width = max(1, max(len(h) for h in hyps))
    cands = np.zeros((len(hyps), width), dtype=np.int64)
    for i, h in enumerate(hyps):
        cands[i, : len(h)] = h
    scores = CiderD(refs).score(cands, np.arange(len(hyps)))
    return float(np.mean(scores)), scores
