"""`clipfeat train nav`: an R2R instruction follower trained on cached panorama features.

    clipfeat train nav --features features/r2r-RN50x4.zarr --data DATA/r2r
    clipfeat train nav ... --set feedback=teacher epochs=40 --out runs/follower
    clipfeat train nav --resume runs/follower

Read top to bottom: config → data (episodes, vocabulary, graphs, every viewpoint's 36 view
features in memory) → the agent → a rollout (teacher-forced, sampled or greedy, with the
expert's action as the label at every visited state) → the loss → evaluation with the
official R2R metrics → the shared loop (`trainers.core.fit`) → greedy trajectories of the best
checkpoint in the official results format `[{"instr_id", "trajectory": [[vp, heading, elevation], …]}]`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clipfeat.features import open_store

from ..core import (
    autocast,
    ConfigError,
    FitResult,
    RunDir,
    TrainConfig,
    fit,
    load_checkpoint,
    make_optimizer,
    make_scheduler,
    opt,
    parse_args,
    pick_device,
    seed_everything,
)
from ..grids import Vocab
from . import metric
from .data import Episode, PanoFeatures, build_vocab, encode_instructions, load_split
from .env import MAX_STEPS, NavBatch, World, make_batch
from .graphs import load_graphs
from .models import Follower

__all__ = ["NavConfig", "main", "predict", "rollout"]


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
  DATA/r2r: R2R_{train,val_seen,val_unseen,test}.json and connectivity/{scan}_connectivity.json"""


def main(argv: list[str] | None = None) -> FitResult:
    args = parse_args(argv, NavConfig, prog="clipfeat train nav", examples=EXAMPLES,
                      description="Train an R2R follower (EnvDrop-style) on cached 36-view panorama features.")
    cfg: NavConfig = args.config
    if cfg.feedback not in ("sample", "none"):
        raise ConfigError(f"feedback must be sample or none, not {cfg.feedback!r}")
    run = RunDir.create(cfg.out_dir, "nav", resume=args.resume is not None)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)

    # -- data ---------------------------------------------------------------------------------
    train = [e for s in cfg.train_splits for e in load_split(cfg.data, s)]
    evals = load_split(cfg.data, cfg.eval_split)
    if any(len(e.path) < 2 for e in evals):
        raise ConfigError(f"eval_split={cfg.eval_split} has no ground-truth paths; evaluate on val_seen / val_unseen")
    predicted = {s: load_split(cfg.data, s) for s in cfg.predict_splits}
    scans = {e.scan for eps in (train, evals, *predicted.values()) for e in eps}
    graphs = load_graphs(cfg.connectivity or Path(cfg.data) / "connectivity", scans)
    store = open_store(cfg.features, allow_partial=True)
    feats = PanoFeatures.from_store(store, scans)
    try:
        world = World(graphs, feats, angle_size=cfg.angle_size)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    resume_from = load_checkpoint(run.latest) if args.resume else None
    vocab = Vocab(resume_from["extra"]["vocab"]) if resume_from else build_vocab(train, cfg.min_word_count)
    train_tokens = encode_instructions(train, vocab, cfg.max_tokens)
    eval_tokens = encode_instructions(evals, vocab, cfg.max_tokens)
    print(f"{'+'.join(cfg.train_splits)}: {len(train)} instructions; {cfg.eval_split}: {len(evals)}; "
          f"{len(scans)} scans, {len(world.gid)} viewpoints; vocabulary {len(vocab)} words; run folder {run.path}")
    steps_per_epoch = -(-len(train) // cfg.batch_size)

    def train_batches(epoch: int):
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train))
        for s in range(0, len(order), cfg.batch_size):
            yield order[s : s + cfg.batch_size]

    # -- agent --------------------------------------------------------------------------------
    model = Follower(vocab_size=len(vocab), feat_dim=feats.dim, angle_size=cfg.angle_size, word_dim=cfg.word_dim,
                     hidden=cfg.hidden, action_dim=cfg.action_dim, dropout=cfg.dropout,
                     feat_dropout=cfg.feat_dropout).to(device)
    if resume_from is None:  # feature statistics from up to 2,048 viewpoints
        rows = np.random.default_rng(cfg.seed).permutation(len(feats.feats))[:2048]
        model.v_norm.fit(feats.feats[torch.from_numpy(rows)], None)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, total_steps=cfg.epochs * steps_per_epoch)
    split_file = {s: Path(cfg.data) / f"R2R_{s}.json" for s in (cfg.eval_split, *cfg.predict_splits)}

    def train_step(idx: np.ndarray) -> dict:
        tokens = torch.from_numpy(train_tokens[idx])
        teacher = rollout(model, make_batch(world, train, idx), tokens, device, mode="teacher", labels=True)
        loss, out = cfg.ml_weight * teacher, {"teacher_loss": float(teacher.detach())}
        if cfg.feedback == "sample":
            sampled = rollout(model, make_batch(world, train, idx), tokens, device, mode="sample", labels=True)
            loss, out["sample_loss"] = loss + sampled, float(sampled.detach())
        return {"loss": loss, "samples": len(idx), **out}

    def evaluate(epoch: int) -> dict:
        results = predict(model, world, evals, eval_tokens, device, cfg.batch_size)
        return metric.evaluate(results, split_file[cfg.eval_split], graphs).to_json()

    result = fit(
        run=run, cfg=cfg, model=model, optimizer=optimizer, scheduler=scheduler,
        train_batches=train_batches, steps_per_epoch=steps_per_epoch, train_step=train_step,
        evaluate=evaluate, metric="success_rate", device=device, resume_from=resume_from,
        extra={"vocab": vocab.itos}, title=f"R2R follower on {store.meta.encoder.model}",
    )

    # -- trajectories of the best checkpoint -------------------------------------------------------
    model.load_state_dict(load_checkpoint(run.best if run.best.exists() else run.latest)["model"])
    scores = {}
    for split, eps in {cfg.eval_split: evals, **predicted}.items():
        with autocast(device, cfg.amp):  # the precision the logged scores were computed in
            results = predict(model, world, eps, encode_instructions(eps, vocab, cfg.max_tokens), device, cfg.batch_size)
        run.write_json(run.predictions(split), results)
        if all(len(e.path) > 1 for e in eps):
            s = metric.evaluate(results, split_file[split], graphs)
            scores[split] = s.to_json()
            print(f"{split}:\n{metric.format_scores(s)}")
    summary = {"run": str(run.path), "best_success_rate": result.best, "best_epoch": result.best_epoch,
               "train_samples_per_s": round(result.samples_per_s, 1), "scores": scores}
    print(json.dumps(summary))
    return result
