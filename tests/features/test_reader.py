import json
import os

import numpy as np
import pytest

from clipfeat.features import (
    IncompleteStoreError,
    NotAStoreError,
    RowNotAvailableError,
    SchemaVersionError,
    open_store,
)
from tests.conftest import build_store


def test_random_batches_any_order_with_repeats(store):
    url, vals = store
    st = open_store(url)
    rows = np.array([69, 3, 3, 40, 16, 15, 0])
    np.testing.assert_array_equal(st.grid(rows), vals["grid"][rows])
    np.testing.assert_array_equal(st.pooled(rows), vals["pooled"][rows])
    assert st.grid(5).shape == (9, 4)  # scalar row: no batch axis
    np.testing.assert_array_equal(st.pooled(slice(10, 20)), vals["pooled"][10:20])
    np.testing.assert_array_equal(st.grid(-1), vals["grid"][-1])
    assert st.grid([]).shape == (0, 9, 4)
    with pytest.raises(RowNotAvailableError):
        st.grid([70])


@pytest.mark.parametrize("codec", ["zstd", "lz4", "none"])
def test_fast_path_agrees_with_zarr(tmp_path, codec):
    url = str(tmp_path / "s.zarr")
    _, vals = build_store(url, codec=codec)
    st = open_store(url)
    rd = st._reader("grid")
    assert rd.fast
    rows = np.random.default_rng(0).permutation(70)[:30]
    np.testing.assert_array_equal(rd.read(rows), rd._read_fallback(rows, np.empty((30, 9, 4), np.float16)))
    import zarr

    np.testing.assert_array_equal(zarr.open_array(url + "/grid", mode="r")[:], vals["grid"])


def test_variable_grids_are_trimmed_and_masked(tmp_path):
    url = str(tmp_path / "s.zarr")
    _, vals = build_store(url, variable=True, grid_hw=(4, 5))
    st = open_store(url)
    rows = np.array([2, 9, 30])
    hw = vals["grid_hw"][rows]
    cells = int((hw[:, 0] * hw[:, 1]).max())
    g = st.grid(rows)
    assert g.shape == (3, cells, 4)
    np.testing.assert_array_equal(g, vals["grid"][rows][:, :cells])
    b = st.batch(rows, fields=("grid", "pooled"))
    np.testing.assert_array_equal(b["grid_hw"], hw)
    np.testing.assert_array_equal(b["grid_mask"].sum(1), hw[:, 0] * hw[:, 1])


def test_multi_view_items(tmp_path):
    url = str(tmp_path / "s.zarr")
    keys = [f"scan{i % 3}_{i:032x}" for i in range(20)]
    _, vals = build_store(url, n=20, views=36, with_grid=False, pooled_dim=12, keys=keys)
    st = open_store(url)
    assert st.pooled([0, 19]).shape == (2, 36, 12)
    np.testing.assert_array_equal(st.pooled(np.arange(20)), vals["pooled"])
    with pytest.raises(KeyError, match="no `grid` array"):
        st.grid([0])


def test_incomplete_store_exposes_done_shards_only(tmp_path):
    url = str(tmp_path / "s.zarr")
    w, vals = build_store(url, finalize=False, shards=[0, 3])
    with pytest.raises(IncompleteStoreError, match="allow_partial"):
        open_store(url)
    st = open_store(url, allow_partial=True)
    np.testing.assert_array_equal(st.done_rows(), np.r_[0:16, 48:64])
    np.testing.assert_array_equal(st.grid(st.done_rows()), vals["grid"][st.done_rows()])
    with pytest.raises(RowNotAvailableError, match="shard 1"):
        st.grid([3, 20])
    w.close()


def test_not_a_store_newer_schema_and_missing_arrays(tmp_path, store):
    url, _ = store
    with pytest.raises(NotAStoreError, match="does not exist"):
        open_store(str(tmp_path / "nothing.zarr"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(NotAStoreError, match="no zarr.json"):
        open_store(str(tmp_path / "plain"))
    root = os.path.join(url, "zarr.json")
    doc = json.load(open(root))
    doc["attributes"]["clipfeat"]["schema_version"] = 99
    json.dump(doc, open(root, "w"))
    with pytest.raises(SchemaVersionError, match="upgrade clipfeat"):
        open_store(url)
    doc["attributes"]["clipfeat"]["schema_version"] = 1
    doc.pop("consolidated_metadata", None)
    json.dump(doc, open(root, "w"))
    import shutil

    shutil.rmtree(os.path.join(url, "grid"))
    with pytest.raises(NotAStoreError, match="lacks the `grid` array"):
        open_store(url)


def test_to_dask(store):
    url, vals = store
    st = open_store(url)
    d = st.to_dask("grid")
    assert d.shape == (70, 9, 4) and d.chunks[0] == (16, 16, 16, 16, 6)
    np.testing.assert_allclose(d.astype("float32").sum(axis=(1, 2)).compute(), vals["grid"].astype("float32").sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_array_equal(d[5:40:3, 2].compute(), vals["grid"][5:40:3, 2])
