"""`copy`: a store from one place to another (folders, HTTP, buckets), verified after.

Objects are copied byte for byte, enumerated from the metadata (not by listing, so a
read-only HTTP source works): the group and array `zarr.json` files and every shard or
chunk the chunk grid can hold. Missing objects are empty chunks and stay missing.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

from tqdm.auto import tqdm

from .errors import OutputExistsError
from .location import Location
from .reader import open_store

__all__ = ["copy_store", "store_objects"]


def store_objects(st) -> list[str]:
    """Every object key a complete store may hold, metadata first."""
    keys = ["zarr.json"]
    for name in ["keys", "shard_status", *st.meta.layout.arrays()]:
        arr = st.group[name]
        keys.append(f"{name}/zarr.json")
        grid = arr.metadata.chunk_grid.chunk_shape  # the shard shape for sharded arrays
        counts = [-(-n // c) for n, c in zip(arr.shape, grid)]
        for coords in itertools.product(*(range(c) for c in counts)):
            keys.append(f"{name}/" + arr.metadata.encode_chunk_key(coords))
    return keys


def copy_store(
    src: str,
    dst: str,
    *,
    overwrite: bool = False,
    threads: int = 8,
    progress: bool = True,
    src_options: dict | None = None,
    dst_options: dict | None = None,
):
    """Copy complete store `src` to `dst`, then verify `dst`. Returns the VerifyReport."""
    from .verify import verify_store

    st = open_store(src, storage_options=src_options)
    out = Location.parse(dst, dst_options)
    if out.fs.exists(out.root):
        if not overwrite:
            raise OutputExistsError(f"{dst} exists; choose another path or pass --overwrite")
        out.fs.rm(out.root, recursive=True)
    keys = store_objects(st)

    def one(i: int) -> None:
        blob = st.loc.read_bytes(keys[i])
        if blob is None:
            return
        path = out.path(keys[i])
        if out.local:
            out.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        out.fs.pipe_file(path, blob)

    # zarr.json of the group goes last: a reader never sees a store whose arrays are missing.
    order = list(range(1, len(keys))) + [0]
    try:
        with ThreadPoolExecutor(threads) as pool:
            list(tqdm(pool.map(one, order), total=len(order), desc="copy", unit="obj", disable=not progress))
    finally:
        st.close()
    return verify_store(dst, progress=progress)
