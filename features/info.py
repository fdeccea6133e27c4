"""`info` (one store) and `ls` (every store under a folder or bucket prefix)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .errors import ClipfeatError
from .location import Location
from .reader import FeatureStore, open_store
from .schema import ATTR, StoreMeta

__all__ = ["store_info", "format_info", "list_stores", "format_catalog"]


def _bytes_under(loc: Location, key: str) -> int | None:
    try:
        return int(loc.fs.du(loc.path(key), total=True))
    except Exception:  # HTTP cannot list; sizes are then unknown
        return None


def _raw_bytes(st: FeatureStore, name: str) -> int:
    lay = st.meta.layout
    dtype = np.dtype("int32" if name == "grid_hw" else lay.dtype)
    return len(st) * int(np.prod(lay.item_shape(name))) * dtype.itemsize


def store_info(url: str, *, max_failures: int = 20) -> dict[str, Any]:
    """Schema, sizes, progress and failures of one store, as a JSON-able dict."""
    st = open_store(url, allow_partial=True)
    try:
        arrays = {}
        for name in st.meta.layout.arrays():
            a = st.group[name]
            arrays[name] = {
                "shape": list(a.shape),
                "dtype": str(np.dtype(a.dtype)),
                "chunks": list(a.chunks),
                "shards": list(a.shards) if a.shards else None,
                "raw_bytes": _raw_bytes(st, name),
                "stored_bytes": _bytes_under(st.loc, name),
            }
        failed = st.failed_rows()
        keys = st.keys
        done = st.done_shards()
        total_stored = _bytes_under(st.loc, "")
        raw = sum(a["raw_bytes"] for a in arrays.values())
        return {
            "url": url,
            "meta": st.meta.to_json(),
            "arrays": arrays,
            "stored_bytes": total_stored,
            "raw_bytes": raw,
            "progress": {
                "shards_done": len(done),
                "shards_total": st.meta.shards.count,
                "rows_done": int(len(st.done_rows()) + len(failed)),
                "rows_total": len(st),
            },
            "failures": {
                "count": len(failed),
                "rows": [{"row": r, "key": keys[r], "reason": why} for r, why in sorted(failed.items())[:max_failures]],
            },
        }
    finally:
        st.close()


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return "?"


def format_info(info: dict[str, Any]) -> str:
    m = info["meta"]
    enc, pre, lay, ds = m["encoder"], m["preprocess"], m["layout"], m["dataset"]
    p, f = info["progress"], info["failures"]
    weights = enc.get("pretrained") or enc.get("checkpoint") or "random init"
    if pre["mode"] == "fixed":
        prep = f"fixed {pre.get('size')}px"
    elif pre["mode"] == "aspect":
        prep = f"aspect shorter {pre.get('shorter_side')} max {pre.get('max_side')}"
    else:
        prep = pre["mode"]
    lines = [
        f"store      {info['url']}",
        f"id         {m['store_id']}  (schema {m['schema_version']}, status {m['status']})",
        f"dataset    {ds['name']}: {ds['num_items']} items {json.dumps(ds.get('splits') or {})}, manifest {ds['manifest_sha256'][:12]}",
        f"encoder    {enc['model']} ({weights}), weights {str(enc.get('weights_sha256') or '-')[:12]}",
        f"preprocess {prep}, {pre.get('interpolation')}" + (f"; views {pre['render']}" if pre.get("render") else ""),
        f"layout     views {lay.get('views') or 1}, pooled {lay['pooled_dim']}, "
        + (f"grid {lay['grid_hw'] or 'variable'} x {lay['grid_channels']}" if lay.get("grid_channels") else "no grid")
        + f", {lay['dtype']}",
        f"shards     {p['shards_done']}/{p['shards_total']} done ({m['shards']['size']} items each), rows {p['rows_done']}/{p['rows_total']}",
        f"size       {_size(info['stored_bytes'])} on storage, {_size(info['raw_bytes'])} raw",
        "arrays:",
    ]
    for name, a in info["arrays"].items():
        ratio = "" if not a["stored_bytes"] else f" ({a['stored_bytes'] / a['raw_bytes']:.2f}x raw)"
        lines.append(f"  {name:<8} {str(a['shape']):<22} {a['dtype']:<8} {_size(a['stored_bytes'])}{ratio}")
    lines.append(f"failures   {f['count']}")
    for r in f["rows"]:
        lines.append(f"  row {r['row']} ({r['key']}): {r['reason']}")
    if f["count"] > len(f["rows"]):
        lines.append(f"  … and {f['count'] - len(f['rows'])} more (--json lists the first {len(f['rows'])})")
    c = m["created_by"]
    lines.append(f"created    {c.get('started')} → {c.get('finished') or '…'} by clipfeat {c.get('clipfeat_version')}")
    return "\n".join(lines)


def list_stores(root: str, *, storage_options: dict | None = None) -> list[dict[str, Any]]:
    """Every clipfeat store (a `*.zarr` folder with the `clipfeat` attribute) under `root`."""
    loc = Location.parse(root, storage_options)
    if not loc.fs.exists(loc.root):
        raise ClipfeatError(f"{root} does not exist; give a folder or bucket prefix that holds stores")
    found = []
    for dirpath, dirs, _files in loc.fs.walk(loc.root, topdown=True):
        stores = sorted(d for d in dirs if d.endswith(".zarr"))
        dirs[:] = [d for d in dirs if not d.endswith(".zarr")]  # do not descend into stores
        for d in stores:
            path = f"{dirpath.rstrip('/')}/{d}"
            found.append(_catalog_row(loc, path))
    if loc.root.endswith(".zarr"):
        found.append(_catalog_row(loc, loc.root))
    return [r for r in found if r is not None]


def _catalog_row(loc: Location, path: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(loc.fs.cat_file(f"{path}/zarr.json"))
        meta = StoreMeta.from_json(doc["attributes"][ATTR], where=path)
    except (FileNotFoundError, KeyError, ValueError, ClipfeatError):
        return None
    url = path if loc.local else loc.fs.unstrip_protocol(path)
    try:
        size = int(loc.fs.du(path, total=True))
    except Exception:
        size = None
    return {
        "url": url,
        "dataset": meta.dataset.name,
        "model": meta.encoder.model,
        "weights": meta.encoder.pretrained or meta.encoder.checkpoint or "",
        "items": meta.dataset.num_items,
        "bytes": size,
        "status": meta.status,
        "store_id": meta.store_id,
    }


def format_catalog(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no clipfeat stores found"
    head = f"{'store':<50} {'dataset':<10} {'model':<14} {'items':>9} {'size':>10} {'status':<9}"
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['url']:<50} {r['dataset']:<10} {r['model']:<14} {r['items']:>9} {_size(r['bytes']):>10} {r['status']:<9}"
        )
    return "\n".join(lines)
