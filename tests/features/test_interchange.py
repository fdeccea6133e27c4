"""Export/import: the files existing code reads, and value-identical round trips."""

import base64
import csv
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from clipfeat.features import FormatError, OutputExistsError, open_store
from clipfeat.features.interchange import export_store, import_features
from clipfeat.pipeline.cli import cli
from tests.conftest import build_store

R2R_KEYS = [f"{scan}_{i:032x}" for scan in ("17DRP5sb8fy", "2azQ1b91cZZ") for i in range(10)]


@pytest.fixture
def r2r_store(tmp_path):
    url = str(tmp_path / "r2r.zarr")
    _, vals = build_store(url, n=20, views=36, with_grid=False, pooled_dim=16, keys=R2R_KEYS, shard_size=8)
    return url, vals


def test_h5_round_trip_is_value_identical_and_keeps_meta(store, tmp_path):
    url, vals = store
    out = str(tmp_path / "flat.h5")
    export_store(url, out, fmt="h5", progress=False)
    with h5py.File(out, "r") as f:
        assert f["grid"].dtype == np.float16 and f["grid"].shape == (70, 9, 4)
        assert [k.decode() for k in f["keys"][:]] == vals["keys"]
    back = str(tmp_path / "back.zarr")
    meta = import_features(out, back, progress=False)
    a, b = open_store(url), open_store(back)
    assert meta.store_id == a.meta.store_id and b.meta.status == "complete"
    assert b.keys == a.keys
    np.testing.assert_array_equal(b.grid(np.arange(70)), a.grid(np.arange(70)))
    np.testing.assert_array_equal(b.pooled(np.arange(70)), a.pooled(np.arange(70)))


def test_variable_grid_h5_round_trip(tmp_path):
    url = str(tmp_path / "v.zarr")
    _, vals = build_store(url, variable=True, grid_hw=(4, 5))
    out = str(tmp_path / "v.h5")
    export_store(url, out, fmt="h5", progress=False)
    back = str(tmp_path / "back.zarr")
    import_features(out, back, progress=False)
    b = open_store(back)
    np.testing.assert_array_equal(b.grid_hw(np.arange(70)), vals["grid_hw"])
    np.testing.assert_array_equal(b.read("grid", np.arange(70)), vals["grid"])


class ImageFeaturesDB:
    """Written like VLN-HAMT / VLN-DUET's reader: h5py, `f[key][...]` per `{scan}_{viewpoint}`."""

    def __init__(self, path, dim):
        self.path, self.dim = path, dim

    def get_image_feature(self, scan, viewpoint):
        with h5py.File(self.path, "r") as f:
            ft = f[f"{scan}_{viewpoint}"][...][:, : self.dim].astype(np.float32)
        return ft


def test_h5_vln_layout_and_round_trip(r2r_store, tmp_path):
    url, vals = r2r_store
    out = str(tmp_path / "vln.hdf5")
    export_store(url, out, fmt="h5-vln", progress=False)
    db = ImageFeaturesDB(out, 16)
    for i, key in enumerate(R2R_KEYS):
        scan, vp = key.split("_")
        ft = db.get_image_feature(scan, vp)
        assert ft.shape == (36, 16)
        np.testing.assert_array_equal(ft, vals["pooled"][i].astype(np.float32))
    with h5py.File(out, "r") as f:
        attrs = dict(f[R2R_KEYS[0]].attrs)
        assert attrs["scanId"] == "17DRP5sb8fy" and attrs["image_w"] == 640 and attrs["image_h"] == 480
        assert attrs["vfov"] == 60 and f[R2R_KEYS[0]].dtype == np.float32
    back = str(tmp_path / "back.zarr")
    import_features(out, back, progress=False)
    b = open_store(back)
    assert b.keys == R2R_KEYS and b.meta.layout.dtype == "float16"
    np.testing.assert_array_equal(b.pooled(np.arange(20)), vals["pooled"])


def test_tsv_readable_by_envdrop_style_reader_and_round_trip(r2r_store, tmp_path):
    url, vals = r2r_store
    out = str(tmp_path / "feats.tsv")
    export_store(url, out, fmt="tsv", progress=False)
    # EnvDrop's read_img_features, in substance
    csv.field_size_limit(sys.maxsize)
    fields = ["scanId", "viewpointId", "image_w", "image_h", "vfov", "features"]
    feats = {}
    with open(out) as fh:
        for item in csv.DictReader(fh, delimiter="\t", fieldnames=fields):
            assert int(item["image_w"]) == 640 and int(item["vfov"]) == 60
            feats[item["scanId"] + "_" + item["viewpointId"]] = np.frombuffer(
                base64.decodebytes(item["features"].encode("ascii")), dtype=np.float32
            ).reshape((36, 16))
    assert sorted(feats) == sorted(R2R_KEYS)
    np.testing.assert_array_equal(feats[R2R_KEYS[3]], vals["pooled"][3].astype(np.float32))
    back = str(tmp_path / "back.zarr")
    import_features(out, back, progress=False, dataset="r2r")
    b = open_store(back)
    assert b.meta.layout.dtype == "float16" and b.meta.dataset.name == "r2r"
    np.testing.assert_array_equal(b.pooled(np.arange(20)), vals["pooled"][[R2R_KEYS.index(k) for k in b.keys]])


def test_npy_dir_import(tmp_path):
    src = tmp_path / "clipvil"
    src.mkdir()
    rng = np.random.default_rng(0)
    hw = {9: (7, 10), 25: (10, 7), 100: (7, 10)}
    for img_id, (h, w) in hw.items():
        np.save(src / f"{img_id}.npy", rng.standard_normal(8).astype(np.float32))
        np.savez(src / f"{img_id}.npz", feat=rng.standard_normal((h, w, 4)).astype(np.float32))
    out = str(tmp_path / "imp.zarr")
    res = CliRunner().invoke(cli, ["import", str(src), "--out", out, "--model", "RN50x4"])
    assert res.exit_code == 0, res.output
    st = open_store(out)
    assert st.keys == ["9", "25", "100"]  # numeric order
    assert st.meta.layout.dtype == "float32"  # random float32 values are not float16-exact
    assert st.meta.layout.variable_grid
    g = np.load(src / "25.npz")["feat"]
    np.testing.assert_array_equal(st.grid(1), g.reshape(70, 4))
    np.testing.assert_array_equal(st.grid_hw([0, 1]), [[7, 10], [10, 7]])
    np.testing.assert_array_equal(st.pooled(2), np.load(src / "100.npy"))


def test_bad_formats_and_existing_outputs(store, r2r_store, tmp_path):
    url, _ = store
    with pytest.raises(FormatError, match="36, D"):
        export_store(url, str(tmp_path / "x.h5"), fmt="h5-vln", progress=False)
    assert not list(tmp_path.glob("x.h5*"))  # nothing written
    out = tmp_path / "exists.h5"
    out.write_text("mine")
    with pytest.raises(OutputExistsError):
        export_store(url, str(out), fmt="h5", progress=False)
    assert out.read_text() == "mine"
    res = CliRunner().invoke(cli, ["export", url, str(tmp_path / "y.tsv"), "--format", "tsv"])
    assert res.exit_code == 2 and res.output.startswith("Error:") and len(res.output.strip().splitlines()) == 1
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\tc\n")
    res = CliRunner().invoke(cli, ["import", str(bad), "--out", str(tmp_path / "b.zarr")])
    assert res.exit_code == 2 and "not an R2R feature TSV" in res.output
    assert not (tmp_path / "b.zarr").exists()
