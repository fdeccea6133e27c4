"""The follower: R2R-EnvDrop's speaker-follower agent (Tan et al. 2019), follower half.

    encode(tokens [B, L]) -> ctx [B, L, H], ctx_mask [B, L], (h, c) [B, H]
    step(prev_action [B, A], pano [B, 36, F], cand [B, 1+K, F], cand_mask [B, 1+K], ctx, ctx_mask, h, c)
        -> logits [B, 1+K], (h, c)

F = D + A: a view's feature and its angle feature (A = angle_size). Instruction encoder: word
embeddings, bidirectional LSTM. Decoder, per step: attend over the 36 views with the previous
state, feed [previous action's angle embedding; attended view] to an LSTM cell, attend over the
instruction with the new state, mix (tanh), and score each candidate by a dot product with its
projected feature. Environmental dropout drops the same feature channels in every view and
every step of an episode (as if the environment itself changed), which is what lets
EnvDrop's agent generalise to unseen houses.
"""

from __future__ import annotations

import torch

from torch import nn

from ..grids import FeatureNorm

__all__ = ["Follower"]


def _attend(query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """query [B, H], keys [B, N, H] -> softmax weights [B, N] (masked: True = real)."""
    scores = torch.einsum("bh,bnh->bn", query, keys)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return scores.softmax(-1)


class Follower(nn.Module):
    def __init__(self, *, vocab_size: int, feat_dim: int, angle_size: int = 128, word_dim: int = 256,
                 hidden: int = 512, action_dim: int = 64, dropout: float = 0.5, feat_dropout: float = 0.3) -> None:
        super().__init__()
        self.feat_dim, self.angle_size = feat_dim, angle_size
        f = feat_dim + angle_size
        self.v_norm = FeatureNorm(feat_dim)
        self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.encoder = nn.LSTM(word_dim, hidden // 2, batch_first=True, bidirectional=True)
        self.init_h = nn.Linear(hidden, hidden)
        self.init_c = nn.Linear(hidden, hidden)
        self.action_embed = nn.Sequential(nn.Linear(angle_size, action_dim), nn.Tanh())
        self.view_query = nn.Linear(hidden, f, bias=False)
        self.cell = nn.LSTMCell(action_dim + f, hidden)
        self.ctx_query = nn.Linear(hidden, hidden, bias=False)
        self.mix = nn.Linear(2 * hidden, hidden, bias=False)
        self.cand_key = nn.Linear(f, hidden, bias=False)
        self.drop = nn.Dropout(dropout)
        self.feat_dropout = feat_dropout

    def encode(self, tokens: torch.Tensor):
        mask = tokens != 0  # [B, L]
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.drop(self.embed(tokens)), lengths, batch_first=True,
                                                   enforce_sorted=False)
        out, (h, _) = self.encoder(packed)
        ctx, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])  # [B, L, H]
        last = torch.cat([h[0], h[1]], dim=-1)  # [B, H] final states of both directions
        return self.drop(ctx), mask, torch.tanh(self.init_h(last)), torch.tanh(self.init_c(last))

    def env_dropout_mask(self, batch: int, device: torch.device) -> torch.Tensor | None:
        """[B, 1, D] channel mask for one episode's whole rollout (None when not training)."""
        if not self.training or self.feat_dropout <= 0:
            return None
        keep = 1.0 - self.feat_dropout
        return torch.bernoulli(torch.full((batch, 1, self.feat_dim), keep, device=device)) / keep

    def _features(self, x: torch.Tensor, env_mask: torch.Tensor | None) -> torch.Tensor:
        """x [B, N, D + A]: normalise the view part, apply the episode's dropout mask to it."""
        v, a = x[..., : self.feat_dim], x[..., self.feat_dim:]
        v = self.v_norm(v)
        if env_mask is not None:
            v = v * env_mask
        return torch.cat([v, a], dim=-1)

    def step(self, prev_action: torch.Tensor, pano: torch.Tensor, cand: torch.Tensor, cand_mask: torch.Tensor,
             ctx: torch.Tensor, ctx_mask: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
             env_mask: torch.Tensor | None = None):
        pano = self._features(pano, env_mask)  # [B, 36, F]
        stop = cand.abs().sum(-1, keepdim=True) == 0  # the STOP slot stays all zeros
        cand = self._features(cand, env_mask).masked_fill(stop, 0.0)  # [B, 1+K, F]
        w = _attend(self.view_query(h), pano, None)  # [B, 36]
        seen = torch.einsum("bn,bnf->bf", w, pano)
        h, c = self.cell(torch.cat([self.action_embed(prev_action), seen], dim=-1), (h, c))
        a = _attend(self.ctx_query(h), ctx, ctx_mask)  # [B, L]
        attended = torch.einsum("bl,blh->bh", a, ctx)
        mixed = self.drop(torch.tanh(self.mix(torch.cat([attended, h], dim=-1))))  # [B, H]
        logits = torch.einsum("bh,bkh->bk", mixed, self.cand_key(cand))  # [B, 1+K]
        return logits.masked_fill(~cand_mask, torch.finfo(logits.dtype).min), (h, c)


