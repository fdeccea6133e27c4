"""Encoder fidelity: grid and pooled from one pass equal open_clip's own outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipfeat.pipeline.encoder import EncoderError, EncoderSpec, describe_encoder, load_encoder


def _reference(spec, **kw):
    import open_clip

    return open_clip.create_model(spec.model, pretrained=spec.checkpoint, **kw).eval()


def _rel(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_resnet_grid_and_pooled(tiny_models):
    spec = tiny_models["tinyrn"]
    enc, ref = load_encoder(spec), _reference(spec)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    pooled, grid = enc.encode(x)
    assert pooled.shape == (3, 32) and grid.shape == (3, 4, 256) and enc.last_hw == (2, 2)
    with torch.no_grad():
        assert _rel(pooled, ref.encode_image(x)) < 1e-5
        # the model's own attention pool applied to the stored grid gives the stored pooled
        fmap = grid.transpose(1, 2).reshape(3, 256, 2, 2)  # N(HW)C -> NCHW
        assert _rel(ref.visual.attnpool(fmap), pooled) < 1e-5


def test_resnet_other_sizes_interpolate_the_attention_pool(tiny_models):
    """At 96x128 the pooled output is the attention pool with its positional embedding
    bicubically resized to the 3x4 grid (checked against open_clip's AttentionPool2d)."""
    import torch.nn.functional as F
    from open_clip.modified_resnet import AttentionPool2d

    spec = tiny_models["tinyrn"]
    enc, ref = load_encoder(spec), _reference(spec)
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(2))
    pooled, grid = enc.encode(x)
    assert enc.last_hw == (3, 4) and grid.shape == (2, 12, 256)
    src = ref.visual.attnpool
    pool = AttentionPool2d(2, 256, src.num_heads, 32)  # spacial_dim is overwritten below
    pool.load_state_dict({k: v for k, v in src.state_dict().items() if k != "positional_embedding"}, strict=False)
    pe = src.positional_embedding.detach()
    spatial = F.interpolate(pe[1:].reshape(1, 2, 2, -1).permute(0, 3, 1, 2), size=(3, 4), mode="bicubic", align_corners=False)
    pool.positional_embedding = torch.nn.Parameter(torch.cat([pe[:1], spatial.permute(0, 2, 3, 1).reshape(12, -1)]))
    with torch.no_grad():
        want = pool(grid.transpose(1, 2).reshape(2, 256, 3, 4))
    assert _rel(pooled, want) < 1e-5


def test_vit_tokens_and_pooled(tiny_models):
    spec = tiny_models["tinyvit"]
    enc, ref = load_encoder(spec), _reference(spec)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    pooled, grid = enc.encode(x)
    assert grid.shape == (2, 16, 48) and enc.last_hw == (4, 4)
    with torch.no_grad():
        assert _rel(pooled, ref.encode_image(x)) < 1e-5
        ref.visual.output_tokens = True
        _, tokens = ref.visual(x)
    assert _rel(grid, tokens) < 1e-5


def test_vit_image_size_resizes_positional_embedding(tiny_models):
    spec = tiny_models["tinyvit"]
    big = EncoderSpec(**{**spec.__dict__, "image_size": 96})
    shape = describe_encoder(big)
    assert shape.probe_grid == (6, 6) and shape.image_size == 64
    enc = load_encoder(big)
    pooled, grid = enc.encode(torch.randn(1, 3, 96, 96))
    assert grid.shape == (1, 36, 48) and np.isfinite(pooled.numpy()).all()


def test_describe_matches_real_outputs(tiny_models):
    for name, want in {"tinyrn": ("resnet", 32, 256, 32, (2, 2)), "tinyvit": ("vit", 32, 48, 16, (4, 4))}.items():
        s = describe_encoder(tiny_models[name])
        assert (s.kind, s.pooled_dim, s.grid_channels, s.stride, s.probe_grid) == want
    s = describe_encoder(tiny_models["tinyrn"], probe_hw=(600, 1000))
    assert s.probe_grid == (18, 31)
    # real architectures are described without weights (meta device): CLIP-ViL's RN50x4 grid
    rn50x4 = describe_encoder(EncoderSpec(model="RN50x4", pretrained="openai"))
    assert (rn50x4.image_size, rn50x4.grid_channels, rn50x4.pooled_dim, rn50x4.probe_grid) == (288, 2560, 640, (9, 9))


def test_user_errors(tiny_models, tmp_path):
    with pytest.raises(EncoderError, match="did you mean RN50x4"):
        describe_encoder(EncoderSpec(model="RN50x5", pretrained="openai"))
    with pytest.raises(EncoderError, match="no weights"):
        describe_encoder(EncoderSpec(model="RN50"))
    with pytest.raises(EncoderError, match="not both"):
        describe_encoder(EncoderSpec(model="RN50", pretrained="openai", checkpoint=tiny_models["tinyrn"].checkpoint))
    with pytest.raises(EncoderError, match="no pretrained tag"):
        describe_encoder(EncoderSpec(model="RN50", pretrained="nonsense"))
    with pytest.raises(EncoderError, match="not found"):
        describe_encoder(EncoderSpec(model="RN50", checkpoint=str(tmp_path / "nope.pt")))
    wrong = EncoderSpec(model="tinyvit", checkpoint=tiny_models["tinyrn"].checkpoint)
    with pytest.raises(EncoderError, match="do not fit"):
        load_encoder(wrong)
    if not torch.cuda.is_available():
        with pytest.raises(EncoderError, match="no usable GPU"):
            load_encoder(tiny_models["tinyrn"], device="cuda")
