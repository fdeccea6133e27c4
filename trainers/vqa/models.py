"""VQA models over grid features: BUTD-style top-down attention and MCAN-small.

Both take
    grid   [B, N, C]  CLIP grid cells (ResNet layer4 / ViT patches), N = H·W (padded for aspect stores)
    mask   [B, N]     True = real cell, or None when every cell is real
    pos    [B, N, 4]  cell box (x0, y0, x1, y1) in [0, 1], used when `use_pos`
    tokens [B, T]     question word ids, 0 = padding
and return answer logits [B, A] (trained with binary cross-entropy on soft scores).

CLIP-ViL's recipe is exactly this swap: the detector's region features are replaced by the
grid cells of CLIP's visual encoder, the VQA model is otherwise unchanged.

Each model has options that make it the reference implementation exactly (the `butd` and
`mcan-small` recipes turn them on; the defaults are clipfeat's variants, which the GQA
recipes use):
- BUTD as hengyuan-hu/bottom-up-attention-vqa@3925206 `build_baseline0_newatt`
  (base_model.py:52-60): `weight_norm` (dim=None) on every linear layer (fc.py:13-19,
  attention.py:38, classifier.py:8-13), ReLU FCNets for q_net / v_net (`fusion=relu`),
  attention dropout 0.2, the GRU's last output over left-padded questions.
- MCAN as MILVLG/mcan-vqa@6b165e9 (core/model/net.py, mca.py, net_utils.py): its LayerNorm
  (`layer_norm=mcan`: a * (x - mean) / (unbiased std + 1e-6) + b, net_utils.py:48-60), masks
  filled with -1e9, a word embedding without a padding row (net.py:65-72).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, opt
from ..grids import FeatureNorm

__all__ = ["BUTD", "BUTDConfig", "MCAN", "MCANConfig", "MCANLayerNorm", "FeatureNorm", "MODELS", "build_model"]


@dataclass
class BUTDConfig:
    """`butd.*` config keys."""

    word_dim: int = opt(300, "word embedding size")
    hidden: int = opt(1024, "GRU, attention and fusion size")
    dropout: float = opt(0.1, "dropout on the attention's joint features")
    classifier_dropout: float = opt(0.5, "dropout before the answer classifier")
    fusion: str = opt("gated_tanh", "q_net / v_net layers: relu (bottom-up-attention-vqa's FCNet) or gated_tanh (Teney et al. 2018)")
    weight_norm: bool = opt(False, "weight_norm(dim=None) on every linear layer (bottom-up-attention-vqa)")


@dataclass
class MCANConfig:
    """`mcan.*` config keys (MCAN-small's sizes by default)."""

    word_dim: int = opt(300, "word embedding size")
    d_model: int = opt(512, "transformer width")
    layers: int = opt(6, "encoder and decoder depth")
    heads: int = opt(8, "attention heads")
    ff_dim: int = opt(2048, "feed-forward size")
    dropout: float = opt(0.1, "dropout in attention, feed-forward and residual branches")
    layer_norm: str = opt("torch", "torch (nn.LayerNorm) or mcan (mcan-vqa's: unbiased std, eps 1e-6 added to the std)")


MASKED = -1e9  # the logit of a masked position (mcan-vqa's masked_fill value; a fully masked row is uniform)


def _masked_softmax(logits: torch.Tensor, mask: torch.Tensor | None, dim: int = 1) -> torch.Tensor:
    if mask is not None:
        logits = logits.masked_fill(~mask.unsqueeze(-1), MASKED)
    return torch.softmax(logits, dim=dim)


def _linear(d_in: int, d_out: int, wn: bool) -> nn.Linear:
    """nn.Linear, optionally with weight_norm over the whole matrix (dim=None: one scalar gain
    g, initialised to the Frobenius norm, so the initial weight is PyTorch's default)."""
    layer = nn.Linear(d_in, d_out)
    return torch.nn.utils.parametrizations.weight_norm(layer, dim=None) if wn else layer


class MCANLayerNorm(nn.Module):
    """mcan-vqa's LayerNorm (net_utils.py:48-60): a * (x - mean) / (std + eps) + b with the
    unbiased std and eps added to the std, not to the variance as nn.LayerNorm does."""

    def __init__(self, d: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight, self.bias = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + self.eps) + self.bias


def _norm(d: int, kind: str) -> nn.Module:
    if kind == "mcan":
        return MCANLayerNorm(d)
    if kind == "torch":
        return nn.LayerNorm(d)
    raise ConfigError(f"mcan.layer_norm={kind!r}; use torch or mcan")


def _last_state(outputs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """outputs [B, T, D] of a left-to-right RNN -> the state after the last real token [B, D]."""
    last = (tokens != 0).sum(1).clamp(min=1) - 1  # [B]
    return outputs[torch.arange(len(tokens), device=tokens.device), last]


class GatedTanh(nn.Module):
    """y = tanh(W x) ⊙ sigmoid(W' x): the gated layer of Anderson et al.'s BUTD VQA model."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d_in, 2 * d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, g = self.fc(x).chunk(2, dim=-1)
        return torch.tanh(a) * torch.sigmoid(g)


class BUTD(nn.Module):
    """Bottom-up top-down attention VQA (Anderson et al. 2018; bottom-up-attention-vqa's
    `build_baseline0_newatt`) with grid cells in place of detector boxes: GRU question
    encoder; top-down attention over cells (ReLU projections of cell and question, their
    product, dropout, a linear score, a softmax over real cells); the attended raw features
    and the question fused by q_net(q) ⊙ v_net(v); MLP classifier.

    fusion="relu", weight_norm=True, dropout=0.2, left_padded=True, no feature norm and no
    cell boxes is the reference exactly; fusion="gated_tanh" is Teney et al.'s gated layer."""

    def __init__(self, *, vocab_size: int, num_answers: int, channels: int, word_dim: int = 300,
                 hidden: int = 1024, use_pos: bool = True, dropout: float = 0.2, classifier_dropout: float = 0.5,
                 fusion: str = "gated_tanh", weight_norm: bool = False, feature_norm: bool = True,
                 left_padded: bool = False) -> None:
        super().__init__()
        if fusion not in ("relu", "gated_tanh"):
            raise ConfigError(f"butd.fusion={fusion!r}; use relu or gated_tanh")
        self.use_pos, self.left_padded = use_pos, left_padded
        v_dim = channels + (4 if use_pos else 0)
        self.v_norm = FeatureNorm(channels) if feature_norm else nn.Identity()
        self.w_emb = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.q_rnn = nn.GRU(word_dim, hidden, batch_first=True)
        wn = weight_norm
        self.att_v = nn.Sequential(_linear(v_dim, hidden, wn), nn.ReLU())
        self.att_q = nn.Sequential(_linear(hidden, hidden, wn), nn.ReLU())
        self.att_out = _linear(hidden, 1, wn)
        if fusion == "relu":  # FCNet([H, H]) and FCNet([V, H]): weight-normed Linear + ReLU
            self.q_net = nn.Sequential(_linear(hidden, hidden, wn), nn.ReLU())
            self.v_net = nn.Sequential(_linear(v_dim, hidden, wn), nn.ReLU())
        else:
            self.q_net, self.v_net = GatedTanh(hidden, hidden), GatedTanh(v_dim, hidden)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Sequential(
            _linear(hidden, 2 * hidden, wn), nn.ReLU(), nn.Dropout(classifier_dropout), _linear(2 * hidden, num_answers, wn)
        )

    def forward(self, grid, mask, pos, tokens) -> torch.Tensor:
        v = self.v_norm(grid)  # [B, N, C]
        if self.use_pos:
            v = torch.cat([v, pos.to(v.dtype)], dim=-1)  # [B, N, C+4]
        out = self.q_rnn(self.w_emb(tokens))[0]  # [B, T, H]
        # left-padded (the reference): the last step is the last word; right-padded: pick it
        q = out[:, -1] if self.left_padded else _last_state(out, tokens)  # [B, H]
        joint = self.att_v(v) * self.att_q(q).unsqueeze(1)  # [B, N, H]
        att = _masked_softmax(self.att_out(self.drop(joint)), mask)  # [B, N, 1]
        v_att = (att * v).sum(1)  # [B, C(+4)]
        fused = self.q_net(q) * self.v_net(v_att)  # [B, H]
        return self.classifier(fused)  # [B, A]


class MHAtt(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.h, self.p = heads, dropout
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x, y, y_mask) -> torch.Tensor:
        """x [B, Nq, d] attends over y [B, Nk, d]; y_mask [B, Nk] True = real (or None)."""
        B, Nq, d = x.shape
        split = lambda t: t.view(B, -1, self.h, d // self.h).transpose(1, 2)  # noqa: E731  [B, h, N, d/h]
        # masked keys get -1e9 added (mcan-vqa's masked_fill): a fully masked row stays finite
        attn_mask = None if y_mask is None else (~y_mask[:, None, None, :]).to(x.dtype) * MASKED  # [B, 1, 1, Nk]
        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(y)), split(self.v(y)),
                                             attn_mask=attn_mask, dropout_p=self.p if self.training else 0.0)
        return self.o(out.transpose(1, 2).reshape(B, Nq, d))


class FFN(nn.Sequential):
    def __init__(self, d: int, ff: int, dropout: float) -> None:
        super().__init__(nn.Linear(d, ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff, d))


class SA(nn.Module):
    """Self-attention block (post-norm, as MCAN)."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float, norm: str = "torch") -> None:
        super().__init__()
        self.att, self.ffn = MHAtt(d, heads, dropout), FFN(d, ff, dropout)
        self.n1, self.n2, self.drop = _norm(d, norm), _norm(d, norm), nn.Dropout(dropout)

    def forward(self, x, x_mask):
        x = self.n1(x + self.drop(self.att(x, x, x_mask)))
        return self.n2(x + self.drop(self.ffn(x)))


class SGA(nn.Module):
    """Self-attention on image cells, then attention guided by the question, then FFN."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float, norm: str = "torch") -> None:
        super().__init__()
        self.self_att, self.guided, self.ffn = MHAtt(d, heads, dropout), MHAtt(d, heads, dropout), FFN(d, ff, dropout)
        self.n1, self.n2, self.n3, self.drop = _norm(d, norm), _norm(d, norm), _norm(d, norm), nn.Dropout(dropout)

    def forward(self, x, x_mask, y, y_mask):
        x = self.n1(x + self.drop(self.self_att(x, x, x_mask)))
        x = self.n2(x + self.drop(self.guided(x, y, y_mask)))
        return self.n3(x + self.drop(self.ffn(x)))


class AttFlat(nn.Module):
    """MCAN's attentional reduction: a softmax over positions, weighted sum, projection."""

    def __init__(self, d: int, out: int, dropout: float) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d, 1))
        self.proj = nn.Linear(d, out)

    def forward(self, x, mask):
        att = _masked_softmax(self.score(x), mask)  # [B, N, 1]
        return self.proj((att * x).sum(1))  # [B, out]


class MCAN(nn.Module):
    """MCAN-small (Yu et al. 2019), encoder-decoder: an LSTM over words, `layers` self-attention
    blocks on the question (encoder), `layers` self + question-guided attention blocks on the
    grid cells (decoder, each guided by the encoder's output), attentional reduction of both,
    LayerNorm(q + v), linear classifier."""

    def __init__(self, *, vocab_size: int, num_answers: int, channels: int, word_dim: int = 300, d_model: int = 512,
                 layers: int = 6, heads: int = 8, ff_dim: int = 2048, dropout: float = 0.1, use_pos: bool = True,
                 layer_norm: str = "torch", feature_norm: bool = True, pad_row: bool = True) -> None:
        super().__init__()
        self.use_pos = use_pos
        # pad_row=False: the PAD word (id 0) has a trained vector like any word (mcan-vqa)
        self.w_emb = nn.Embedding(vocab_size, word_dim, padding_idx=0 if pad_row else None)
        self.lstm = nn.LSTM(word_dim, d_model, batch_first=True)
        self.v_norm = FeatureNorm(channels) if feature_norm else nn.Identity()
        self.v_proj = nn.Linear(channels + (4 if use_pos else 0), d_model)
        self.enc = nn.ModuleList(SA(d_model, heads, ff_dim, dropout, layer_norm) for _ in range(layers))
        self.dec = nn.ModuleList(SGA(d_model, heads, ff_dim, dropout, layer_norm) for _ in range(layers))
        self.q_flat, self.v_flat = AttFlat(d_model, 2 * d_model, dropout), AttFlat(d_model, 2 * d_model, dropout)
        self.norm = _norm(2 * d_model, layer_norm)
        self.classifier = nn.Linear(2 * d_model, num_answers)

    def forward(self, grid, mask, pos, tokens) -> torch.Tensor:
        q_mask = tokens != 0  # [B, T]
        q = self.lstm(self.w_emb(tokens))[0]  # [B, T, d]
        v = self.v_norm(grid)
        if self.use_pos:
            v = torch.cat([v, pos.to(v.dtype)], dim=-1)
        v = self.v_proj(v)  # [B, N, d]
        for blk in self.enc:
            q = blk(q, q_mask)
        for blk in self.dec:
            v = blk(v, mask, q, q_mask)
        fused = self.norm(self.q_flat(q, q_mask) + self.v_flat(v, mask))  # [B, 2d]
        return self.classifier(fused)  # [B, A]


MODELS = ("butd", "mcan")  # each has its config section of the same name in VQA-style task configs


def build_model(cfg, *, vocab_size: int, num_answers: int, channels: int, left_padded: bool = False) -> nn.Module:
    """The model named by `cfg.model`, sized by its section (`cfg.butd` or `cfg.mcan`) of a
    VQA-style config (VQA, GQA). left_padded: questions are padded at the front (BUTD's
    reference tokenisation)."""
    sizes = dict(vocab_size=vocab_size, num_answers=num_answers, channels=channels, use_pos=cfg.use_pos,
                 feature_norm=cfg.feature_norm)
    if cfg.model == "butd":
        m = cfg.butd
        return BUTD(**sizes, word_dim=m.word_dim, hidden=m.hidden, dropout=m.dropout, classifier_dropout=m.classifier_dropout,
                    fusion=m.fusion, weight_norm=m.weight_norm, left_padded=left_padded)
    if cfg.model == "mcan":
        m = cfg.mcan
        if left_padded:
            raise ConfigError("MCAN reads right-padded questions; use question_text=mcan or clipfeat with model=mcan")
        return MCAN(**sizes, word_dim=m.word_dim, d_model=m.d_model, layers=m.layers, heads=m.heads, ff_dim=m.ff_dim,
                    dropout=m.dropout, layer_norm=m.layer_norm, pad_row=cfg.question_text != "mcan")
    raise ConfigError(f"model={cfg.model!r} is not a VQA model; use --set model=butd or model=mcan")
