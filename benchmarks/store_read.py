"""Random batched reads of cached grid features: the store vs the usual alternatives.

Data: N items of [81, 2560] float16 (RN50x4 layer4 at 288 px) with ReLU-like sparsity
(max(0, x), x ~ N(0, 1): half the values are zero). Random batches of 64 rows; every method
reads the same batches. Items/s is the median over repeats of (items read / seconds);
files are read warm (in the page cache), as in a training loop on a machine whose RAM holds
the features. Run:  python benchmarks/store_read.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore", module="zarr")

ITEM = (81, 2560)
BATCH = 64


def make_data(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n,) + ITEM, dtype=np.float16)
    for i in range(0, n, 64):
        x = rng.standard_normal((min(64, n - i),) + ITEM, dtype=np.float32)
        out[i : i + 64] = np.maximum(x, 0)
    return out


def dir_bytes(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def write_store(path: str, data: np.ndarray, codec: str, shard_size: int = 256) -> None:
    from clipfeat.features import DatasetInfo, EncoderInfo, Layout, PreprocessInfo, StoreMeta, create_store

    n = len(data)
    meta = StoreMeta.build(
        dataset=DatasetInfo(name="bench", manifest_sha256="0" * 64, num_items=n),
        encoder=EncoderInfo(model="RN50x4"),
        preprocess=PreprocessInfo(mode="fixed", size=288),
        layout=Layout(pooled_dim=640, grid_channels=ITEM[1], grid_hw=(9, 9)),
        shard_size=shard_size,
    )
    w = create_store(path, meta=meta, keys=[str(i) for i in range(n)], codec=codec, overwrite=True)
    pooled = np.zeros((shard_size, 640), np.float16)
    for k in range(meta.shards.count):
        r = w.shard_rows(k)
        w.write_shard(k, pooled=pooled[: len(r)], grid=data[r.start : r.stop])
    w.finalize()


def timed(fn, batches, repeats: int, budget_s: float) -> float:
    """Median items/s over `repeats` passes; each pass reads batches until `budget_s`.

    Like a training loop (and a DataLoader), the previous batch stays alive while the next
    one is read, so every method pays the same allocator cost for fresh output memory.
    """
    fn(batches[0])  # warm-up: opens files, caches shard indexes
    rates = []
    for _ in range(repeats):
        items, t0, held = 0, time.perf_counter(), None
        for b in batches:
            held = fn(b)  # noqa: F841 - kept alive on purpose
            items += len(b)
            if time.perf_counter() - t0 > budget_s:
                break
        rates.append(items / (time.perf_counter() - t0))
    return float(np.median(rates))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="512 items, fewer repeats (< 1 min)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--items", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temp dir)")
    args = ap.parse_args(argv)
    n = args.items or (512 if args.quick else 2048)
    repeats = args.repeats or (3 if args.quick else 5)
    budget = 1.0 if args.quick else 3.0

    import h5py
    import zarr

    from clipfeat.features import open_store
    from clipfeat.features.torch_data import make_loader

    tmp = tempfile.mkdtemp(prefix="clipfeat-bench-", dir=args.dir)
    try:
        data = make_data(n)
        raw_bytes = data.nbytes
        rng = np.random.default_rng(1)
        batches = [rng.choice(n, BATCH, replace=False) for _ in range(max(64, 4 * n // BATCH))]
        sorted_batches = [np.sort(b) for b in batches]  # h5py/zarr orthogonal indexing want sorted rows

        paths = {
            "npy": os.path.join(tmp, "raw.npy"),
            "h5": os.path.join(tmp, "chunked.h5"),
            "h5gz": os.path.join(tmp, "gzip.h5"),
            "zstd": os.path.join(tmp, "store.zarr"),
            "lz4": os.path.join(tmp, "store-lz4.zarr"),
            "none": os.path.join(tmp, "store-none.zarr"),
        }
        np.save(paths["npy"], data)
        for key, comp in (("h5", None), ("h5gz", "gzip")):
            with h5py.File(paths[key], "w") as f:
                f.create_dataset("grid", data=data, chunks=(1,) + ITEM, compression=comp)
        for codec in ("zstd", "lz4", "none"):
            write_store(paths[codec], data, codec)
        del data

        rows = []  # (label, items/s, bytes)

        mm = np.load(paths["npy"], mmap_mode="r")
        rows.append(("(a) np.memmap of raw .npy", timed(lambda b: np.asarray(mm[b]), batches, repeats, budget), dir_bytes(paths["npy"])))

        for key, label in (("h5", "(b) h5py, chunk = item, uncompressed"), ("h5gz", "(b) h5py, chunk = item, gzip")):
            f = h5py.File(paths[key], "r")
            ds = f["grid"]
            rows.append((label, timed(lambda b: ds[b], sorted_batches, repeats, budget), dir_bytes(paths[key])))
            f.close()

        za = zarr.open_array(paths["zstd"] + "/grid", mode="r")
        rows.append(
            ("(c) zarr-python oindex on the store", timed(lambda b: za.oindex[b], sorted_batches, max(1, repeats // 2), budget), dir_bytes(paths["zstd"]))
        )

        stores = {}
        for codec in ("zstd", "lz4", "none"):
            st = open_store(paths[codec])
            stores[codec] = st
            label = "(d) FeatureStore.grid" + ("" if codec == "zstd" else f"  [codec={codec}]")
            rows.append((label, timed(lambda b: st.grid(b), batches, repeats, budget), dir_bytes(paths[codec])))

        def loader_rate(st) -> float:
            """Epochs of the loader until the budget is spent; DataLoader start-up included."""
            rates = []
            for rep in range(repeats):
                loader = make_loader(st, batch_size=BATCH, fields=("grid",), seed=rep, drop_last=True)
                items, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < budget:
                    for batch in loader:
                        items += batch["grid"].shape[0]
                rates.append(items / (time.perf_counter() - t0))
            return float(np.median(rates))

        for codec in ("zstd", "lz4", "none"):
            label = "(e) DataLoader + ShardShuffleSampler" + ("" if codec == "zstd" else f"  [codec={codec}]")
            rows.append((label, loader_rate(stores[codec]), dir_bytes(paths[codec])))
        for st in stores.values():
            st.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    base = rows[0][1]
    print(f"store_read: {n} items of {list(ITEM)} float16, random batches of {BATCH}, median of {repeats}, {os.cpu_count()} CPUs")
    print(f"{'method':<48} {'items/s':>10} {'x memmap':>9} {'MB on disk':>11} {'x raw':>6}")
    for label, rate, nbytes in rows:
        print(f"{label:<48} {rate:>10.0f} {rate / base:>9.3f} {nbytes / 1e6:>11.1f} {nbytes / raw_bytes:>6.3f}")
    by = {label: (rate, nbytes) for label, rate, nbytes in rows}
    result = {
        "items": n,
        "memmap_items_s": round(by["(a) np.memmap of raw .npy"][0], 1),
        "h5_items_s": round(by["(b) h5py, chunk = item, uncompressed"][0], 1),
        "h5_gzip_items_s": round(by["(b) h5py, chunk = item, gzip"][0], 1),
        "zarr_naive_items_s": round(by["(c) zarr-python oindex on the store"][0], 1),
        "store_items_s": round(by["(d) FeatureStore.grid"][0], 1),
        "loader_items_s": round(by["(e) DataLoader + ShardShuffleSampler"][0], 1),
        "store_bytes_ratio": round(by["(d) FeatureStore.grid"][1] / raw_bytes, 4),
        "store_lz4_items_s": round(by["(d) FeatureStore.grid  [codec=lz4]"][0], 1),
        "store_none_items_s": round(by["(d) FeatureStore.grid  [codec=none]"][0], 1),
    }
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
