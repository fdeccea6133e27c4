"""The captioner: a Transformer encoder over CLIP grid cells and a Transformer decoder over words.

    encode(grid [B, N, C], mask [B, N] | None, pos [B, N, 4], pooled [B, D] | None)
        -> Memory(keys per decoder layer, padding mask)       (N cells, +1 when the pooled token is used)
    forward(memory, inputs [B, T])  -> logits [B, T, V]       (teacher forcing, causal)
    start(memory) -> State;  step(tokens [B], state) -> log-probs [B, V], state   (incremental, KV cache)

As CLIP-ViL's captioner (after self-critical.pytorch's Transformer): grid cells take the place
of detector regions, the model is otherwise the standard encoder-decoder. Pre-norm layers
(they train without the original's long warm-up). The decoder caches each layer's self-
attention keys/values and the cross-attention keys/values of the memory, so a decoding step
costs one token's worth of compute: SCST samples and beam search run at O(T) instead of O(T²).
Output projection tied to the word embedding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..grids import FeatureNorm

__all__ = ["CaptionModel", "Memory", "State", "build_model"]


class Attention(nn.Module):
    """Multi-head attention with separate query and key/value projections, so keys/values can
    be computed once (memory) or appended to step by step (self-attention cache)."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model={d_model} is not divisible by heads={heads}")
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def keys(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, S, d] -> (k, v), each [B, heads, S, d/heads]."""
        k, v = self.kv(x).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, mask: torch.Tensor | None = None,
                causal: bool = False) -> torch.Tensor:
        """x [B, T, d] attends to k/v [B, h, S, dh]; mask [B, 1, 1, S] True = may attend."""
        q = self._split(self.q(x))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).flatten(2))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = Attention(d_model, heads, dropout)
        self.cross_attn = Attention(d_model, heads, dropout)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model))
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(3))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cross: tuple[torch.Tensor, torch.Tensor], mem_mask: torch.Tensor | None, *,
                incremental: bool = False, past: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x [B, T, d]: the whole sequence (causal), or with `incremental` T = 1 new position
        after the cached ones (`past` = k, v [B, h, t, dh], None at t = 0). Returns x and the
        keys/values of all positions so far."""
        h = self.norms[0](x)
        k, v = self.self_attn.keys(h)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        x = x + self.drop(self.self_attn(h, k, v, causal=not incremental))
        x = x + self.drop(self.cross_attn(self.norms[1](x), *cross, mask=mem_mask))
        x = x + self.drop(self.ff(self.norms[2](x)))
        return x, (k, v)


@dataclass
class Memory:
    """The encoded image, as the decoder layers consume it."""

    cross: list[tuple[torch.Tensor, torch.Tensor]]  # per decoder layer: (k, v) [B, h, S, dh]
    mask: torch.Tensor | None  # [B, 1, 1, S] True = real cell; None when every cell is real

    def index(self, idx: torch.Tensor) -> "Memory":
        """Rows `idx` (repeats allowed: samples or beams of one image)."""
        return Memory([(k[idx], v[idx]) for k, v in self.cross], None if self.mask is None else self.mask[idx])

    def __len__(self) -> int:
        return self.cross[0][0].shape[0]


@dataclass
class State:
    """Incremental decoding: the memory and each layer's self-attention cache [B, h, t, dh]."""

    memory: Memory
    cache: list[tuple[torch.Tensor, torch.Tensor]] | None
    t: int  # positions decoded so far

    def index(self, idx: torch.Tensor) -> "State":
        cache = None if self.cache is None else [(k[idx], v[idx]) for k, v in self.cache]
        return State(self.memory.index(idx), cache, self.t)


class CaptionModel(nn.Module):
    def __init__(self, *, vocab_size: int, channels: int, pooled_dim: int | None = None, d_model: int = 512,
                 enc_layers: int = 3, dec_layers: int = 3, heads: int = 8, ff_dim: int = 2048, dropout: float = 0.1,
                 max_len: int = 17, use_pos: bool = True) -> None:
        super().__init__()
        self.v_norm = FeatureNorm(channels)
        self.v_proj = nn.Linear(channels, d_model)
        self.pos_proj = nn.Linear(4, d_model) if use_pos else None
        # The pooled embedding (attention-pool / CLS output) as one extra memory token.
        self.p_norm = FeatureNorm(pooled_dim) if pooled_dim else None
        self.p_proj = nn.Linear(pooled_dim, d_model) if pooled_dim else None
        layer = nn.TransformerEncoderLayer(d_model, heads, ff_dim, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, enc_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=0)
        self.pos_embed = nn.Embedding(max_len, d_model)
        self.layers = nn.ModuleList(DecoderLayer(d_model, heads, ff_dim, dropout) for _ in range(dec_layers))
        self.final_norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.max_len, self.d_model = max_len, d_model
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)

    # -- encoder ------------------------------------------------------------------------------
    def encode(self, grid: torch.Tensor, mask: torch.Tensor | None, pos: torch.Tensor,
               pooled: torch.Tensor | None = None) -> Memory:
        x = self.v_proj(self.v_norm(grid.float()))  # [B, N, d]
        if self.pos_proj is not None:
            x = x + self.pos_proj(pos)
        if self.p_proj is not None:
            if pooled is None:
                raise ValueError("this model was built with use_pooled; pass the pooled features")
            x = torch.cat([self.p_proj(self.p_norm(pooled.float())).unsqueeze(1), x], dim=1)
            if mask is not None:
                mask = torch.cat([mask.new_ones(len(mask), 1), mask], dim=1)
        x = self.encoder(x, src_key_padding_mask=None if mask is None else ~mask)  # [B, S, d]
        attn_mask = None if mask is None else mask[:, None, None, :]
        return Memory([layer.cross_attn.keys(x) for layer in self.layers], attn_mask)

    # -- decoder ------------------------------------------------------------------------------
    def _embed(self, tokens: torch.Tensor, t0: int) -> torch.Tensor:
        positions = torch.arange(t0, t0 + tokens.shape[1], device=tokens.device)
        return self.drop(self.embed(tokens) * math.sqrt(self.d_model) + self.pos_embed(positions))

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.final_norm(x), self.embed.weight)  # tied output layer

    def forward(self, memory: Memory, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: inputs [B, T] (BOS, w1, …) -> next-token logits [B, T, V]."""
        x = self._embed(inputs, 0)
        for layer, cross in zip(self.layers, memory.cross):
            x, _ = layer(x, cross, memory.mask)
        return self._logits(x)

    def start(self, memory: Memory) -> State:
        return State(memory, None, 0)

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """tokens [B] (the previous output, BOS first) -> log-probs [B, V] of the next one."""
        x = self._embed(tokens[:, None], state.t)  # [B, 1, d]
        cache = []
        for i, (layer, cross) in enumerate(zip(self.layers, state.memory.cross)):
            past = None if state.cache is None else state.cache[i]
            x, kv = layer(x, cross, state.memory.mask, incremental=True, past=past)
            cache.append(kv)
        logp = torch.log_softmax(self._logits(x[:, 0]).float(), dim=-1)
        return logp, State(state.memory, cache, state.t + 1)


def build_model(cfg, *, vocab_size: int, channels: int, pooled_dim: int | None) -> CaptionModel:
    return CaptionModel(
        vocab_size=vocab_size, channels=channels, pooled_dim=pooled_dim if cfg.use_pooled else None,
        d_model=cfg.d_model, enc_layers=cfg.enc_layers, dec_layers=cfg.dec_layers, heads=cfg.heads,
        ff_dim=cfg.ff_dim, dropout=cfg.dropout, max_len=cfg.max_len + 1, use_pos=cfg.use_pos,
    )
