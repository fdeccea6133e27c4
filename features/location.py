"""Where a store lives: a local directory or any fsspec URL (http(s), s3, gs, memory, ...).

`Location` gives the two views of it that clipfeat needs: a zarr `Store` (for metadata and
the spec-level API) and an fsspec filesystem + root path (for listing, byte copies, locks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import fsspec

from .errors import UnreachableError

__all__ = ["Location", "is_local"]


def is_local(url: str) -> bool:
    return "://" not in str(url) or str(url).startswith("file://")


@dataclass
class Location:
    url: str  # as the user gave it
    fs: fsspec.AbstractFileSystem
    root: str  # path inside `fs`, no trailing slash
    local: bool
    storage_options: dict[str, Any]

    @classmethod
    def parse(cls, url: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> "Location":
        url = os.fspath(url)
        opts = dict(storage_options or {})
        if is_local(url):
            path = url[len("file://") :] if url.startswith("file://") else url
            root = os.path.abspath(os.path.expanduser(path))
            return cls(url=url, fs=fsspec.filesystem("file"), root=root, local=True, storage_options=opts)
        try:
            fs, root = fsspec.core.url_to_fs(url, **opts)
        except (ImportError, ValueError) as e:
            raise UnreachableError(f"cannot open {url}: {e}") from None
        return cls(url=url, fs=fs, root=root.rstrip("/"), local=False, storage_options=opts)

    def path(self, key: str) -> str:
        """Filesystem path of store key `key` (e.g. 'grid/c/3/0/0')."""
        return f"{self.root}/{key}" if key else self.root

    def zarr_store(self, *, read_only: bool):
        """A zarr v3 Store over this location."""
        from zarr.storage import FsspecStore, LocalStore

        if self.local:
            return LocalStore(self.root, read_only=read_only)
        return FsspecStore.from_url(self.url, storage_options=self.storage_options or None, read_only=read_only)

    def read_bytes(self, key: str) -> bytes | None:
        """Whole object `key`, or None when it does not exist."""
        try:
            return self.fs.cat_file(self.path(key))
        except FileNotFoundError:
            return None
        except OSError as e:  # connection refused, DNS failure, HTTP 5xx ...
            raise UnreachableError(f"cannot read {self.url}: {e}") from None
