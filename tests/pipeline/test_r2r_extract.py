"""`clipfeat extract --dataset r2r` end to end on a synthetic Matterport layout: skyboxes (six
faces and the simulator's strip) -> 36 views per viewpoint -> a store of pooled [36, D], checked
against a single-process computation; the VLN exports read back as R2R code reads them;
pre-rendered views, --grid, missing skyboxes, shard sizing and the CLI."""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil

import numpy as np
import pytest
import torch

from clipfeat.features import open_store
from clipfeat.features.verify import verify_store
from clipfeat.manifests import scan
from clipfeat.manifests.synthetic import make_matterport
from clipfeat.pipeline.job import ExtractConfig, JobFailedError, default_shard_size, run_extract

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def matterport(tmp_path_factory):
    """2 scans x 3 included viewpoints; the last viewpoint of each scan has only the strip."""
    root = tmp_path_factory.mktemp("matterport")
    make_matterport(root, scans=2, viewpoints=3, face_size=48)
    return str(root)


@pytest.fixture(scope="module")
def r2r_store(ray_local, tiny_models, matterport, tmp_path_factory):
    """The skybox layout extracted with the tiny ViT: 2 viewpoints per shard, 2 per forward."""
    out = str(tmp_path_factory.mktemp("r2r") / "r2r.zarr")
    res = run_extract(_cfg(tiny_models["tinyvit"], matterport, out))
    return out, res


def _cfg(spec, root, out, **kw) -> ExtractConfig:
    base = dict(out=str(out), spec=spec, dataset="r2r", root=root, shard_size=2, batch_size=72, device="cpu",
                workers=1, threads=2, progress=False)
    return ExtractConfig(**{**base, **kw})


def _reference(spec, root: str, key: str):
    """One viewpoint computed by hand: faces + pose -> render_views -> resize -> encoder.
    Returns pooled [36, D] and grid [36, h*w, C], float32."""
    from clipfeat.pipeline.encoder import describe_encoder, load_encoder
    from clipfeat.pipeline.images import Preprocessor, tensor_preprocess
    from clipfeat.pipeline.panorama import load_pose, load_skybox, render_views

    scan_id, vp = key.split("_")
    faces = load_skybox(os.path.join(root, "v1", "scans", scan_id, "matterport_skybox_images"), vp)  # [6, S, S, 3]
    pose = load_pose(os.path.join(root, "connectivity", f"{scan_id}_connectivity.json"), vp)
    views = render_views(torch.from_numpy(faces).permute(0, 3, 1, 2)[None], pose[None])[0]  # [36, 3, 480, 640]
    shape = describe_encoder(spec)
    pixels = tensor_preprocess(views, Preprocessor(mode="fixed", size=shape.image_size, interpolation=shape.interpolation))
    enc = load_encoder(spec)
    pooled, grid = enc.encode(enc.normalize(pixels))
    return pooled.numpy(), grid.numpy()


def test_store_holds_36_views_per_viewpoint_as_computed_by_hand(r2r_store, tiny_models, matterport):
    out, res = r2r_store
    manifest, _ = scan("r2r", matterport)
    st = open_store(out)
    assert res.computed == len(manifest) == 6 and not res.failed and res.shards_done == 3
    assert st.meta.status == "complete" and verify_store(out, progress=False).ok
    assert list(st.keys) == manifest.keys and all(k.count("_") == 1 for k in st.keys)
    lay, pre = st.meta.layout, st.meta.preprocess
    assert lay.views == 36 and not lay.has_grid and lay.pooled_dim == 32
    assert pre.render == "matterport-skybox bilinear 640x480 vfov60" and pre.interpolation == "bicubic/torchvision"
    assert "render" in res.timings
    strip = {f"{s}_{vps[-1]}" for s, vps in _scans(matterport).items()}  # viewpoints with only the strip
    for i, key in enumerate(st.keys):
        ref, _ = _reference(tiny_models["tinyvit"], matterport, key)
        got = st.pooled(i).astype(np.float32)
        assert got.shape == (36, 32)
        np.testing.assert_allclose(got, ref, rtol=2e-3, atol=2e-3, err_msg=f"{key} (strip: {key in strip})")
        # the 36 views really differ (not one image repeated), and each is its own view's feature
        sims = _cosine(got, ref)
        assert (sims.argmax(1) == np.arange(36)).mean() > 0.9


def test_vln_exports_read_back_like_r2r_code(r2r_store, tmp_path):
    """h5-vln as HAMT / DUET's ImageFeaturesDB reads it (`f[key][...]`), TSV as EnvDrop's
    `read_img_features` does (csv.DictReader, base64 float32 reshaped to [36, D])."""
    import h5py

    from clipfeat.features.interchange import TSV_FIELDS, export_store

    out, _ = r2r_store
    st = open_store(out)
    h5 = str(tmp_path / "r2r.hdf5")
    tsv = str(tmp_path / "r2r.tsv")
    assert export_store(out, h5, fmt="h5-vln", progress=False) == 6
    assert export_store(out, tsv, fmt="tsv", progress=False) == 6
    with h5py.File(h5, "r") as f:
        for i, key in enumerate(st.keys):
            ft = f[key][...].astype(np.float32)
            assert ft.shape == (36, 32)
            np.testing.assert_array_equal(ft, st.pooled(i).astype(np.float32))
    csv.field_size_limit(1 << 30)
    with open(tsv) as f:
        read = {}
        for item in csv.DictReader(f, delimiter="\t", fieldnames=TSV_FIELDS):
            assert (int(item["image_w"]), int(item["image_h"]), int(item["vfov"])) == (640, 480, 60)
            feats = np.frombuffer(base64.b64decode(item["features"]), dtype=np.float32).reshape((36, -1))
            read[f"{item['scanId']}_{item['viewpointId']}"] = feats
    assert sorted(read) == sorted(st.keys)
    for i, key in enumerate(st.keys):
        np.testing.assert_array_equal(read[key], st.pooled(i).astype(np.float32))


def test_grid_option_and_prerendered_views(ray_local, tiny_models, matterport, tmp_path):
    """--grid stores [36, h*w, C] per viewpoint; views the user rendered (`{scan}/{vp}/{ix}.jpg`)
    are read as they are and agree with the skybox path up to the JPEG re-encoding."""
    from PIL import Image

    from clipfeat.pipeline.panorama import load_pose, load_skybox, render_views

    spec = tiny_models["tinyvit"]
    scans = {s: vps for s, vps in _scans(matterport).items()}
    first = sorted(scans)[0]
    grid_out = tmp_path / "grid.zarr"
    run_extract(_cfg(spec, matterport, grid_out, scans=(first,), grid=True))
    st = open_store(str(grid_out))
    assert st.meta.layout.views == 36 and st.meta.layout.grid_hw == (4, 4) and len(st) == 3
    for i, key in enumerate(st.keys):
        ref_pooled, ref_grid = _reference(spec, matterport, key)
        g = st.grid(i).astype(np.float32)
        assert g.shape == (36, 16, 48)
        np.testing.assert_allclose(g, ref_grid, rtol=2e-3, atol=2e-3 * max(1.0, np.abs(ref_grid).max()))
        np.testing.assert_allclose(st.pooled(i).astype(np.float32), ref_pooled, rtol=2e-3, atol=2e-3)

    # the same scan as pre-rendered views: no v1/scans, the connectivity graphs next to the views
    views_root = tmp_path / "views"
    shutil.copytree(os.path.join(matterport, "connectivity"), views_root / "connectivity")
    conn = os.path.join(matterport, "connectivity", f"{first}_connectivity.json")
    for vp in scans[first]:
        faces = load_skybox(os.path.join(matterport, "v1", "scans", first, "matterport_skybox_images"), vp)
        views = render_views(torch.from_numpy(faces).permute(0, 3, 1, 2)[None], load_pose(conn, vp)[None])[0]
        (views_root / first / vp).mkdir(parents=True)
        for ix, v in enumerate(views.permute(0, 2, 3, 1).numpy()):
            Image.fromarray(v).save(views_root / first / vp / f"{ix}.jpg", quality=95)
    pre_out = tmp_path / "pre.zarr"
    run_extract(_cfg(spec, str(views_root), pre_out, scans=(first,)))
    pre = open_store(str(pre_out))
    assert pre.meta.preprocess.render == "prerendered" and list(pre.keys) == list(st.keys)
    assert pre.meta.store_id != st.meta.store_id
    for i in range(len(pre)):
        a, b = pre.pooled(i).astype(np.float32), st.pooled(i).astype(np.float32)
        sims = _cosine(a, b)
        assert np.diag(sims).min() > 0.98, np.diag(sims).min()  # JPEG q95 barely moves the features
        assert (sims.argmax(1) == np.arange(36)).all()  # and every view is in its place


def test_missing_skybox_is_a_recorded_failure(ray_local, tiny_models, matterport, tmp_path):
    root = tmp_path / "mp"
    shutil.copytree(matterport, root)
    scans = _scans(str(root))
    first = sorted(scans)[0]
    vp = scans[first][0]
    os.remove(root / "v1" / "scans" / first / "matterport_skybox_images" / f"{vp}_skybox3_sami.jpg")
    bad = root / "v1" / "scans" / first / "matterport_skybox_images" / f"{scans[first][1]}_skybox1_sami.jpg"
    bad.write_bytes(b"not a jpeg")
    cfg = _cfg(tiny_models["tinyvit"], str(root), tmp_path / "f.zarr", scans=(first,))
    with pytest.raises(JobFailedError) as e:
        run_extract(cfg)
    assert "2 images failed" in str(e.value) and f"no skybox for viewpoint {vp}" in str(e.value)
    res = run_extract(ExtractConfig(**{**cfg.__dict__, "max_failures": "2"}))
    st = open_store(str(tmp_path / "f.zarr"))
    assert st.meta.status == "complete" and len(res.failed) == 2
    reasons = sorted(st.failed_rows().values())
    assert any(f"{bad.name}: not an image" in r for r in reasons)
    assert any(f"{vp}_skybox{{0..5}}_sami.jpg or {vp}_skybox_small.jpg" in r for r in reasons)


def test_default_shard_size_keeps_shards_small():
    from clipfeat.features.schema import Layout

    assert default_shard_size(Layout(pooled_dim=640, views=36)) == 256  # pooled only: 11.8 MB a shard
    assert default_shard_size(Layout(pooled_dim=640, grid_channels=2560, grid_hw=(9, 9), views=36)) == 32  # RN50x4 grids
    assert default_shard_size(Layout(pooled_dim=640, grid_channels=2560, grid_hw=(9, 9))) == 256  # COCO RN50x4


def test_cli_extract_r2r_and_user_errors(ray_local, tiny_models, matterport, tmp_path):
    from click.testing import CliRunner

    from clipfeat.pipeline.cli import cli

    spec = tiny_models["tinyvit"]
    first = sorted(_scans(matterport))[0]
    model = ["--model", spec.model, "--model-config", spec.model_config, "--checkpoint", spec.checkpoint]
    base = ["extract", "--dataset", "r2r", "--root", matterport, "--no-progress", "--device", "cpu", *model]
    runner = CliRunner()
    r = runner.invoke(cli, [*base, "--scans", first, "--out", str(tmp_path / "ok.zarr"), "--batch-size", "36"])
    assert r.exit_code == 0, r.output
    assert "3 items; computed 3 in 1 shards" in r.output
    r = runner.invoke(cli, ["info", str(tmp_path / "ok.zarr")])
    assert r.exit_code == 0 and "views 36, pooled 32, no grid" in r.output
    assert "views matterport-skybox bilinear 640x480 vfov60" in r.output, r.output
    cases = {
        "use --preprocess fixed": [*base, "--preprocess", "aspect", "--out", str(tmp_path / "a.zarr")],
        "choose scans with --scans": [*base, "--splits", "val2014", "--out", str(tmp_path / "b.zarr")],
        "check --scans": [*base, "--scans", "nosuchscan", "--out", str(tmp_path / "c.zarr")],
        "or --connectivity DIR": [*base, "--connectivity", str(tmp_path), "--out", str(tmp_path / "d.zarr")],
    }
    for message, args in cases.items():
        r = runner.invoke(cli, args)
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, (message, r.output)
        assert not any(p.name in ("a.zarr", "b.zarr", "c.zarr", "d.zarr") for p in tmp_path.iterdir())


def _scans(root: str) -> dict[str, list[str]]:
    """scan -> its included viewpoints, in the connectivity file's order (the strip one last)."""
    out = {}
    for name in sorted(os.listdir(os.path.join(root, "connectivity"))):
        with open(os.path.join(root, "connectivity", name)) as f:
            out[name.removesuffix("_connectivity.json")] = [e["image_id"] for e in json.load(f) if e["included"]]
    return out


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[V, D] x [V, D] -> [V, V] cosine similarities."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T
