"""Pipeline fixtures: tiny random open_clip models (configs + checkpoints), synthetic datasets,
and one local Ray instance for the whole test session."""

from __future__ import annotations

import json
import os

import pytest

TEXT_CFG = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
TINY = {
    # ResNet: layer4 has 8*32 = 256 channels, stride 32, attention pool -> 32-d
    "tinyrn": {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16, "patch_size": None}},
    # ViT: 16-pixel patches, 48 wide, 2 blocks -> 32-d
    "tinyvit": {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 2, "width": 48, "head_width": 16, "patch_size": 16}},
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
def synthetic_coco(tmp_path_factory):
    from clipfeat.manifests.synthetic import make_coco

    root = tmp_path_factory.mktemp("coco")
    make_coco(root, splits={"train2014": 24, "val2014": 12})
    return str(root)


@pytest.fixture(scope="session")
def synthetic_vg(tmp_path_factory):
    from clipfeat.manifests.synthetic import make_vg

    root = tmp_path_factory.mktemp("vg")
    make_vg(root, count=14)
    return str(root)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the session (2 CPUs), shared by every job test."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
