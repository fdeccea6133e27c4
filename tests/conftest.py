"""Shared test helpers: tiny stores with known values written through the real writer, tiny
random open_clip models (configs + checkpoints), and one local Ray for the whole session.

`CLIPFEAT_TEST_BF16=0 make test` runs every trainer as on a CPU without native bfloat16
(autocast off: float32 throughout), whatever this CPU has; unset, the trainers use what the
CPU offers (`amp` on by default). CI and the closing notes run the suite both ways."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

warnings.filterwarnings("ignore", module="zarr")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _cpu_bf16_switch():
    """CLIPFEAT_TEST_BF16=0: the trainers see a CPU without native bfloat16 (see the docstring)."""
    if os.environ.get("CLIPFEAT_TEST_BF16") != "0":
        yield
        return
    from clipfeat.trainers import device

    saved = device._cpu_has_bf16
    device._cpu_has_bf16 = lambda: False
    yield
    device._cpu_has_bf16 = saved


def build_store(
    path,
    *,
    n: int = 70,
    shard_size: int = 16,
    pooled_dim: int = 8,
    grid_hw=(3, 3),
    channels: int = 4,
    views: int | None = None,
    variable: bool = False,
    with_grid: bool = True,
    codec: str = "zstd",
    keys=None,
    seed: int = 0,
    finalize: bool = True,
    failed: dict | None = None,
    shards=None,
    model: str = "RN50",
):
    """Write a store at `path`; return (writer or meta, values dict) with the exact stored values."""
    from clipfeat.features import DatasetInfo, EncoderInfo, Layout, PreprocessInfo, StoreMeta, create_store

    rng = np.random.default_rng(seed)
    keys = keys or [str(1000 + 7 * i) for i in range(n)]
    v = (views,) if views else ()
    cells = grid_hw[0] * grid_hw[1]
    layout = Layout(
        pooled_dim=pooled_dim,
        grid_channels=channels if with_grid else None,
        grid_hw=None if variable or not with_grid else tuple(grid_hw),
        grid_max_cells=cells if variable else None,
        views=views,
    )
    meta = StoreMeta.build(
        dataset=DatasetInfo(name="coco", manifest_sha256="f" * 64, num_items=n, splits={"val2014": n}),
        encoder=EncoderInfo(model=model, pretrained=None),
        preprocess=PreprocessInfo(mode="aspect" if variable else "fixed", size=None if variable else 224),
        layout=layout,
        shard_size=shard_size,
    )
    vals = {"keys": keys, "pooled": rng.standard_normal((n,) + v + (pooled_dim,)).astype(np.float16)}
    if with_grid:
        vals["grid"] = np.maximum(rng.standard_normal((n,) + v + (cells, channels)), 0).astype(np.float16)
    if variable:
        hw = np.stack([rng.integers(1, grid_hw[0] + 1, n), rng.integers(1, grid_hw[1] + 1, n)], 1).astype(np.int32)
        for i, (h, w) in enumerate(hw):
            vals["grid"][i, h * w :] = 0  # padding is zero
        vals["grid_hw"] = hw
    w = create_store(os.fspath(path), meta=meta, keys=keys, codec=codec)
    failed = failed or {}
    for k in range(meta.shards.count) if shards is None else shards:
        r = w.shard_rows(k)
        sl = slice(r.start, r.stop)
        w.write_shard(
            k,
            pooled=vals["pooled"][sl],
            grid=vals["grid"][sl] if with_grid else None,
            grid_hw=vals["grid_hw"][sl] if variable else None,
            failed={row: why for row, why in failed.items() if row in r},
        )
    for row in failed:
        for name in ("pooled", "grid"):
            if name in vals:
                vals[name][row] = 0
    if finalize:
        w.finalize()
        return meta, vals
    return w, vals


@pytest.fixture
def store(tmp_path):
    """A complete 70-item store (5 shards of 16, last one partial) and its values."""
    url = str(tmp_path / "s.zarr")
    meta, vals = build_store(url)
    return url, vals


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


TEXT_CFG = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
TINY = {
    # ResNet: layer4 has 8*32 = 256 channels, stride 32, attention pool -> 32-d
    "tinyrn": {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16, "patch_size": None}},
    # ViT: 16-pixel patches, 48 wide, 2 blocks -> 32-d
    "tinyvit": {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 2, "width": 48, "head_width": 16, "patch_size": 16}},
    # the same ViT at 128 px: an 8x8 grid, fine enough for the trainers' synthetic questions
    "tinyvit128": {"embed_dim": 32, "vision_cfg": {"image_size": 128, "layers": 2, "width": 48, "head_width": 16, "patch_size": 16}},
}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """name -> EncoderSpec of a tiny randomly initialised model saved as config + checkpoint."""
    import open_clip
    import torch

    from clipfeat.pipeline.encoder import EncoderSpec, register_model_config

    d = tmp_path_factory.mktemp("models")
    specs = {}
    for name, cfg in TINY.items():
        cfg_path, ckpt = d / f"{name}.json", d / f"{name}.pt"
        cfg_path.write_text(json.dumps({**cfg, "text_cfg": TEXT_CFG}))
        register_model_config(str(cfg_path))
        torch.manual_seed(0)
        model = open_clip.create_model(name)
        with torch.no_grad():  # BN running stats off their init values, so BN is exercised
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
        torch.save(model.state_dict(), ckpt)
        specs[name] = EncoderSpec(model=name, checkpoint=str(ckpt), model_config=str(cfg_path))
    return specs


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the session (2 CPUs), shared by every job test."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
