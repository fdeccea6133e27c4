"""verify finds corruption and names the shard (and rows) it is in."""

import os

import numpy as np
import pytest
from click.testing import CliRunner

from clipfeat.features.verify import verify_store
from clipfeat.pipeline.cli import cli
from tests.conftest import build_store


def _shard_file(url, name, k, ndim=3):
    return os.path.join(url, name, "c", str(k), *(["0"] * (ndim - 1)))


def test_sound_store_verifies(store):
    url, _ = store
    rep = verify_store(url, progress=False)
    assert rep.ok and rep.shards_checked == 5
    res = CliRunner().invoke(cli, ["verify", "-q", url])
    assert res.exit_code == 0 and "5 shards verified" in res.output


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_flipped_byte_names_shard(tmp_path, codec):
    url = str(tmp_path / "s.zarr")
    build_store(url, codec=codec)
    path = _shard_file(url, "grid", 2)
    blob = bytearray(open(path, "rb").read())
    blob[len(blob) // 3] ^= 0x40  # inside the chunk data, not the index footer
    open(path, "wb").write(bytes(blob))
    res = CliRunner().invoke(cli, ["verify", "-q", url])
    assert res.exit_code == 1
    assert "shard 2" in res.output and "shards [2]" in res.output
    assert "shard 0" not in res.output and "shard 1:" not in res.output


def test_checksum_mismatch_names_rows(tmp_path):
    url = str(tmp_path / "s.zarr")
    build_store(url, codec="none")  # raw bytes: a flipped bit decodes fine but changes one value
    path = _shard_file(url, "grid", 1)
    blob = bytearray(open(path, "rb").read())
    item = 9 * 4 * 2
    blob[5 * item + 3] ^= 0x01  # row 16 + 5
    open(path, "wb").write(bytes(blob))
    rep = verify_store(url, progress=False)
    assert rep.bad_shards == {1}
    assert any("checksum mismatch in rows 21" in p for p in rep.problems), rep.problems


def test_truncated_and_missing_shard_files(tmp_path):
    url = str(tmp_path / "s.zarr")
    build_store(url)
    path = _shard_file(url, "grid", 3)
    blob = open(path, "rb").read()
    open(path, "wb").write(blob[: len(blob) // 2])
    os.remove(_shard_file(url, "pooled", 1, ndim=2))
    rep = verify_store(url, progress=False)
    assert rep.bad_shards == {1, 3}
    text = "\n".join(rep.problems)
    assert "shard 3" in text and ("truncated" in text or "crc32c" in text)
    assert "shard 1: pooled" in text and "missing" in text


def test_corrupt_status_record_and_keys(tmp_path):
    url = str(tmp_path / "s.zarr")
    build_store(url)
    import zarr

    keys = zarr.open_array(url + "/keys", mode="r+")
    k = keys[:]
    k[20] = "999999"
    keys[:] = k
    rep = verify_store(url, progress=False)
    assert rep.bad_shards == {1} and "keys differ" in rep.problems[0]


def test_reading_a_corrupt_chunk_raises_a_clear_error(tmp_path):
    url = str(tmp_path / "s.zarr")
    build_store(url)
    path = _shard_file(url, "grid", 0)
    blob = bytearray(open(path, "rb").read())
    blob[-10] ^= 0xFF  # the index footer: crc32c catches it
    open(path, "wb").write(bytes(blob))
    from clipfeat.features import CorruptDataError, open_store

    with pytest.raises(CorruptDataError, match="shard 0 index fails its crc32c"):
        open_store(url).grid(np.arange(4))
