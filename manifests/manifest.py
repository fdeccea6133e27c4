"""`Manifest`: the ordered list of items to extract, and the contract of row numbers.

Row i of a manifest is row i of every array of the store built from it. Rows are sorted by
key (numerically for integer ids), so two teams scanning the same dataset get the same rows
and the same `sha256`, which depends only on the rows (not on where the dataset lives).

On disk: JSON Lines (optionally gzip, by a `.gz` suffix); the first line is a header
`{"clipfeat_manifest": 1, "dataset": …, "sha256": …, "count": …}`, then one row per line.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from clipfeat.common import ClipfeatError

__all__ = ["IMAGES", "LAYOUTS", "SKYBOX", "Row", "Manifest", "ManifestError", "safe_path", "sort_rows"]

MANIFEST_VERSION = 1

# What one row is, which decides how the pipeline turns it into model inputs.
IMAGES = "images"  # one image file per row (COCO, VG, Flickr30k)
SKYBOX = "skybox"  # six Matterport skybox faces per row -> the simulator's 36 views (R2R)
LAYOUTS = (IMAGES, SKYBOX)


class ManifestError(ClipfeatError):
    """A dataset root or manifest file that cannot be used as it is (the CLI prints it, exit 2)."""


@dataclass(frozen=True)
class Row:
    key: str  # COCO/VG image id, R2R `{scan}_{viewpoint}`
    path: str  # POSIX path relative to the dataset root
    split: str  # e.g. "val2014", "vg"
    fields: dict[str, Any] = field(default_factory=dict)  # dataset-specific (coco_id, width, …)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "path": self.path, "split": self.split, "fields": self.fields}


def sort_rows(rows: Iterable[Row]) -> list[Row]:
    """Sorted by key: numerically when every key is an integer id, else lexicographically."""
    rows = list(rows)
    if rows and all(r.key.isdigit() for r in rows):
        return sorted(rows, key=lambda r: int(r.key))
    return sorted(rows, key=lambda r: r.key)


def safe_path(root: str | os.PathLike, rel: str) -> str:
    """Absolute path of `rel` inside `root`; refuses absolute paths, `..` and symlinks out."""
    if os.path.isabs(rel) or rel.startswith(("/", "\\")):
        raise ManifestError(f"manifest path {rel!r} is absolute; rows must be relative to the dataset root")
    if ".." in rel.replace("\\", "/").split("/"):
        raise ManifestError(f"manifest path {rel!r} leaves the dataset root")
    real_root = os.path.realpath(root)
    full = os.path.realpath(os.path.join(real_root, rel))
    if os.path.commonpath([full, real_root]) != real_root:
        raise ManifestError(f"manifest path {rel!r} resolves outside the dataset root (symlink to {full})")
    return full


@dataclass
class Manifest:
    dataset: str
    rows: list[Row]
    layout: str = IMAGES  # IMAGES or SKYBOX; not part of sha256 (the rows say it all)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ManifestError(f"{self.dataset}: manifest layout {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        counts = Counter(r.key for r in self.rows)
        if len(counts) != len(self.rows):
            dup = next(k for k, c in counts.items() if c > 1)
            raise ManifestError(f"{self.dataset}: key {dup} appears twice; choose splits that do not overlap (--splits)")

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def keys(self) -> list[str]:
        return [r.key for r in self.rows]

    @property
    def sha256(self) -> str:
        """Content hash of the rows alone (canonical JSON)."""
        h = hashlib.sha256()
        for r in self.rows:
            h.update(json.dumps(r.to_json(), sort_keys=True, separators=(",", ":")).encode())
            h.update(b"\n")
        return h.hexdigest()

    def splits(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.split] = out.get(r.split, 0) + 1
        return out

    def shards(self, size: int) -> list[range]:
        """Row ranges of `size` items (the last may be shorter): one pipeline/Zarr shard each."""
        if size <= 0:
            raise ValueError("shard size must be positive")
        return [range(s, min(s + size, len(self.rows))) for s in range(0, len(self.rows), size)]

    def resolve(self, root: str | os.PathLike, i: int) -> str:
        return safe_path(root, self.rows[i].path)

    def save(self, path: str | os.PathLike) -> None:
        path = os.fspath(path)
        opener = gzip.open if path.endswith(".gz") else open
        tmp = f"{path}.partial-{os.getpid()}"
        with opener(tmp, "wt", encoding="utf-8") as f:
            header = {"clipfeat_manifest": MANIFEST_VERSION, "dataset": self.dataset, "layout": self.layout,
                      "sha256": self.sha256, "count": len(self)}
            f.write(json.dumps(header) + "\n")
            for r in self.rows:
                f.write(json.dumps(r.to_json(), sort_keys=True) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Manifest":
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ManifestError(f"manifest {path} does not exist")
        opener = gzip.open if path.endswith(".gz") else open
        try:
            with opener(path, "rt", encoding="utf-8") as f:
                header = json.loads(f.readline())
                if not isinstance(header, dict) or "clipfeat_manifest" not in header:
                    raise ManifestError(f"{path} is not a clipfeat manifest (no header line)")
                if header["clipfeat_manifest"] > MANIFEST_VERSION:
                    raise ManifestError(f"{path} uses manifest format {header['clipfeat_manifest']}; upgrade clipfeat")
                rows = [Row(**json.loads(line)) for line in f if line.strip()]
        except (OSError, ValueError, TypeError) as e:
            raise ManifestError(f"{path} is not a readable manifest ({e})") from None
        # Manifests saved before the header named a layout: only R2R's rows were skyboxes.
        layout = header.get("layout", SKYBOX if header["dataset"] == "r2r" else IMAGES)
        m = cls(dataset=header["dataset"], rows=rows, layout=layout)
        if header.get("sha256") not in (None, m.sha256):
            raise ManifestError(f"{path}: rows do not match the header's sha256 (edited or truncated file)")
        return m
