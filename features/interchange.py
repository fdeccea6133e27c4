"""Export a store to the files other code bases read, and import theirs into a store.

Formats:
  h5       flat HDF5: datasets `keys`, `pooled`, `grid` (+ `grid_hw`), file attribute
           `clipfeat` = the store meta (JSON), so an import restores the store exactly.
  h5-vln   one dataset per key `{scan}_{viewpoint}`, [36, D] float32, attrs scanId,
           viewpointId, image_w=640, image_h=480, vfov=60: what VLN-HAMT / VLN-DUET's
           `ImageFeaturesDB` reads with `f[key][...]`.
  tsv      Matterport3DSimulator's R2R feature TSV (no header), fields scanId, viewpointId,
           image_w, image_h, vfov, features = base64 of float32 [36, D] (EnvDrop's reader).
  npy-dir  (import only) a folder of `{id}.npy` pooled [D] and/or `{id}.npz` with key
           `feat` grid [H, W, C], as CLIP-ViL's captioning scripts write them.

Imports store float16 when that is lossless for the source values (always true for files
exported from a float16 store) and float32 otherwise, so store -> export -> import -> store
is value-identical. Outputs are written to a temporary name and renamed at the end: a failed
export or import leaves nothing behind.
"""

from __future__ import annotations

import base64
import dataclasses
import csv
import json
import os
import sys
from typing import Any, Iterator

import numpy as np
from tqdm.auto import tqdm

from .errors import FormatError, OutputExistsError
from .location import Location
from .reader import open_store
from .schema import ATTR, CreatedBy, DatasetInfo, EncoderInfo, Layout, PreprocessInfo, StoreMeta, canonical_sha256

__all__ = ["EXPORT_FORMATS", "IMPORT_FORMATS", "export_store", "import_features", "sort_keys"]

EXPORT_FORMATS = ("h5", "h5-vln", "tsv")
IMPORT_FORMATS = ("h5", "h5-vln", "tsv", "npy-dir")
TSV_FIELDS = ["scanId", "viewpointId", "image_w", "image_h", "vfov", "features"]
VLN_VIEWS, VLN_W, VLN_H, VLN_VFOV = 36, 640, 480, 60


def sort_keys(keys) -> list[str]:
    """Deterministic row order: numeric when every key is an integer id, else lexicographic."""
    keys = [str(k) for k in keys]
    if keys and all(k.isdigit() for k in keys):
        return sorted(keys, key=int)
    return sorted(keys)


def _check_out(out: str, overwrite: bool) -> None:
    if os.path.exists(out) and not overwrite:
        raise OutputExistsError(f"{out} exists; choose another path or pass --overwrite")


def _tmp_name(out: str) -> str:
    return f"{out}.partial-{os.getpid()}"


def _split_vln_key(key: str) -> tuple[str, str]:
    scan, sep, vp = key.partition("_")
    if not sep or not scan or not vp:
        raise FormatError(f"key {key!r} is not `{{scan}}_{{viewpoint}}`; h5-vln and tsv hold R2R viewpoint stores only")
    return scan, vp


# -- export -----------------------------------------------------------------------------------
def export_store(url: str, out: str, *, fmt: str, overwrite: bool = False, progress: bool = True) -> int:
    """Write store `url` to file `out` in format `fmt`. Returns the number of items written."""
    if fmt not in EXPORT_FORMATS:
        raise FormatError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    _check_out(out, overwrite)
    st = open_store(url)
    lay = st.meta.layout
    if fmt in ("h5-vln", "tsv"):
        if lay.views != VLN_VIEWS:
            raise FormatError(
                f"{fmt} holds [36, D] panorama features per viewpoint; {url} has "
                f"{lay.views or 1} view(s) per item: use --format h5"
            )
        for k in st.keys[:1]:
            _split_vln_key(k)
    tmp = _tmp_name(out)
    try:
        writer = {"h5": _export_h5, "h5-vln": _export_h5_vln, "tsv": _export_tsv}[fmt]
        writer(st, tmp, progress)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    finally:
        st.close()
    return len(st)


def _shard_batches(st, progress: bool, desc: str) -> Iterator[range]:
    for k in tqdm(range(st.meta.shards.count), desc=desc, unit="shard", disable=not progress):
        yield st.meta.shards.rows(k, len(st))


def _export_h5(st, path: str, progress: bool) -> None:
    import h5py

    lay, n = st.meta.layout, len(st)
    with h5py.File(path, "w") as f:
        f.attrs[ATTR] = json.dumps(st.meta.to_json())
        f.create_dataset("keys", data=np.asarray(st.keys, dtype=object), dtype=h5py.string_dtype())
        dsets = {}
        for name in lay.arrays():
            shape = (n,) + lay.item_shape(name)
            dtype = "int32" if name == "grid_hw" else lay.dtype
            chunks = (1,) + shape[1:] if name != "grid_hw" else None
            dsets[name] = f.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks)
        for rows in _shard_batches(st, progress, "export h5"):
            for name, ds in dsets.items():
                ds[rows.start : rows.stop] = st.read(name, np.arange(rows.start, rows.stop))


def _export_h5_vln(st, path: str, progress: bool) -> None:
    import h5py

    keys = st.keys
    with h5py.File(path, "w") as f:
        f.attrs[ATTR] = json.dumps(st.meta.to_json())
        for rows in _shard_batches(st, progress, "export h5-vln"):
            pooled = st.pooled(np.arange(rows.start, rows.stop)).astype(np.float32)  # [n, 36, D]
            for i, r in enumerate(rows):
                scan, vp = _split_vln_key(keys[r])
                ds = f.create_dataset(keys[r], data=pooled[i])
                ds.attrs.update({"scanId": scan, "viewpointId": vp, "image_w": VLN_W, "image_h": VLN_H, "vfov": VLN_VFOV})


def _export_tsv(st, path: str, progress: bool) -> None:
    keys = st.keys
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, delimiter="\t", fieldnames=TSV_FIELDS)
        for rows in _shard_batches(st, progress, "export tsv"):
            pooled = st.pooled(np.arange(rows.start, rows.stop)).astype(np.float32)
            for i, r in enumerate(rows):
                scan, vp = _split_vln_key(keys[r])
                feats = base64.b64encode(np.ascontiguousarray(pooled[i]).tobytes()).decode("ascii")
                w.writerow({"scanId": scan, "viewpointId": vp, "image_w": VLN_W, "image_h": VLN_H, "vfov": VLN_VFOV, "features": feats})


# -- import -----------------------------------------------------------------------------------
def _detect_format(src: str) -> str:
    if os.path.isdir(src):
        return "npy-dir"
    low = src.lower()
    if low.endswith(".tsv"):
        return "tsv"
    if low.endswith((".h5", ".hdf5")):
        import h5py

        with h5py.File(src, "r") as f:
            return "h5" if "keys" in f else "h5-vln"
    raise FormatError(f"cannot tell the format of {src}; pass --format ({', '.join(IMPORT_FORMATS)})")


def _lossless_dtype(*arrays: np.ndarray) -> str:
    """float16 when every value survives the round trip through float16, else float32."""
    for a in arrays:
        if a is None:
            continue
        if a.dtype == np.float16:
            continue
        if not np.array_equal(a.astype(np.float16).astype(a.dtype), a, equal_nan=True):
            return "float32"
    return "float16"


def _read_h5(src: str) -> dict[str, Any]:
    import h5py

    with h5py.File(src, "r") as f:
        if "keys" not in f or "pooled" not in f:
            raise FormatError(f"{src}: a flat h5 store needs datasets `keys` and `pooled`")
        data: dict[str, Any] = {"keys": [k.decode() if isinstance(k, bytes) else str(k) for k in f["keys"][:]]}
        for name in ("pooled", "grid", "grid_hw"):
            if name in f:
                data[name] = f[name][:]
        if ATTR in f.attrs:
            data["meta"] = StoreMeta.from_json(json.loads(f.attrs[ATTR]), where=src)
    return data


def _read_h5_vln(src: str) -> dict[str, Any]:
    import h5py

    with h5py.File(src, "r") as f:
        keys = sort_keys(f.keys())
        if not keys:
            raise FormatError(f"{src} holds no datasets")
        first = f[keys[0]]
        if first.ndim != 2 or first.shape[0] != VLN_VIEWS:
            raise FormatError(f"{src}: dataset {keys[0]} has shape {first.shape}, expected [36, D] (h5-vln layout)")
        pooled = np.stack([f[k][...] for k in keys])
        meta = StoreMeta.from_json(json.loads(f.attrs[ATTR]), where=src) if ATTR in f.attrs else None
    return {"keys": keys, "pooled": pooled, "meta": meta}


def _read_tsv(src: str) -> dict[str, Any]:
    csv.field_size_limit(sys.maxsize)
    feats: dict[str, np.ndarray] = {}
    with open(src, newline="") as fh:
        for line, item in enumerate(csv.DictReader(fh, delimiter="\t", fieldnames=TSV_FIELDS), 1):
            try:
                vec = np.frombuffer(base64.b64decode(item["features"]), dtype=np.float32)
                feats[f"{item['scanId']}_{item['viewpointId']}"] = vec.reshape(VLN_VIEWS, -1)
            except (TypeError, ValueError, KeyError) as e:
                raise FormatError(f"{src}:{line}: not an R2R feature TSV row ({e})") from None
    if not feats:
        raise FormatError(f"{src} holds no rows")
    keys = sort_keys(feats)
    return {"keys": keys, "pooled": np.stack([feats[k] for k in keys])}


def _read_npy_dir(src: str) -> dict[str, Any]:
    names = os.listdir(src)
    pooled_files = {n[:-4]: n for n in names if n.endswith(".npy")}
    grid_files = {n[:-4]: n for n in names if n.endswith(".npz")}
    keys = sort_keys(set(pooled_files) | set(grid_files))
    if not keys:
        raise FormatError(f"{src} holds no .npy or .npz feature files")
    if pooled_files and set(pooled_files) != set(keys) or grid_files and set(grid_files) != set(keys):
        raise FormatError(f"{src}: .npy and .npz files name different ids; every id needs both, or one kind only")
    data: dict[str, Any] = {"keys": keys}
    if pooled_files:
        data["pooled"] = np.stack([np.load(os.path.join(src, pooled_files[k])).reshape(-1) for k in keys])
    if grid_files:
        grids = []
        for k in keys:
            with np.load(os.path.join(src, grid_files[k])) as z:
                if "feat" not in z:
                    raise FormatError(f"{src}/{grid_files[k]} has no `feat` array (expected [H, W, C])")
                g = z["feat"]
            if g.ndim != 3:
                raise FormatError(f"{src}/{grid_files[k]}: feat has shape {g.shape}, expected [H, W, C]")
            grids.append(g)
        hws = np.array([g.shape[:2] for g in grids], dtype=np.int32)
        cells = int((hws[:, 0] * hws[:, 1]).max())
        grid = np.zeros((len(keys), cells, grids[0].shape[2]), dtype=grids[0].dtype)
        for i, g in enumerate(grids):
            grid[i, : g.shape[0] * g.shape[1]] = g.reshape(-1, g.shape[2])  # HWC -> (HW)C
        data["grid"] = grid
        if len({tuple(h) for h in hws}) > 1:
            data["grid_hw"] = hws
        else:
            data["grid_fixed_hw"] = tuple(int(x) for x in hws[0])
    if "pooled" not in data:
        raise FormatError(f"{src}: no pooled .npy files; clipfeat stores always hold pooled embeddings")
    return data


def _meta_for(data: dict[str, Any], *, dataset: str, model: str, shard_size: int, source_sha: str) -> StoreMeta:
    pooled, grid = data["pooled"], data.get("grid")
    views = pooled.shape[1] if pooled.ndim == 3 else None
    grid_hw = None
    if grid is not None and "grid_hw" not in data:
        grid_hw = data.get("grid_fixed_hw")
        if grid_hw is None:
            side = int(round(np.sqrt(grid.shape[-2])))
            grid_hw = (side, side) if side * side == grid.shape[-2] else (1, grid.shape[-2])
    layout = Layout(
        pooled_dim=int(pooled.shape[-1]),
        grid_channels=int(grid.shape[-1]) if grid is not None else None,
        grid_hw=grid_hw,
        grid_max_cells=int(grid.shape[-2]) if grid is not None and grid_hw is None else None,
        views=views,
        dtype=_lossless_dtype(pooled, grid),
    )
    keys = data["keys"]
    return StoreMeta.build(
        dataset=DatasetInfo(name=dataset, manifest_sha256=canonical_sha256(keys), num_items=len(keys)),
        encoder=EncoderInfo(model=model, weights_sha256=source_sha),
        preprocess=PreprocessInfo(mode="unknown", interpolation="unknown"),
        layout=layout,
        shard_size=shard_size,
    )


def import_features(
    src: str,
    out: str,
    *,
    fmt: str | None = None,
    dataset: str = "imported",
    model: str = "unknown",
    shard_size: int = 256,
    overwrite: bool = False,
    progress: bool = True,
) -> StoreMeta:
    """Build a complete store at `out` from features in an interchange format."""
    import hashlib

    from .writer import create_store

    if not os.path.exists(src):
        raise FormatError(f"{src} does not exist")
    fmt = fmt or _detect_format(src)
    if fmt not in IMPORT_FORMATS:
        raise FormatError(f"unknown import format {fmt!r}; choose one of {', '.join(IMPORT_FORMATS)}")
    loc = Location.parse(out)
    if loc.fs.exists(loc.root) and not overwrite:
        raise OutputExistsError(f"{out} exists; choose another path or pass --overwrite")
    data = {"h5": _read_h5, "h5-vln": _read_h5_vln, "tsv": _read_tsv, "npy-dir": _read_npy_dir}[fmt](src)
    meta = data.get("meta")
    if meta is None or meta.layout.views != (data["pooled"].shape[1] if data["pooled"].ndim == 3 else None):
        src_sha = hashlib.sha256(src.encode()).hexdigest() if os.path.isdir(src) else _file_sha256(src)
        meta = _meta_for(data, dataset=dataset, model=model, shard_size=shard_size, source_sha=src_sha)
    elif meta.layout.dtype == "float16" and _lossless_dtype(data["pooled"], data.get("grid")) != "float16":
        raise FormatError(f"{src}: values do not fit the float16 layout its metadata declares")
    else:  # exported by clipfeat: same store_id, written afresh
        meta = dataclasses.replace(meta, status="writing", created_by=CreatedBy(command="clipfeat import"))
    keys = data["keys"]
    if len(keys) != meta.dataset.num_items:
        raise FormatError(f"{src} holds {len(keys)} items but its metadata says {meta.dataset.num_items}")
    tmp = _tmp_name(loc.root)
    try:
        w = create_store(tmp, meta=meta, keys=keys, overwrite=True)
        for k in tqdm(range(meta.shards.count), desc="import", unit="shard", disable=not progress):
            r = w.shard_rows(k)
            sl = slice(r.start, r.stop)
            w.write_shard(
                k,
                pooled=data["pooled"][sl],
                grid=data["grid"][sl] if "grid" in data and meta.layout.has_grid else None,
                grid_hw=data["grid_hw"][sl] if meta.layout.variable_grid else None,
            )
        w.finalize()
        if loc.fs.exists(loc.root):
            loc.fs.rm(loc.root, recursive=True)
        os.replace(tmp, loc.root)
    except BaseException:
        if os.path.exists(tmp):
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _file_sha256(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
