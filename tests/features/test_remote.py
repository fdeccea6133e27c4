"""Reading and copying a store over real HTTP, from a server on 127.0.0.1."""

import functools
import io
import os
import http.server
import threading

import numpy as np
import pytest
from click.testing import CliRunner

from clipfeat.features import NotAStoreError, UnreachableError, open_store
from clipfeat.pipeline.cli import cli


class _Quiet(http.server.SimpleHTTPRequestHandler):
    """Plain static server: ignores Range headers and always sends whole files."""

    def log_message(self, *args):
        pass


class _Ranged(_Quiet):
    """Answers single byte ranges (`bytes=a-b`, `bytes=-n`) with 206, as nginx and S3 do."""

    def send_head(self):
        rng = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not rng or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        a, b = rng.removeprefix("bytes=").split("-")
        start, end = (size - int(b), size - 1) if a == "" else (int(a), min(int(b) if b else size - 1, size - 1))
        start = max(start, 0)
        f = open(path, "rb")
        f.seek(start)
        body = f.read(end - start + 1)
        f.close()
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        return io.BytesIO(body)


@pytest.fixture(params=["ranged", "plain"])
def http_root(request, tmp_path):
    """Serve tmp_path over HTTP, with Range support (like nginx/S3) and without."""
    handler = functools.partial(_Ranged if request.param == "ranged" else _Quiet, directory=str(tmp_path))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_http_reads_match_local(store, http_root):
    url, vals = store  # tmp_path/s.zarr
    st = open_store(f"{http_root}/s.zarr")
    assert not st.loc.local and st.keys == vals["keys"]
    rows = np.array([66, 1, 17, 17, 40])
    np.testing.assert_array_equal(st.grid(rows), vals["grid"][rows])
    np.testing.assert_array_equal(st.pooled(rows), vals["pooled"][rows])
    assert st._reader("grid").fast  # byte ranges, not the zarr fallback


def test_http_info_verify_and_copy(store, http_root, tmp_path):
    src = f"{http_root}/s.zarr"
    r = CliRunner()
    res = r.invoke(cli, ["info", "--json", src])
    assert res.exit_code == 0, res.output
    res = r.invoke(cli, ["verify", "-q", src])
    assert res.exit_code == 0, res.output
    dst = str(tmp_path / "copied" / "c.zarr")
    res = r.invoke(cli, ["copy", src, dst])
    assert res.exit_code == 0, res.output
    assert "5 shards verified" in res.output
    _, vals = store
    np.testing.assert_array_equal(open_store(dst).grid(np.arange(70)), vals["grid"])
    res = r.invoke(cli, ["copy", src, dst])
    assert res.exit_code == 2 and "--overwrite" in res.output


def test_unreachable_and_missing_urls(http_root):
    with pytest.raises(NotAStoreError):
        open_store(f"{http_root}/nothing.zarr")
    with pytest.raises(UnreachableError, match="cannot read"):
        open_store("http://127.0.0.1:9/x.zarr")  # port 9 (discard): connection refused
    res = CliRunner().invoke(cli, ["info", "http://127.0.0.1:9/x.zarr"])
    assert res.exit_code == 2 and res.output.startswith("Error: cannot read")
