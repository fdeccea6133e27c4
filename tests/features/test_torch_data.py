import numpy as np
import torch

from clipfeat.features import open_store
from clipfeat.features.torch_data import FeatureDataset, ShardShuffleSampler, make_loader
from tests.conftest import build_store


def test_sampler_covers_rows_once_with_shard_locality(tmp_path):
    url = str(tmp_path / "s.zarr")
    build_store(url, n=200, shard_size=16)
    st = open_store(url)
    s = ShardShuffleSampler(st, buffer_shards=3, seed=1)
    order = np.array(list(s))
    assert sorted(order.tolist()) == list(range(200)) and len(s) == 200
    # each run of 3 shards' rows stays within 3 shards
    pos = 0
    for size in _window_sizes(order, 16, 3):
        assert len(set(order[pos : pos + size] // 16)) <= 3
        pos += size
    s.set_epoch(1)
    assert list(s) != order.tolist()
    s.set_epoch(0)
    assert list(s) == order.tolist()  # deterministic per (seed, epoch)


def _window_sizes(order, shard, buf):
    shards = order // shard
    sizes, seen, start = [], set(), 0
    for i, sh in enumerate(shards):
        if sh not in seen and len(seen) == buf:
            sizes.append(i - start)
            seen, start = set(), i
        seen.add(sh)
    sizes.append(len(order) - start)
    return sizes


def test_sampler_respects_row_subset_and_failures(tmp_path):
    url = str(tmp_path / "s.zarr")
    build_store(url, n=50, failed={7: "bad"})
    st = open_store(url)
    assert 7 not in set(ShardShuffleSampler(st))
    sub = np.arange(10, 30)
    assert sorted(ShardShuffleSampler(st, rows=sub)) == sub.tolist()


def test_loader_batches_equal_store_reads(store):
    url, vals = store
    st = open_store(url)
    loader = make_loader(st, batch_size=8, fields=("grid", "pooled"), seed=0)
    seen = []
    for b in loader:
        assert isinstance(b["grid"], torch.Tensor) and b["grid"].dtype == torch.float16
        rows = b["rows"].numpy()
        np.testing.assert_array_equal(b["grid"].numpy(), vals["grid"][rows])
        np.testing.assert_array_equal(b["pooled"].numpy(), vals["pooled"][rows])
        seen += rows.tolist()
    assert sorted(seen) == list(range(70))


def test_loader_with_worker_processes(store):
    url, vals = store
    loader = make_loader(open_store(url), batch_size=16, fields=("grid",), num_workers=2, shuffle=False)
    rows = torch.cat([b["rows"] for b in loader]).numpy()
    assert rows.tolist() == list(range(70))
    item = FeatureDataset(url, ("pooled",))[5]
    np.testing.assert_array_equal(item["pooled"].numpy(), vals["pooled"][5])


def test_shard_shuffle_positions_with_repeated_rows():
    from clipfeat.features.torch_data import shard_shuffle

    rows = np.repeat(np.arange(40), 3)[::-1].copy()  # three samples per store row, any order
    pos = shard_shuffle(rows, 8, buffer_shards=2, seed=3, epoch=1)
    assert sorted(pos.tolist()) == list(range(len(rows)))  # every sample exactly once
    shards = rows[pos] // 8
    assert all(len(set(shards[i : i + 48])) <= 2 for i in range(0, len(pos), 48))  # 2 shards x 8 rows x 3
    np.testing.assert_array_equal(pos, shard_shuffle(rows, 8, buffer_shards=2, seed=3, epoch=1))
    assert not np.array_equal(pos, shard_shuffle(rows, 8, buffer_shards=2, seed=3, epoch=2))
