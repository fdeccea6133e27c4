"""`clipfeat train caption`: a COCO / Flickr30k captioner trained on cached CLIP grid features.

    clipfeat train caption --features features/coco-RN50x4.zarr --data DATA/coco              # stage 1: cross-entropy
    clipfeat train caption ... --recipe transformer-scst --set init_from=runs/xe --out runs/scst   # stage 2: SCST
    clipfeat train caption --resume runs/scst                                                  # after a crash, or for more epochs

Read top to bottom: config → the two losses (cross-entropy with label smoothing;
self-critical sequence training with a CIDEr-D reward) → decoding a split → the fixed-caption
baseline → the experiment (data: splits, vocabulary, references as ids for CIDEr; the model,
from an XE checkpoint for SCST; the step; greedy CIDEr-D every epoch; beam-search
predictions of the best checkpoint in the COCO results format `[{"image_id": int, "caption":
str}]`, scored with pycocoevalcap). The loop, checkpoints and resume are `trainers.trainer.train`'s.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clipfeat.features import FeatureStore

from ..config import ConfigError, TrainConfig, opt
from ..grids import Vocab, require_grids
from ..rundir import RunDir, load_checkpoint
from ..trainer import feature_rows, train
from . import TASK, metric
from .cider import CiderD
from .data import BOS, EOS, PAD, Batches, CaptionSplit, WordIds, build_vocab, encode_split, load_splits, pick_splits
from .decoding import beam_search, greedy, sample, sequence_logprobs, strip
from .models import CaptionModel, Memory, build_model

__all__ = ["CaptionConfig", "Config", "Experiment", "cider_candidates", "decode_split", "encode_batch",
           "fixed_caption_baseline", "main", "prepare", "scst_loss", "to_results", "xe_loss"]

METRIC = "CIDEr"
MODEL_FIELDS = ("d_model", "enc_layers", "dec_layers", "heads", "ff_dim", "use_pos", "use_pooled", "max_len")


@dataclass
class CaptionConfig(TrainConfig):
    # data
    train_splits: tuple[str, ...] = opt(("train", "restval"), "splits to train on (Karpathy: train,restval)")
    eval_split: str = opt("val", "split scored (greedy CIDEr-D) after every epoch")
    predict_splits: tuple[str, ...] = opt(("test",), "more splits to caption with the best checkpoint (and score)")
    split_file: str = opt("", "official captions files only: JSON {split: [image ids]} regrouping them")
    min_word_count: int = opt(5, "vocabulary: words seen at least this often in training captions")
    max_len: int = opt(16, "caption length in words (training captions are cut, decoding stops)")
    seq_per_img: int = opt(5, "captions per image in a training batch (XE)")
    buffer_shards: int = opt(4, "store shards mixed together when shuffling (read locality vs. randomness)")
    # model
    d_model: int = opt(512, "transformer width")
    enc_layers: int = opt(3, "encoder layers over the grid cells")
    dec_layers: int = opt(3, "decoder layers")
    heads: int = opt(8, "attention heads")
    ff_dim: int = opt(2048, "feed-forward size")
    dropout: float = opt(0.1, "dropout (attention, feed-forward, embeddings)")
    use_pos: bool = opt(True, "add each grid cell's box (x0, y0, x1, y1), projected, to its feature")
    use_pooled: bool = opt(False, "add the store's pooled embedding as one more encoder token")
    # stage 1: cross-entropy
    label_smoothing: float = opt(0.0, "cross-entropy label smoothing, e.g. 0.1; off by default: a smoothed model's flat "
                                 "tail makes SCST's samples noisy (SCST from a 0.1 model did not gain CIDEr)")
    # stage 2: self-critical sequence training
    scst: bool = opt(False, "train with SCST (CIDEr-D reward) instead of cross-entropy; needs init_from")
    init_from: str = opt("", "SCST: the XE run folder (its best checkpoint) or a checkpoint file to start from")
    scst_samples: int = opt(5, "SCST: captions sampled per image")
    scst_baseline: str = opt("greedy", "SCST: greedy (reward of the greedy caption) or mean (of the other samples)")
    # decoding
    beam_size: int = opt(3, "beam size of the final predictions (1 = greedy)")
    length_penalty: float = opt(0.0, "beam search picks by log-prob / length**length_penalty")
    final_metrics: bool = opt(True, "score the final predictions with pycocoevalcap (BLEU, METEOR, ROUGE-L, CIDEr)")
    # optimisation (overrides of the shared defaults; the recipes set them)
    lr: float = opt(5e-4, "peak learning rate (AdamW)")
    epochs: int = opt(15, "passes over the training images")
    batch_size: int = opt(50, "images per step (each with seq_per_img captions or scst_samples samples)")
    warmup_steps: int = opt(1000, "linear warm-up steps, then cosine decay to lr_min_ratio * lr")
    weight_decay: float = opt(0.01, "AdamW weight decay on matrices")


Config = CaptionConfig


# -- the two losses ---------------------------------------------------------------------------------


def encode_batch(model: CaptionModel, batch: dict, device: torch.device) -> Memory:
    """The model's memory of a `Batches` batch (features moved to `device` as float32)."""
    pooled = batch.get("pooled")
    mask = batch["mask"]
    return model.encode(batch["grid"].to(device, torch.float32, non_blocking=True),
                        None if mask is None else mask.to(device), batch["pos"].to(device),
                        None if pooled is None else pooled.to(device))


def _repeat(n_images: int, k: int, device: torch.device) -> torch.Tensor:
    return torch.arange(n_images, device=device).repeat_interleave(k)  # image b -> rows b·k … b·k+k−1


def xe_loss(model: CaptionModel, batch: dict, device: torch.device, label_smoothing: float) -> torch.Tensor:
    """Teacher-forced cross-entropy per word (EOS included, padding not), averaged over words."""
    caps = batch["captions"].to(device)  # [B, S, L]
    B, S, L = caps.shape
    memory = encode_batch(model, batch, device).index(_repeat(B, S, device))  # encoder once per image
    targets = caps.flatten(0, 1)  # [B·S, L]
    inputs = torch.cat([torch.full_like(targets[:, :1], BOS), targets[:, :-1]], dim=1)
    logits = model(memory, inputs)  # [B·S, L, V]
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=PAD,
                           label_smoothing=label_smoothing)


def cider_candidates(tokens: torch.Tensor) -> np.ndarray:
    """Decoder output [N, L] -> CiderD candidates: words, then 0 from EOS on."""
    ended = (tokens == EOS).cumsum(1) > 0
    return tokens.masked_fill(ended, PAD).cpu().numpy()


def scst_loss(model: CaptionModel, batch: dict, device: torch.device, cider: CiderD, *, samples: int,
              baseline: str, max_len: int) -> dict:
    """Self-critical sequence training (Rennie et al. 2017): sample captions, reward each with
    CIDEr-D against the image's training references, subtract a baseline (the greedy caption's
    reward, or the mean reward of the image's other samples), and push up the log-probability
    of the samples that beat it. Returns {"loss", "reward", "baseline"}."""
    idx = batch["idx"].numpy()  # split positions = CiderD groups
    B = len(idx)
    memory = encode_batch(model, batch, device)
    caps = sample(model, memory, samples, max_len)  # [B·K, L], sampled in training mode (dropout on)
    reward = cider.score(cider_candidates(caps), np.repeat(idx, samples)).reshape(B, samples)  # [B, K]
    if baseline == "greedy":  # the test-time policy: eval mode, no dropout
        model.eval()
        with torch.no_grad():
            g, _ = greedy(model, encode_batch(model, batch, device), max_len)
        model.train()
        base = np.repeat(cider.score(cider_candidates(g), idx)[:, None], samples, axis=1)
    else:  # leave-one-out mean of the image's other samples
        base = (reward.sum(1, keepdims=True) - reward) / (samples - 1)
    advantage = torch.from_numpy((reward - base).reshape(-1)).float().to(device)  # [B·K]
    logp = sequence_logprobs(model, memory.index(_repeat(B, samples, device)), caps)  # [B·K, L]
    words = (caps != PAD).sum()
    loss = -(advantage[:, None] * logp).sum() / words
    return {"loss": loss, "reward": float(reward.mean()), "baseline": float(base.mean())}


# -- decoding a split ---------------------------------------------------------------------------------


@torch.no_grad()
def decode_split(model: CaptionModel, batches: Batches, device: torch.device, *, beam_size: int, max_len: int,
                 length_penalty: float = 0.0) -> torch.Tensor:
    """Captions of every image of the split, in split order -> tokens [I, max_len+1]."""
    model.eval()
    out = []
    for batch in batches():
        memory = encode_batch(model, batch, device)
        if beam_size == 1:
            tokens, _ = greedy(model, memory, max_len)
        else:
            tokens, _ = beam_search(model, memory, beam_size, max_len, length_penalty)
        out.append(tokens.cpu())
    return torch.cat(out)


def to_results(split: CaptionSplit, tokens: torch.Tensor, vocab: Vocab) -> list[dict]:
    return [{"image_id": int(i), "caption": " ".join(vocab.itos[t] for t in words)}
            for i, words in zip(split.image_ids, strip(tokens))]


def fixed_caption_baseline(train: CaptionSplit, evals: CaptionSplit, cider: CiderD, top: int = 20) -> tuple[float, list[int]]:
    """The best single caption for every image: the highest eval CIDEr-D among the `top` most
    frequent training captions. A captioner that looks at the image must clear it."""
    counts = Counter(tuple(r) for refs in train.refs for r in refs)
    common = [list(c) for c, _ in counts.most_common(top)]
    width = max(len(c) for c in common)
    cands = np.zeros((len(common), width), dtype=np.int64)
    for k, c in enumerate(common):
        cands[k, : len(c)] = c
    n = len(evals)
    scores = cider.score(np.repeat(cands, n, axis=0), np.tile(np.arange(n), len(common))).reshape(len(common), n)
    best = int(scores.mean(1).argmax())
    return float(scores[best].mean()), common[best]


# -- the experiment ----------------------------------------------------------------------------------


def _init_checkpoint(path: str) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / "ckpt_best.pt" if (p / "ckpt_best.pt").exists() else p / "ckpt_latest.pt"
    if not p.is_file():
        raise ConfigError(f"init_from={path}: no checkpoint there; give an XE run folder or a ckpt_*.pt file")
    ck = load_checkpoint(p)
    if "vocab" not in ck.get("extra", {}):
        raise ConfigError(f"init_from={path} is not a caption checkpoint (no vocabulary in it)")
    return ck


def prepare(cfg: CaptionConfig, *, resume: Path | None) -> CaptionConfig:
    """Checks that need no data; SCST takes its architecture from the XE checkpoint it starts from."""
    if cfg.scst and not cfg.init_from and resume is None:
        raise ConfigError("scst=true starts from a trained captioner: add --set init_from=RUN_DIR of an XE run")
    if cfg.scst_baseline not in ("greedy", "mean") or (cfg.scst_baseline == "mean" and cfg.scst_samples < 2):
        raise ConfigError("scst_baseline must be greedy, or mean with scst_samples >= 2")
    if cfg.scst and cfg.init_from and resume is None:
        init = _init_checkpoint(cfg.init_from)
        cfg = dataclasses.replace(cfg, **{k: init["config"][k] for k in MODEL_FIELDS})
    return cfg


# `clipfeat train caption --help` shows these above the config keys
EXAMPLES = """\
  clipfeat train caption --features features/coco-RN50x4.zarr --data DATA/coco --out runs/xe     # stage 1: XE
  clipfeat train caption --features features/coco-RN50x4.zarr --data DATA/coco --out runs/scst \\
                         --recipe transformer-scst --set init_from=runs/xe                    # stage 2: SCST
  clipfeat train caption --list-recipes
  DATA/coco: Karpathy's dataset_coco.json (or the folder holding it), or a folder with annotations/captions_{train,val}2014.json
  Flickr30k: --data DATA/flickr30k/dataset_flickr30k.json --set train_splits=train (Karpathy's Flickr30k has no
             restval) with a store of `clipfeat extract --dataset flickr30k`"""


class Experiment:
    """Captioning on a store of per-image grids: data, the model, the XE or SCST step, CIDEr-D."""

    def __init__(self, cfg: CaptionConfig, *, store: FeatureStore, device: torch.device, resume: dict | None) -> None:
        self.cfg, self.store, self.device = cfg, store, device
        channels = require_grids(store)
        self.splits = load_splits(cfg.data, cfg.split_file)
        train_raw = pick_splits(self.splits, cfg.train_splits, "train_splits")
        eval_raw = pick_splits(self.splits, (cfg.eval_split,), "eval_split")
        for s in cfg.predict_splits:
            pick_splits(self.splits, (s,), "predict_splits")  # fail now, not after training
        self.start = _init_checkpoint(cfg.init_from) if cfg.scst and cfg.init_from and resume is None else None
        source = resume or self.start
        self.vocab = Vocab(source["extra"]["vocab"]) if source else build_vocab(train_raw, cfg.min_word_count)
        self.word_ids = WordIds(self.vocab)
        self.train, self.evals = self.encode(train_raw), self.encode(eval_raw)
        if not len(self.train) or not len(self.evals):
            raise ConfigError(f"no images of {cfg.train_splits} / {cfg.eval_split} are in {cfg.features}")
        print(f"vocabulary: {len(self.vocab)} words; {'scst' if cfg.scst else 'xe'}")
        self.loader = dict(store=store, batch_size=cfg.batch_size, pooled=cfg.use_pooled)
        self.train_batches = Batches(self.train, **self.loader, shuffle=True, seq_per_img=cfg.seq_per_img, seed=cfg.seed,
                                     buffer_shards=cfg.buffer_shards)
        self.eval_batches = Batches(self.evals, **self.loader, shuffle=False)
        self.steps_per_epoch = len(self.train_batches)

        # CIDEr-D with document frequencies of the eval references (what pycocoevalcap computes on
        # that split) for evaluation, of the training references for the SCST reward.
        self.eval_cider = CiderD(self.evals.refs)
        self.train_cider = CiderD(self.train.refs) if cfg.scst else None
        self.baseline, fixed = fixed_caption_baseline(self.train, self.evals, self.eval_cider)
        print(f"fixed-caption baseline: CIDEr-D {self.baseline:.3f} for \"{' '.join(self.word_ids.itos[t] for t in fixed)}\"")

        self.model = build_model(cfg, vocab_size=len(self.vocab), channels=channels,
                                 pooled_dim=store.meta.layout.pooled_dim).to(device)
        if self.start is not None:  # SCST: the XE model, its feature statistics included
            self.model.load_state_dict(self.start["model"])
        self.extra = {"vocab": self.vocab.itos}
        self.title = f"captioning ({'scst' if cfg.scst else 'xe'}) on {store.meta.encoder.model}"

    def encode(self, raw) -> CaptionSplit:
        cfg = self.cfg
        sp = encode_split(raw, self.store, self.vocab, self.word_ids, max_len=cfg.max_len, strict=cfg.strict)
        note = f" ({sp.skipped} skipped: not in the store)" if sp.skipped else ""
        print(f"{sp.name}: {len(sp)} of {len(raw.image_ids)} images, {len(sp.caps)} captions{note}")
        return sp

    def feature_sample(self) -> dict:
        return self.train_batches.load(feature_rows(len(self.train), self.cfg.seed))

    def train_step(self, batch: dict) -> dict:
        cfg = self.cfg
        if cfg.scst:
            out = scst_loss(self.model, batch, self.device, self.train_cider, samples=cfg.scst_samples,
                            baseline=cfg.scst_baseline, max_len=cfg.max_len)
        else:
            out = {"loss": xe_loss(self.model, batch, self.device, cfg.label_smoothing)}
        return {**out, "samples": len(batch["idx"])}

    def evaluate(self, epoch: int) -> dict:
        tokens = decode_split(self.model, self.eval_batches, self.device, beam_size=1, max_len=self.cfg.max_len)
        score = self.eval_cider.score(cider_candidates(tokens), np.arange(len(self.evals)))
        return {"CIDEr": float(score.mean()), "baseline": self.baseline}

    def predict(self, run: RunDir) -> dict:
        """Beam-search captions of the eval and predict splits, scored with pycocoevalcap."""
        cfg = self.cfg
        scores = {}
        for name in dict.fromkeys((cfg.eval_split, *cfg.predict_splits)):
            sp = self.evals if name == cfg.eval_split else self.encode(pick_splits(self.splits, (name,), "predict_splits"))
            tokens = decode_split(self.model, Batches(sp, **self.loader, shuffle=False), self.device,
                                  beam_size=cfg.beam_size, max_len=cfg.max_len, length_penalty=cfg.length_penalty)
            results = to_results(sp, tokens, self.vocab)
            run.write_json(run.predictions(name), results)
            if cfg.final_metrics:
                s = metric.evaluate(results, dict(zip(sp.image_ids.tolist(), sp.raw)))
                run.write_json(run.path / f"scores_{name}.json", s.to_json())
                print(f"{name} (beam {cfg.beam_size}):\n{metric.format_scores(s)}")
                scores[name] = s.to_json()
        return {"fixed_caption_CIDEr": self.baseline, "scores": scores}


def main(argv: list[str] | None = None):
    return train(TASK, argv)
