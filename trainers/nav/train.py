"""`clipfeat train nav`: an R2R instruction follower trained on cached panorama features.

    clipfeat train nav --features features/r2r-RN50x4.zarr --data DATA/r2r
    clipfeat train nav ... --set feedback=none epochs=40 --out runs/follower
    clipfeat train nav --resume runs/follower

Read top to bottom: config → a rollout (teacher-forced, sampled or greedy, with the expert's
action as the label at every visited state) → predictions → the experiment (data: episodes,
vocabulary, graphs, every viewpoint's 36 view features in memory; the agent; the step: a
teacher-forced and a sampled rollout; evaluation with the official R2R metrics; greedy
trajectories of the best checkpoint in the official results format `[{"instr_id",
"trajectory": [[vp, heading, elevation], …]}]`). The loop, checkpoints and resume are
`trainers.trainer.train`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clipfeat.features import FeatureStore

from ..config import ConfigError, TrainConfig, opt
from ..grids import Vocab
from ..rundir import RunDir
from ..trainer import feature_rows, train
from . import TASK, metric
from .data import Episode, PanoFeatures, build_vocab, encode_instructions, load_split
from .env import MAX_STEPS, NavBatch, World, make_batch
from .graphs import load_graphs
from .models import Follower

__all__ = ["Config", "Experiment", "NavConfig", "main", "predict", "prepare", "rollout"]

METRIC = "success_rate"


@dataclass
class NavConfig(TrainConfig):
    # data
    train_splits: tuple[str, ...] = opt(("train",), "R2R splits to train on")
    eval_split: str = opt("val_unseen", "split scored with the official metrics after every epoch")
    predict_splits: tuple[str, ...] = opt(("val_seen",), "more splits to write trajectories for (scored when they have paths)")
    connectivity: str = opt("", "folder of {scan}_connectivity.json (default: DATA/connectivity)")
    min_word_count: int = opt(5, "vocabulary: words seen at least this often in training instructions")
    max_tokens: int = opt(80, "instruction length in tokens (longer ones are cut)")
    # agent
    word_dim: int = opt(256, "word embedding size")
    hidden: int = opt(512, "LSTM size (the encoder's two directions together)")
    action_dim: int = opt(64, "embedding of the previous action's direction")
    angle_size: int = opt(128, "angle feature size: [sin h, cos h, sin e, cos e] repeated")
    dropout: float = opt(0.5, "dropout on words, instruction context and the decoder state")
    feat_dropout: float = opt(0.3, "environmental dropout: feature channels dropped for a whole episode")
    # training
    feedback: str = opt("sample", "second rollout per batch: sample (actions drawn from the agent) or none")
    ml_weight: float = opt(1.0, "weight of the teacher-forced rollout's loss (the sampled one has weight 1)")
    lr: float = opt(1e-4, "peak learning rate (EnvDrop: 1e-4)")
    epochs: int = opt(40, "passes over the training instructions")
    batch_size: int = opt(64, "instructions per step")
    warmup_steps: int = opt(0, "linear warm-up steps, then cosine decay to lr_min_ratio * lr")
    grad_clip: float = opt(40.0, "clip the global gradient norm to this (0 = off)")


Config = NavConfig


def rollout(model: Follower, batch: NavBatch, tokens: torch.Tensor, device: torch.device, *, mode: str,
            labels: bool) -> torch.Tensor | None:
    """Run `batch` to the end. mode: teacher (follow the expert), sample (draw from the agent),
    greedy (argmax). With `labels`, returns the cross-entropy of the agent's choice against the
    expert's action at every state visited, averaged over (episode, step)."""
    ctx, ctx_mask, h, c = model.encode(tokens.to(device))
    env_mask = model.env_dropout_mask(len(tokens), device)
    prev = torch.zeros(len(tokens), model.angle_size, device=device)  # no previous action
    loss, count = torch.zeros((), device=device), 0
    for _ in range(MAX_STEPS + 1):
        if batch.ended.all():
            break
        obs = batch.observe(device)
        logits, (h, c) = model.step(prev, obs["pano"], obs["cand"], obs["cand_mask"], ctx, ctx_mask, h, c, env_mask)
        active = torch.from_numpy(~batch.ended).to(device)
        if labels:
            target = torch.from_numpy(batch.teacher()).to(device)
            loss = loss + F.cross_entropy(logits[active].float(), target[active], reduction="sum")
            count += int(active.sum())
        if mode == "teacher":
            action = target
        elif mode == "sample":
            action = torch.distributions.Categorical(logits=logits.float()).sample()
        else:
            action = logits.argmax(-1)
        action = action.masked_fill(~active, 0)
        # the chosen direction, as the next step's "previous action" (zeros for STOP)
        prev = obs["cand"][torch.arange(len(action), device=device), action, model.feat_dim:]
        batch.step(action.cpu().numpy())
    return loss / max(count, 1) if labels else None


@torch.no_grad()
def predict(model: Follower, world: World, episodes: list[Episode], tokens: np.ndarray, device: torch.device,
            batch_size: int) -> list[dict]:
    """Greedy trajectories in the official results format, in episode order."""
    model.eval()
    out = []
    for s in range(0, len(episodes), batch_size):
        idx = np.arange(s, min(s + batch_size, len(episodes)))
        nb = make_batch(world, episodes, idx)
        rollout(model, nb, torch.from_numpy(tokens[idx]), device, mode="greedy", labels=False)
        out += [{"instr_id": episodes[i].instr_id, "trajectory": traj} for i, traj in zip(idx, nb.trajectory)]
    return out


# `clipfeat train nav --help` shows these above the config keys
EXAMPLES = """\
  clipfeat train nav --features features/r2r-RN50x4.zarr --data DATA/r2r --out runs/nav
  clipfeat train nav --features features/r2r-RN50x4.zarr --data DATA/r2r --out runs/nav \\
                     --set connectivity=DATA/matterport/connectivity     # graphs kept elsewhere
  clipfeat train nav --list-recipes
  DATA/r2r: R2R_{train,val_seen,val_unseen,test}.json and connectivity/{scan}_connectivity.json"""


def prepare(cfg: NavConfig, *, resume: Path | None) -> NavConfig:
    if cfg.feedback not in ("sample", "none"):
        raise ConfigError(f"feedback must be sample or none, not {cfg.feedback!r}")
    return cfg


class Experiment:
    """R2R on a store of 36-view panoramas: episodes, the world, the follower, its rollouts."""

    def __init__(self, cfg: NavConfig, *, store: FeatureStore, device: torch.device, resume: dict | None) -> None:
        self.cfg, self.device = cfg, device
        self.train = [e for s in cfg.train_splits for e in load_split(cfg.data, s)]
        self.evals = load_split(cfg.data, cfg.eval_split)
        if any(len(e.path) < 2 for e in self.evals):
            raise ConfigError(f"eval_split={cfg.eval_split} has no ground-truth paths; evaluate on val_seen / val_unseen")
        self.predicted = {s: load_split(cfg.data, s) for s in cfg.predict_splits}
        scans = {e.scan for eps in (self.train, self.evals, *self.predicted.values()) for e in eps}
        self.graphs = load_graphs(cfg.connectivity or Path(cfg.data) / "connectivity", scans)
        self.feats = PanoFeatures.from_store(store, scans)
        try:
            self.world = World(self.graphs, self.feats, angle_size=cfg.angle_size)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.vocab = Vocab(resume["extra"]["vocab"]) if resume else build_vocab(self.train, cfg.min_word_count)
        self.train_tokens = encode_instructions(self.train, self.vocab, cfg.max_tokens)
        self.eval_tokens = encode_instructions(self.evals, self.vocab, cfg.max_tokens)
        print(f"{'+'.join(cfg.train_splits)}: {len(self.train)} instructions; {cfg.eval_split}: {len(self.evals)}; "
              f"{len(scans)} scans, {len(self.world.gid)} viewpoints; vocabulary {len(self.vocab)} words")
        self.steps_per_epoch = -(-len(self.train) // cfg.batch_size)
        self.split_file = {s: Path(cfg.data) / f"R2R_{s}.json" for s in (cfg.eval_split, *cfg.predict_splits)}

        self.model = Follower(vocab_size=len(self.vocab), feat_dim=self.feats.dim, angle_size=cfg.angle_size,
                              word_dim=cfg.word_dim, hidden=cfg.hidden, action_dim=cfg.action_dim, dropout=cfg.dropout,
                              feat_dropout=cfg.feat_dropout).to(device)
        self.extra = {"vocab": self.vocab.itos}
        self.title = f"R2R follower on {store.meta.encoder.model}"
        self.start = None

    def feature_sample(self) -> dict:
        """Up to 2,048 viewpoints' views [N, 36, D] (cells = views)."""
        rows = feature_rows(len(self.feats.feats), self.cfg.seed, limit=2048)
        return {"grid": self.feats.feats[torch.from_numpy(rows)], "mask": None}

    def train_batches(self, epoch: int):
        cfg = self.cfg
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(self.train))
        for s in range(0, len(order), cfg.batch_size):
            yield order[s : s + cfg.batch_size]

    def train_step(self, idx: np.ndarray) -> dict:
        cfg, model, world = self.cfg, self.model, self.world
        tokens = torch.from_numpy(self.train_tokens[idx])
        teacher = rollout(model, make_batch(world, self.train, idx), tokens, self.device, mode="teacher", labels=True)
        loss, out = cfg.ml_weight * teacher, {"teacher_loss": float(teacher.detach())}
        if cfg.feedback == "sample":
            sampled = rollout(model, make_batch(world, self.train, idx), tokens, self.device, mode="sample", labels=True)
            loss, out["sample_loss"] = loss + sampled, float(sampled.detach())
        return {"loss": loss, "samples": len(idx), **out}

    def evaluate(self, epoch: int) -> dict:
        results = predict(self.model, self.world, self.evals, self.eval_tokens, self.device, self.cfg.batch_size)
        return metric.evaluate(results, self.split_file[self.cfg.eval_split], self.graphs).to_json()

    def predict(self, run: RunDir) -> dict:
        """Greedy trajectories of every split, scored where the split has ground-truth paths."""
        cfg = self.cfg
        scores = {}
        for split, eps in {cfg.eval_split: self.evals, **self.predicted}.items():
            tokens = encode_instructions(eps, self.vocab, cfg.max_tokens)
            results = predict(self.model, self.world, eps, tokens, self.device, cfg.batch_size)
            run.write_json(run.predictions(split), results)
            if all(len(e.path) > 1 for e in eps):
                s = metric.evaluate(results, self.split_file[split], self.graphs)
                scores[split] = s.to_json()
                print(f"{split}:\n{metric.format_scores(s)}")
        return {"scores": scores}


def main(argv: list[str] | None = None):
    return train(TASK, argv)
