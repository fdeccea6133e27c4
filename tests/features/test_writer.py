import json
import os

import numpy as np
import pytest

from clipfeat.features import (
    IncompleteStoreError,
    OutputExistsError,
    StoreLockedError,
    StoreMismatchError,
    create_store,
    open_store,
    open_writer,
)
from tests.conftest import build_store


def _files(root):
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


def test_round_trip_values_and_meta(store):
    url, vals = store
    st = open_store(url)
    assert len(st) == 70 and st.keys == vals["keys"]
    assert st.meta.status == "complete" and st.meta.created_by.finished
    np.testing.assert_array_equal(st.pooled(np.arange(70)), vals["pooled"])
    np.testing.assert_array_equal(st.grid(np.arange(70)), vals["grid"])
    assert st.index(vals["keys"][33]) == 33


def test_uses_only_spec_dtypes_and_codecs(store):
    url, _ = store
    keys_md = json.load(open(os.path.join(url, "keys", "zarr.json")))
    assert keys_md["data_type"] == "string"  # variable-length UTF-8, not numpy fixed-width <U
    assert keys_md["codecs"][0]["name"] == "vlen-utf8"
    grid_md = json.load(open(os.path.join(url, "grid", "zarr.json")))
    assert grid_md["data_type"] == "float16"
    shard = grid_md["codecs"][0]
    assert shard["name"] == "sharding_indexed"
    assert shard["configuration"]["chunk_shape"] == [1, 9, 4]  # one item per chunk
    assert grid_md["chunk_grid"]["configuration"]["chunk_shape"] == [16, 9, 4]  # one pipeline shard per Zarr shard
    assert [c["name"] for c in shard["configuration"]["codecs"]] == ["bytes", "blosc"]
    assert [c["name"] for c in shard["configuration"]["index_codecs"]] == ["bytes", "crc32c"]
    root = json.load(open(os.path.join(url, "zarr.json")))
    assert "consolidated_metadata" in root  # finalize consolidates, for listing-free HTTP/S3 reads


def test_rewriting_a_shard_is_idempotent(tmp_path):
    url = str(tmp_path / "s.zarr")
    w, vals = build_store(url, finalize=False)
    before = _files(url)
    r = w.shard_rows(2)
    w.write_shard(2, pooled=vals["pooled"][r.start : r.stop], grid=vals["grid"][r.start : r.stop])
    after = _files(url)
    assert {k: v for k, v in after.items() if "shard_status" not in k} == {
        k: v for k, v in before.items() if "shard_status" not in k
    }
    assert json.loads(w.shard_status(2).to_json())["checksums"] == json.loads(
        open_writer(url, lock=False).shard_status(2).to_json()
    )["checksums"]
    w.close()


def test_failed_rows_are_zero_and_recorded(tmp_path):
    url = str(tmp_path / "s.zarr")
    _, vals = build_store(url, failed={3: "truncated JPEG", 40: "not an image"})
    st = open_store(url)
    assert st.failed_rows() == {3: "truncated JPEG", 40: "not an image"}
    assert 3 not in st.done_rows() and 4 in st.done_rows() and len(st.done_rows()) == 68
    assert not st.grid(3).any() and not st.pooled(40).any()
    np.testing.assert_array_equal(st.grid(np.arange(70)), vals["grid"])


def test_resume_skips_done_shards(tmp_path):
    url = str(tmp_path / "s.zarr")
    w, vals = build_store(url, finalize=False, shards=[0, 2])
    w.close()
    meta = w.meta
    w2 = create_store(url, meta=meta, keys=vals["keys"])  # same store_id: reopened, not recreated
    assert w2.pending_shards() == [1, 3, 4]
    w2.close()


def test_other_configuration_is_refused(tmp_path):
    url = str(tmp_path / "s.zarr")
    build_store(url)
    from clipfeat.features import StoreMeta
    import dataclasses

    meta = open_store(url).meta
    other = StoreMeta.build(
        dataset=meta.dataset,
        encoder=dataclasses.replace(meta.encoder, model="RN50x4"),
        preprocess=meta.preprocess,
        layout=meta.layout,
        shard_size=meta.shards.size,
    )
    with pytest.raises(StoreMismatchError, match="model RN50 vs RN50x4"):
        create_store(url, meta=other, keys=open_store(url).keys)


def test_non_store_output_is_refused(tmp_path):
    (tmp_path / "x.zarr").mkdir()
    (tmp_path / "x.zarr" / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        build_store(tmp_path / "x.zarr")


def test_lock_blocks_a_second_writer_and_takes_over_stale_locks(tmp_path):
    url = str(tmp_path / "s.zarr")
    w, vals = build_store(url, finalize=False, shards=[0])
    with pytest.raises(StoreLockedError, match="being written by pid"):
        open_writer(url)
    w.close()
    # a lock left by a process that no longer exists on this host
    lock = tmp_path / "s.zarr" / "clipfeat.lock"
    import socket

    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 12345, "since": "x"}))
    w = open_writer(url)  # a killed job's lock: taken over, so rerunning the job resumes
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    w.close()  # and the lock is released on close
    assert not lock.exists()
    # a lock from another host cannot be checked: refused, saying which file to delete
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": "x"}))
    with pytest.raises(StoreLockedError, match=r"being written by pid 1 on elsewhere.*delete .*clipfeat.lock"):
        open_writer(url)


def test_finalize_refuses_pending_shards(tmp_path):
    url = str(tmp_path / "s.zarr")
    w, _ = build_store(url, finalize=False, shards=[0, 1])
    with pytest.raises(IncompleteStoreError, match="3 of 5 shards are not done"):
        w.finalize()
    w.close()


def test_write_shard_validates_input(tmp_path):
    url = str(tmp_path / "s.zarr")
    w, vals = build_store(url, finalize=False, shards=[])
    with pytest.raises(ValueError, match="shape"):
        w.write_shard(0, pooled=vals["pooled"][:15], grid=vals["grid"][:16])
    with pytest.raises(ValueError, match="keys do not match"):
        w.write_shard(0, pooled=vals["pooled"][:16], grid=vals["grid"][:16], keys=vals["keys"][1:17])
    with pytest.raises(ValueError, match="pass grid="):
        w.write_shard(0, pooled=vals["pooled"][:16])
    assert w.pending_shards() == [0, 1, 2, 3, 4]  # nothing counted
    w.close()


def test_shards_written_without_zarr_read_back_through_zarr(tmp_path):
    """The writer encodes whole shards itself (features.shardio.ShardEncoder); zarr-python's
    own decoding must see exactly the values, with all-zero rows left out as zarr does."""
    import zarr

    for codec in ("zstd", "lz4", "none"):
        url = str(tmp_path / f"{codec}.zarr")
        _, vals = build_store(url, n=37, shard_size=16, codec=codec, failed={3: "x", 20: "y"})
        group = zarr.open_group(url, mode="r")
        for name in ("pooled", "grid"):
            assert np.array_equal(group[name][:], vals[name]), (codec, name)
        # failed rows are zeros and take no bytes: their index entries are "empty"
        from clipfeat.features.location import Location
        from clipfeat.features.shardio import ArrayReader, default_threads
        from concurrent.futures import ThreadPoolExecutor

        reader = ArrayReader(Location.parse(url), "grid", group["grid"], ThreadPoolExecutor(default_threads()))
        assert reader.fast and int(reader.shard_index(0)[3, 0]) == 2**64 - 1


def test_store_id_of_existing_stores_is_stable():
    """Fields added to the schema later (PreprocessInfo.render) must not change the store_id of
    stores written before them: a half-written store must stay resumable across upgrades.
    The golden value was computed with the schema as it was before `render` existed."""
    from clipfeat.features.schema import DatasetInfo, EncoderInfo, Layout, PreprocessInfo, compute_store_id

    args = (DatasetInfo("coco", "a" * 64, 10), EncoderInfo("RN50x4", "openai", weights_sha256="b" * 64))
    lay = Layout(pooled_dim=640, grid_channels=2560, grid_hw=(9, 9))
    pre = PreprocessInfo(mode="fixed", size=288, mean=(0.5,), std=(0.25,))
    assert compute_store_id(*args, pre, lay, 256) == "fadbfa605c87c8b5"
    rendered = PreprocessInfo(mode="fixed", size=288, mean=(0.5,), std=(0.25,), render="prerendered")
    assert compute_store_id(*args, rendered, lay, 256) != "fadbfa605c87c8b5"  # a set field is part of the identity
