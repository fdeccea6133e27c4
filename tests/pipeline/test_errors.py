"""A newcomer's mistakes: each is one `Error: …` line saying what to do, exit code 2, no
traceback, and nothing written. No network and no Ray are needed: downloads run against an
empty Hugging Face cache in offline mode, and unreachable Ray addresses are probed in a
subprocess (the session's local Ray must stay the only Ray of this process)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from clipfeat.features.errors import ClipfeatError
from clipfeat.pipeline.cli import cli
from tests.conftest import build_store

RN50 = ["--model", "RN50", "--pretrained", "openai"]


def _one_line_error(r, *needles: str) -> str:
    """The output of a failed command: one `Error:` line (exit 2) containing every needle."""
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit)), r.exception
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline mode off (as on a machine nobody configured)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return tmp_path / "hf-cache"


# -- a. no weights offline ------------------------------------------------------------------------


def test_pretrained_weights_without_network(synthetic_coco, tmp_path, empty_hub_cache, monkeypatch):
    from huggingface_hub import constants

    from clipfeat.pipeline import encoder

    monkeypatch.setattr(encoder, "_reachable", lambda url, timeout=5.0: False)  # as on a machine without internet
    out = tmp_path / "x.zarr"
    t0 = time.perf_counter()
    r = CliRunner().invoke(cli, ["extract", "--dataset", "coco", "--root", synthetic_coco, *RN50, "--out", str(out), "--no-progress"])
    _one_line_error(r, "cannot download RN50 weights 'openai'", "hf-hub:timm/resnet50_clip.openai", "cannot be reached",
                    "--checkpoint FILE", "check the network", "HF_HUB_OFFLINE=1")
    assert time.perf_counter() - t0 < 30  # no retries with backoff
    assert not out.exists()  # refused before anything was created
    assert constants.HF_HUB_OFFLINE is False  # offline mode was only for the download


def test_pretrained_weights_with_hf_hub_offline_set(empty_hub_cache, monkeypatch):
    from huggingface_hub import constants

    from clipfeat.features.errors import UnreachableError
    from clipfeat.pipeline.encoder import EncoderSpec, resolve_weights

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UnreachableError, match="HF_HUB_OFFLINE is set and they are not in the Hugging Face cache") as e:
        resolve_weights(EncoderSpec(model="RN50", pretrained="openai"))
    assert str(empty_hub_cache) in str(e.value) and "--checkpoint FILE" in str(e.value)


def test_pretrained_weights_download_error(monkeypatch):
    """The hub answers, but the download fails: open_clip's error, shortened, and what to do."""
    import open_clip

    from clipfeat.features.errors import UnreachableError
    from clipfeat.pipeline import encoder

    def fail(cfg, **kw):  # what open_clip 3.x raises after huggingface_hub gave up
        raise FileNotFoundError(
            "Failed to download file (open_clip_pytorch_model.bin) for timm/resnet50_clip.openai. Last error: An error "
            "happened while trying to locate the file on the Hub and we cannot find the requested files in the local cache."
        )

    monkeypatch.setattr(encoder, "_reachable", lambda url, timeout=5.0: True)
    monkeypatch.setattr(open_clip, "download_pretrained", fail)
    with pytest.raises(UnreachableError) as e:
        encoder.resolve_weights(encoder.EncoderSpec(model="RN50", pretrained="openai"))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("cannot download RN50 weights 'openai' from hf-hub:timm/resnet50_clip.openai")
    assert "FileNotFoundError: Failed to download file (open_clip_pytorch_model.bin)" in msg and "…" in msg
    assert "--checkpoint FILE" in msg


def test_cached_weights_are_used_without_network(empty_hub_cache, monkeypatch):
    """Offline with the weights in the Hugging Face cache: they are used, no error, no wait."""
    from clipfeat.pipeline import encoder

    commit = "a" * 40
    repo = empty_hub_cache / "models--timm--resnet50_clip.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    weights = repo / "snapshots" / commit / "open_clip_pytorch_model.bin"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"not really weights")
    monkeypatch.setattr(encoder, "_reachable", lambda url, timeout=5.0: False)
    path, sha = encoder.resolve_weights(encoder.EncoderSpec(model="RN50", pretrained="openai"))
    assert os.path.samefile(path, weights) and sha == encoder.file_sha256(str(weights))


def test_reachable(monkeypatch):
    import socket
    import urllib.request

    from clipfeat.pipeline.encoder import _reachable

    def refuse(addr, timeout=None):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "getproxies", lambda: {})
    assert not _reachable("https://huggingface.co")
    monkeypatch.setattr(urllib.request, "getproxies", lambda: {"https": "http://proxy:3128"})
    assert _reachable("https://huggingface.co")  # the proxy resolves names, not us


# -- b. wrong dataset root ------------------------------------------------------------------------


def _wrong_roots(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "1.jpg").write_bytes(b"")
    (tmp_path / "a-file").write_text("")
    return {"missing": tmp_path / "nope", "a file": tmp_path / "a-file", "empty": tmp_path / "empty", "not the layout": tmp_path / "images"}


EXPECTED = {  # dataset -> (root kind -> what the one line must say)
    "coco": {"missing": ["COCO root", "does not exist", "train2014/, val2014/"],
             "a file": ["COCO root", "is not a folder", "train2014/, val2014/"],
             "empty": ["is not a COCO root", "train2014/, val2014/", "pass --root"],
             "not the layout": ["is not a COCO root", "train2014/, val2014/", "pass --root"]},
    "vg": {"missing": ["Visual Genome root", "does not exist", "image_data.json, VG_100K/"],
           "a file": ["Visual Genome root", "is not a folder", "image_data.json, VG_100K/"],
           "empty": ["image_data.json not found", "--root must be the Visual Genome folder", "VG_100K/"],
           "not the layout": ["image_data.json not found", "--root must be the Visual Genome folder", "VG_100K/"]},
    "r2r": {"missing": ["R2R root", "v1/scans/"],
            "a file": ["R2R root", "v1/scans/"],
            "empty": ["has no *_connectivity.json", "--connectivity DIR"],
            "not the layout": ["has no *_connectivity.json", "--connectivity DIR"]},
}


@pytest.mark.parametrize("dataset", ["coco", "vg", "r2r"])
def test_wrong_dataset_root(dataset, tmp_path):
    runner = CliRunner()
    for kind, root in _wrong_roots(tmp_path).items():
        needles = EXPECTED[dataset][kind]
        r = runner.invoke(cli, ["manifest", "--dataset", dataset, "--root", str(root), "--out", str(tmp_path / "m.jsonl")])
        _one_line_error(r, *needles)
        out = tmp_path / f"{dataset}.zarr"
        r = runner.invoke(cli, ["extract", "--dataset", dataset, "--root", str(root), *RN50, "--out", str(out), "--no-progress"])
        if kind == "a file":  # refused by click's --root type: its usage error (usage, hint, error line; exit 2)
            assert r.exit_code == 2 and r.output.strip().splitlines()[-1].endswith("is a file."), r.output
        else:
            _one_line_error(r, *needles)
        assert not out.exists() and not (tmp_path / "m.jsonl").exists()


def test_coco_root_without_images(tmp_path):
    (tmp_path / "val2014").mkdir()
    (tmp_path / "val2014" / "readme.txt").write_text("")
    r = CliRunner().invoke(cli, ["manifest", "--dataset", "coco", "--root", str(tmp_path), "--out", str(tmp_path / "m.jsonl")])
    _one_line_error(r, "no COCO images found in val2014/", "COCO_val2014_000000000042.jpg")
    r = CliRunner().invoke(cli, ["manifest", "--dataset", "coco", "--root", str(tmp_path), "--splits", "train2014",
                                 "--out", str(tmp_path / "m.jsonl")])
    _one_line_error(r, "has no train2014/ folder (found: val2014)", "check --root and --splits")


# -- c. a store with another configuration -------------------------------------------------------


def test_store_with_another_configuration(synthetic_coco, tiny_models, tmp_path):
    out = tmp_path / "s.zarr"
    build_store(str(out), n=12)
    spec = tiny_models["tinyrn"]
    r = CliRunner().invoke(cli, ["extract", "--dataset", "coco", "--root", synthetic_coco, "--splits", "val2014", "--model", spec.model,
                                 "--model-config", spec.model_config, "--checkpoint", spec.checkpoint, "--out", str(out), "--no-progress"])
    _one_line_error(r, f"{out} holds another configuration", "choose another --out or pass --overwrite")


# -- d. Ray not reachable ------------------------------------------------------------------------

def test_unreachable_ray_address():
    """Nothing listens on port 1: an error at once, before Ray is asked (it would wait 30 s)."""
    from clipfeat.pipeline.job import check_address

    for address in ("ray://127.0.0.1:1", "127.0.0.1:1"):
        t0 = time.perf_counter()
        with pytest.raises(ClipfeatError) as e:
            check_address(address)
        assert time.perf_counter() - t0 < 10
        msg = str(e.value)
        assert msg.startswith(f"cannot reach the Ray cluster at {address} (connection refused); check --address"), msg
        assert "`ray start --head`" in msg and "drop --address to run on a local Ray" in msg
    for address in ("127.0.0.1", "ray://127.0.0.1:x"):
        with pytest.raises(ClipfeatError, match=f"--address {address} is not HOST:PORT"):
            check_address(address)
    for address in (None, "auto", "local"):  # Ray's own discovery: nothing to probe
        check_address(address)


@pytest.mark.slow
@pytest.mark.parametrize("address", ["ray://127.0.0.1:1", "127.0.0.1:1"])
def test_extract_with_unreachable_ray_address(address, synthetic_coco, tiny_models, tmp_path):
    spec = tiny_models["tinyrn"]
    cmd = [os.path.join(os.path.dirname(sys.executable), "clipfeat"), "extract", "--dataset", "coco", "--root", synthetic_coco,
           "--splits", "val2014", "--model", spec.model, "--model-config", spec.model_config, "--checkpoint", spec.checkpoint,
           "--out", str(tmp_path / "x.zarr"), "--device", "cpu", "--no-progress", "--address", address]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert time.perf_counter() - t0 < 30, "an unreachable address must fail fast"
    assert p.returncode == 2 and p.stdout == "", (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: cannot reach the Ray cluster at {address}"), p.stderr
    assert not (tmp_path / "x.zarr").exists()  # probed before anything was created


def test_actor_threads_fit_on_the_nodes():
    """Threads per actor come from the nodes, not the cluster's total (a 2 x 8-CPU cluster cannot
    host an actor reserving 16 CPUs: Ray would wait forever)."""
    from clipfeat.pipeline.encoder import EncoderSpec
    from clipfeat.pipeline.job import ExtractConfig, _placement, cpu_threads

    class FakeRay:
        def __init__(self, *nodes):
            self._nodes = [{"Alive": True, "Resources": r} for r in nodes] + [{"Alive": False, "Resources": {"CPU": 64.0}}]

        def nodes(self):
            return self._nodes

    def place(ray, **kw):
        return _placement(ExtractConfig(out="x.zarr", spec=EncoderSpec("RN50"), **kw), ray)

    two = FakeRay({"CPU": 8.0}, {"CPU": 8.0})
    assert place(two, device="cpu") == ("cpu", 1, 8)
    assert place(two, device="cpu", workers=2) == ("cpu", 2, 8)
    assert place(two, device="cpu", workers=3) == ("cpu", 3, 4)  # 5 would fit only two actors
    assert cpu_threads(3, [8, 8]) == 4 and cpu_threads(4, [16, 2]) == 4 and cpu_threads(20, [8, 8]) == 1
    gpu = FakeRay({"CPU": 0.0}, {"CPU": 32.0, "GPU": 4.0}, {"CPU": 16.0, "GPU": 4.0}, {"CPU": 64.0})
    assert place(gpu, device="auto") == ("cuda", 8, 4)  # 16 CPUs / 4 GPUs on the smaller GPU node
    assert place(gpu, device="cuda", workers=2) == ("cuda", 2, 4)
    with pytest.raises(ClipfeatError, match="more than any node has"):
        place(two, device="cpu", threads=12)
    with pytest.raises(ClipfeatError, match="has no GPU"):
        place(two, device="cuda")
