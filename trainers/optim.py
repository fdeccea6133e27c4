"""The optimizer and the learning-rate schedule of the shared loop (`optimizer`, `schedule` keys)."""

from __future__ import annotations

import math

import torch

from .config import ConfigError, TrainConfig

__all__ = ["lr_factor", "make_optimizer", "make_scheduler"]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """cfg.optimizer over the trainable parameters, with cfg.lr, cfg.betas, cfg.eps.

    adamw: weight decay only on weight matrices (dim >= 2, not embeddings), as is standard,
    and the fused kernel (one pass over each parameter instead of ~8 elementwise ops) where
    the parameters' device has one: on 2 CPU cores it cuts BUTD-1024's optimizer step from 28
    to ~10 ms and its whole training step by ~18 %. adam / adamax: one group, no weight decay
    (the references: mcan-vqa core/model/optim.py:56-66, bottom-up-attention-vqa train.py:27).
    Call after `model.to(device)`.
    """
    betas = tuple(cfg.betas)
    if len(betas) != 2:
        raise ConfigError(f"betas={cfg.betas}: give two values, e.g. --set betas=0.9,0.98")
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer in ("adam", "adamax"):
        if cfg.weight_decay:
            raise ConfigError(f"weight_decay is for optimizer=adamw; {cfg.optimizer} runs without it (as its recipes' sources)")
        cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.Adamax
        return cls(params, lr=cfg.lr, betas=betas, eps=cfg.eps)
    if cfg.optimizer != "adamw":
        raise ConfigError(f"optimizer={cfg.optimizer!r}; use adamw, adam or adamax")
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_matrix = p.dim() >= 2 and not isinstance(module, torch.nn.Embedding)
            (decay if is_matrix and name.endswith("weight") else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in decay + no_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, eps=cfg.eps, fused=fused or None)


def lr_factor(cfg: TrainConfig, *, total_steps: int, steps_per_epoch: int, samples_per_epoch: int):
    """step (0-indexed optimizer step) -> lr / cfg.lr for cfg.schedule."""
    if cfg.schedule == "constant":
        return lambda step: 1.0
    if cfg.schedule == "mcan":
        # mcan-vqa core/model/optim.py:21-49: the rate of update s (1-indexed) is 1/4, 2/4, 3/4
        # of lr_base while s <= int(N / B * k) for k = 1, 2, 3 (N training samples, B the batch),
        # then lr_base; core/exec.py:139-140 multiplies lr_base by 0.2 at the start of epochs
        # 10 and 12 (0-indexed), i.e. from the 11th and 13th.
        ends = [int(samples_per_epoch / cfg.batch_size * k) for k in (1, 2, 3)]
        decays = tuple(cfg.lr_decay_epochs)

        def mcan(step: int) -> float:
            s, epoch = step + 1, step // steps_per_epoch
            warm = next((k / 4 for k, end in zip((1, 2, 3), ends) if s <= end), 1.0)
            return warm * cfg.lr_decay_rate ** sum(epoch >= d for d in decays)

        return mcan
    if cfg.schedule != "cosine":
        raise ConfigError(f"schedule={cfg.schedule!r}; use cosine, constant or mcan")
    warm = max(0, min(cfg.warmup_steps, total_steps // 2))
    floor = cfg.lr_min_ratio

    def cosine(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total_steps - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return cosine


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int, *, steps_per_epoch: int | None = None,
                   samples_per_epoch: int | None = None):
    """A LambdaLR over `lr_factor` (so its state saves): the lr of 0-indexed step i is
    cfg.lr * lr_factor(i)."""
    steps_per_epoch = steps_per_epoch or max(1, total_steps // max(1, cfg.epochs))
    samples = samples_per_epoch or steps_per_epoch * cfg.batch_size
    factor = lr_factor(cfg, total_steps=total_steps, steps_per_epoch=steps_per_epoch, samples_per_epoch=samples)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
