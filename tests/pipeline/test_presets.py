"""Extraction presets: the registry, the CLI, and `clip-vil-vqa` against CLIP-ViL's own steps.

The reference below is written from CLIP-ViL-Direct/vqa (clip-vil/CLIP-ViL@d806157), not from
clipfeat's code: read RGB (EXIF applied), detectron2's test-time ResizeShortestEdge(600, 1000)
(transform_gen.py:198-213: scale the shorter side to 600, cap the longer at 1000, sizes
int(x + 0.5), PIL bilinear on uint8), then T.Resize((600, 1000)) (dataset_mapper.py:107, PIL
bilinear to exactly H 600 x W 1000), x / 255, CLIP's mean/std (pythia_clip_grid_feature.py:
98-99, 130-132), the ResNet stem and layer1-4 without the attention pool (clip/model.py:135-151).
The model is a tiny random CLIP ResNet (no weights download here); the steps are the preset's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from clipfeat.features import open_store
from clipfeat.manifests import scan
from clipfeat.pipeline.job import ExtractConfig, run_extract
from clipfeat.pipeline.presets import PRESETS

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# (W, H): landscape, portrait, a panorama whose longer side hits the 1000 cap, already 1000x600,
# and COCO's commonest 640x427 (600 / 427 is not a round scale)
SIZES = ((640, 480), (480, 640), (2000, 500), (1000, 600), (640, 427))


def clip_vil_pixels(path: str) -> np.ndarray:
    """CLIP-ViL's preprocessing of one file -> float32 [3, 600, 1000], normalised."""
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    w, h = img.size
    scale = 600 / min(h, w)
    newh, neww = (600, scale * w) if h < w else (scale * h, 600)
    if max(newh, neww) > 1000:
        s = 1000 / max(newh, neww)
        newh, neww = newh * s, neww * s
    img = img.resize((int(neww + 0.5), int(newh + 0.5)), Image.BILINEAR)
    img = img.resize((1000, 600), Image.BILINEAR)
    x = np.asarray(img).transpose(2, 0, 1).astype(np.float32) / 255.0
    return (x - np.array(CLIP_MEAN, np.float32)[:, None, None]) / np.array(CLIP_STD, np.float32)[:, None, None]


def clip_vil_grid(model, path: str) -> np.ndarray:
    """layer4 of the ResNet on CLIP-ViL's input -> float32 [18 * 31, C] (row-major cells)."""
    import torch

    v = model.visual
    with torch.no_grad():
        x = torch.from_numpy(clip_vil_pixels(path))[None]
        f = v.layer4(v.layer3(v.layer2(v.layer1(v.stem(x)))))  # [1, C, 18, 31]
    assert f.shape[-2:] == (18, 31)
    return f[0].flatten(1).T.numpy()


@pytest.fixture(scope="module")
def tiny_rn(tiny_models):
    import open_clip

    spec = tiny_models["tinyrn"]
    model = open_clip.create_model(spec.model, pretrained=spec.checkpoint).eval()
    return spec, model


def test_registry_and_cli_list():
    p = PRESETS["clip-vil-vqa"]
    assert p.model == "RN50x4" and p.pretrained == "openai" and p.grid
    assert p.preprocess["mode"] == "squash" and (p.preprocess["height"], p.preprocess["width"]) == (600, 1000)
    assert "dataset_mapper.py:107" in p.source and "pythia_clip_grid_feature.py" in p.source
    from clipfeat.pipeline.cli import cli

    r = CliRunner().invoke(cli, ["extract", "--list-presets"])
    assert r.exit_code == 0 and "clip-vil-vqa" in r.output and "source: clip-vil/CLIP-ViL" in r.output
    r = CliRunner().invoke(cli, ["extract", "--dataset", "coco", "--root", ".", "--out", "x.zarr", "--preset", "clip-vil-vqa",
                                 "--shorter-side", "800"])
    assert r.exit_code == 2 and "--preset clip-vil-vqa fixes the preprocessing; drop --shorter-side" in r.output


@pytest.mark.parametrize("size, first", [((640, 480), (800, 600)), ((480, 640), (600, 800)), ((2000, 500), (1000, 250)),
                                         ((640, 427), (899, 600)), ((427, 640), (600, 899)), ((1000, 600), (1000, 600))])
def test_squash_geometry_is_detectron2s(size, first):
    from clipfeat.pipeline.images import Preprocessor

    pre = Preprocessor(mode="squash", interpolation="bilinear")
    assert pre.resizes(*size) == [first, (1000, 600)]
    assert pre.output_size(*size) == (600, 1000)


def _images(tmp_path, shared_data_dir):
    from clipfeat.manifests.synthetic import make_coco

    root = tmp_path / "coco"
    make_coco(root, splits={"val2014": 6}, sizes=SIZES)
    if shared_data_dir is not None:  # four real COCO JPEGs too (greyscale and odd sizes among them)
        for f in sorted((shared_data_dir / "coco-val2014-sample").iterdir())[:4]:
            shutil.copy(f, root / "val2014" / f.name)
    return str(root)


@pytest.fixture
def shared_data_dir():
    """The real COCO sample when ../shared/data is there (the test runs without it too)."""
    d = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return d if (d / "coco-val2014-sample").is_dir() else None


def test_clip_vil_vqa_store_equals_clip_vils_steps(ray_local, tiny_rn, tmp_path, shared_data_dir):
    import torch

    from clipfeat.pipeline.encoder import load_encoder
    from clipfeat.pipeline.images import load_image

    spec, model = tiny_rn
    root = _images(tmp_path, shared_data_dir)
    out = tmp_path / "vqa.zarr"
    # one image per forward, as CLIP-ViL's script runs it
    cfg = ExtractConfig(out=str(out), spec=spec, dataset="coco", root=root, preset="clip-vil-vqa", shard_size=4,
                        batch_size=1, device="cpu", workers=1, threads=1, progress=False)
    res = run_extract(cfg)
    assert res.failed == {}
    store = open_store(str(out))
    meta = store.meta
    assert meta.preprocess.preset == "clip-vil-vqa" and meta.preprocess.mode == "squash"
    assert (meta.preprocess.height, meta.preprocess.width) == (600, 1000)
    assert meta.preprocess.mean == CLIP_MEAN and meta.preprocess.std == CLIP_STD
    assert meta.layout.grid_hw == (18, 31)  # one fixed grid for every image, whatever its aspect ratio

    manifest, _ = scan("coco", root)
    grids = store.grid(np.arange(len(store)))  # float16 [N, 558, C]
    enc = load_encoder(spec, mean=CLIP_MEAN, std=CLIP_STD)
    from clipfeat.pipeline.job import plan_store

    _, pre = plan_store(cfg, manifest, "x")
    for row in range(len(manifest)):
        path = manifest.resolve(root, row)
        ref = clip_vil_grid(model, path)
        # the worker's float32 path (PIL resizes, batched normalisation, layer4) before fp16
        img, _, _ = load_image(path)
        _, grid = enc.encode(enc.normalize(pre(img)[None]))
        ours = grid[0].numpy()
        rel_err = np.abs(ours - ref).max() / np.abs(ref).max()
        assert rel_err < 1e-5, (path, rel_err)
        # the store holds that rounded once to float16: within one float16 ulp (2^-10 relative) of
        # the reference (the Ray worker's conv may round its last float32 bit differently)
        stored = grids[row].astype(np.float32)
        assert np.all(np.abs(stored - ref) <= np.abs(ref) * 2**-10 + 1e-6), (path, np.abs(stored - ref).max())
        assert np.mean(stored == torch.from_numpy(ours).half().float().numpy()) > 0.99


def test_preset_store_id_differs_and_other_backbones(ray_local, tiny_rn, tiny_models, tmp_path):
    from clipfeat.common import ClipfeatError
    from clipfeat.manifests.synthetic import make_coco
    from clipfeat.pipeline.encoder import EncoderSpec, describe_encoder
    from clipfeat.pipeline.job import plan_store

    spec, _ = tiny_rn
    root = tmp_path / "coco"
    make_coco(root, splits={"val2014": 2}, sizes=((640, 480),))
    manifest, _ = scan("coco", str(root))
    ids = set()
    for kw in (dict(preset="clip-vil-vqa"), dict(preprocess="aspect"), {}):
        cfg = ExtractConfig(out=str(tmp_path / "x.zarr"), spec=spec, dataset="coco", root=str(root), **kw)
        ids.add(plan_store(cfg, manifest, "sha")[0].store_id)
    assert len(ids) == 3  # the preset's values (and name) are in the identity
    # a ViT has no layer4 map: refused in one line before anything is written
    vit = ExtractConfig(out=str(tmp_path / "vit.zarr"), spec=tiny_models["tinyvit"], dataset="coco", root=str(root),
                        preset="clip-vil-vqa", device="cpu", progress=False)
    with pytest.raises(ClipfeatError, match="takes a CLIP ResNet's layer4 map; tinyvit is a ViT"):
        run_extract(vit)
    assert not (tmp_path / "vit.zarr").exists()
    # what the other CLIP ResNets give at 600x1000 (stride 32): 18x31 cells, channels = 32 x width
    for model, channels in (("RN50", 2048), ("RN101", 2048), ("RN50x4", 2560)):
        shape = describe_encoder(EncoderSpec(model=model, pretrained="openai"), probe_hw=(600, 1000))  # no download: meta device
        assert (shape.probe_grid, shape.grid_channels) == ((18, 31), channels)
