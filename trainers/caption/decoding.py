"""Batched decoding with the model's KV cache: greedy, sampling (SCST) and beam search.

Every decoder returns token ids [B, L], L = max_len + 1: up to `max_len` words, then EOS, then
PAD (0). PAD, BOS and UNK are never emitted (an "<unk>" in a caption is never right); at the
last position only EOS is allowed. The decoding distribution is the model's, renormalised over
the allowed tokens; a caption's log-probability is the sum of its words' and its EOS's under
it, the same for every decoder and for `sequence_logprobs`, so they can be compared.
"""

from __future__ import annotations

import torch

from .data import BOS, EOS, PAD, UNK
from .models import CaptionModel, Memory

__all__ = ["beam_search", "greedy", "sample", "sequence_logprobs", "strip"]

_NEG = float("-inf")


def _banned(positions: int, vocab: int, max_len: int, device) -> torch.Tensor:
    """[positions, V] True where a token may not be emitted: PAD, BOS, UNK everywhere and,
    at position max_len (out of room), everything but EOS."""
    ban = torch.zeros(positions, vocab, dtype=torch.bool, device=device)
    ban[:, [PAD, BOS, UNK]] = True
    if positions > max_len:
        ban[max_len] = True
        ban[max_len, EOS] = False
    return ban


def _allowed(logp: torch.Tensor, t: int, max_len: int) -> torch.Tensor:
    """logp [N, V] of position t renormalised over the tokens allowed there (banned: -inf)."""
    return torch.log_softmax(logp.masked_fill(_banned(t + 1, logp.shape[-1], max_len, logp.device)[t], _NEG), dim=-1)


@torch.no_grad()
def greedy(model: CaptionModel, memory: Memory, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The most likely next word at every step -> (tokens [B, L], sequence log-prob [B])."""
    B, dev = len(memory), memory.cross[0][0].device
    tokens = torch.full((B, max_len + 1), PAD, dtype=torch.long, device=dev)
    total = torch.zeros(B, device=dev)
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    prev, state = torch.full((B,), BOS, device=dev), model.start(memory)
    for t in range(max_len + 1):
        logp, state = model.step(prev, state)
        best, word = _allowed(logp, t, max_len).max(-1)
        word = word.masked_fill(done, PAD)
        total += best.masked_fill(done, 0.0)
        tokens[:, t] = word
        done |= word == EOS
        prev = word
        if done.all():
            break
    return tokens, total


@torch.no_grad()
def sample(model: CaptionModel, memory: Memory, n: int, max_len: int, temperature: float = 1.0) -> torch.Tensor:
    """`n` captions per image drawn from the model -> tokens [B·n, L], image-major (rows
    b·n … b·n+n−1 belong to image b). Log-probs with gradients come from `sequence_logprobs`."""
    B, dev = len(memory), memory.cross[0][0].device
    memory = memory.index(torch.arange(B, device=dev).repeat_interleave(n))
    tokens = torch.full((B * n, max_len + 1), PAD, dtype=torch.long, device=dev)
    done = torch.zeros(B * n, dtype=torch.bool, device=dev)
    prev, state = torch.full((B * n,), BOS, device=dev), model.start(memory)
    for t in range(max_len + 1):
        logp, state = model.step(prev, state)
        probs = torch.softmax(_allowed(logp, t, max_len) / temperature, dim=-1)  # = the model's at temperature 1
        word = torch.multinomial(probs, 1)[:, 0].masked_fill(done, PAD)
        tokens[:, t] = word
        done |= word == EOS
        prev = word
        if done.all():
            break
    return tokens


def sequence_logprobs(model: CaptionModel, memory: Memory, tokens: torch.Tensor) -> torch.Tensor:
    """Per-token log-probs [N, L] of given captions tokens [N, L] in one teacher-forced pass
    (with gradients, for SCST); 0 at padding. Same masking as the decoders."""
    inputs = torch.cat([torch.full_like(tokens[:, :1], BOS), tokens[:, :-1]], dim=1)
    logits = model(memory, inputs).float()  # [N, L, V]
    logits = logits.masked_fill(_banned(tokens.shape[1], logits.shape[-1], tokens.shape[1] - 1, logits.device), _NEG)
    logp = torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1))[..., 0]
    return logp.masked_fill(tokens == PAD, 0.0)


@torch.no_grad()
def beam_search(model: CaptionModel, memory: Memory, beam_size: int, max_len: int,
                length_penalty: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam search, all images at once -> (tokens [B, L], sequence log-prob [B]).

    Beams are ranked by summed log-prob; a finished beam keeps its place (it continues with
    PAD at no cost) and competes with the live ones. The final pick among the `beam_size`
    beams divides by length**length_penalty (0 = pure log-prob; > 0 favours longer captions).

    The greedy caption is a candidate of the final pick too. Plain beam search can prune the
    greedy prefix and end on a less likely caption than greedy decoding (it does, for a few
    images, on trained captioners); with greedy in the pick a beam never does worse than
    beam 1, for the price of one greedy pass (1/beam_size of the search).
    """
    B, K, L = len(memory), beam_size, max_len + 1
    dev = memory.cross[0][0].device
    state = model.start(memory.index(torch.arange(B, device=dev).repeat_interleave(K)))
    scores = torch.full((B, K), _NEG, device=dev)
    scores[:, 0] = 0.0  # step 0 expands one beam: the others are copies of it
    tokens = torch.full((B, K, L), PAD, dtype=torch.long, device=dev)
    done = torch.zeros(B, K, dtype=torch.bool, device=dev)
    prev = torch.full((B * K,), BOS, device=dev)
    base = (torch.arange(B, device=dev) * K).unsqueeze(1)  # [B, 1] first beam row of each image
    for t in range(L):
        logp, state = model.step(prev, state)
        logp = _allowed(logp, t, max_len).view(B, K, -1)  # [B, K, V]
        V = logp.shape[-1]
        keep = torch.full_like(logp, _NEG)
        keep[..., PAD] = 0.0  # a finished beam's only continuation, free
        logp = torch.where(done.unsqueeze(-1), keep, logp)
        scores, flat = (scores.unsqueeze(-1) + logp).view(B, K * V).topk(K, dim=-1)  # [B, K]
        beam, word = flat // V, flat % V
        tokens = tokens.gather(1, beam.unsqueeze(-1).expand(-1, -1, L))
        tokens[:, :, t] = word
        done = done.gather(1, beam) | (word == EOS)
        if done.all():
            break
        state = state.index((base + beam).view(-1))
        prev = word.view(-1)
    g_tokens, g_scores = greedy(model, memory, max_len) if K > 1 else (tokens[:, 0], scores[:, 0])
    tokens = torch.cat([tokens, g_tokens.unsqueeze(1)], dim=1)  # [B, K+1, L]
    scores = torch.cat([scores, g_scores.unsqueeze(1)], dim=1)
    lengths = (tokens != PAD).sum(-1).clamp(min=1).float()  # words + EOS
    pick = (scores / lengths**length_penalty).argmax(-1)  # [B]; ties go to the beams (first)
    rows = torch.arange(B, device=dev)
    return tokens[rows, pick], scores[rows, pick]


def strip(tokens: torch.Tensor) -> list[list[int]]:
    """Token ids [N, L] -> the words of each caption (EOS and padding removed)."""
    out = []
    for row in tokens.tolist():
        words = []
        for t in row:
            if t == EOS or t == PAD:
                break
            words.append(t)
        out.append(words)
    return out
