"""Where and in what precision a run computes: device choice, seeding, the autocast region."""

from __future__ import annotations

import functools
import random

import numpy as np
import torch

from .config import ConfigError

__all__ = ["autocast", "autocast_dtype", "pick_device", "seed_everything"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA GPU is visible; use --set device=cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r} is not a torch device; use auto, cpu or cuda") from None


def autocast_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """The autocast dtype of training and evaluation on `device`, or None for float32.

    GPUs: bfloat16 (float16 where bfloat16 is missing). CPUs with native bfloat16 instructions
    (AVX512-BF16, AMX): bfloat16, which runs the trainers' large matmuls 2-4x faster (BUTD's cell
    projection: 4x on a 2-core Zen 4); other CPUs would emulate it, slower than float32.
    """
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and _cpu_has_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device, enabled: bool = True):
    """The autocast region of training, evaluation and final predictions (one precision for all,
    so a run's predictions score exactly what its log says)."""
    dtype = autocast_dtype(device, enabled)
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


@functools.lru_cache(maxsize=None)  # asked at every training step; the answer never changes
def _cpu_has_bf16() -> bool:
    """torch's own checks (private, hence looked up defensively)."""
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(bool(c()) for c in checks if c is not None)
