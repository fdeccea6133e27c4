"""The optimizer and the learning-rate schedule of the shared loop."""

from __future__ import annotations

import math

import torch

from .config import TrainConfig

__all__ = ["make_optimizer", "make_scheduler"]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay only on weight matrices (dim >= 2, not embeddings), as is standard.

    The fused kernel (one pass over each parameter instead of ~8 elementwise ops) where the
    parameters' device has one: on 2 CPU cores it cuts BUTD-1024's optimizer step from 28 to
    ~10 ms and its whole training step by ~18 %. Same update rule; call after `model.to(device)`.
    """
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_matrix = p.dim() >= 2 and not isinstance(module, torch.nn.Embedding)
            (decay if is_matrix and name.endswith("weight") else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in decay + no_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused or None)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """Linear warm-up, then cosine decay to `lr_min_ratio`; a LambdaLR, so its state saves."""
    warm = max(0, min(cfg.warmup_steps, total_steps // 2))
    floor = cfg.lr_min_ratio

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total_steps - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
