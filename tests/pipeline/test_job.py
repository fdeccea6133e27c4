"""The extraction job end to end on Ray: synthetic COCO/VG layouts, the real COCO sample,
resume, faults (worker SIGKILL, a shard that raises, driver SIGKILL, broken files) and user
errors; the driver's scheduling (`ShardQueue`) without Ray."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from clipfeat.features import ClipfeatError, open_store
from clipfeat.features.verify import verify_store as _verify
from clipfeat.manifests import scan
from clipfeat.pipeline.job import ExtractConfig, JobFailedError, ShardQueue, run_extract
from tests.pipeline.faults import raise_in, sigkill_once

pytestmark = pytest.mark.slow


def _cfg(spec, root, out, **kw) -> ExtractConfig:
    base = dict(out=str(out), spec=spec, dataset="coco", root=root, shard_size=8, batch_size=4, device="cpu",
                workers=2, threads=1, progress=False)
    return ExtractConfig(**{**base, **kw})


def _reference(spec, root, manifest, preprocess):
    """Single-process computation of every row, one image at a time: (pooled, grid, hw) lists."""
    from clipfeat.pipeline.encoder import load_encoder
    from clipfeat.pipeline.images import load_image

    enc = load_encoder(spec)
    out = []
    for i in range(len(manifest)):
        img, _, _ = load_image(manifest.resolve(root, i))
        pooled, grid = enc.encode(enc.normalize(preprocess(img)[None]))
        out.append((pooled[0].numpy(), grid[0].numpy(), enc.last_hw))
    return out


def _assert_matches_reference(store, ref):
    for i, (pooled, grid, hw) in enumerate(ref):
        np.testing.assert_allclose(store.pooled(i).astype(np.float32), pooled, rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(store.grid(i).astype(np.float32), grid, rtol=2e-3, atol=2e-3 * max(1.0, np.abs(grid).max()))
        if store.meta.layout.variable_grid:
            assert tuple(store.grid_hw(i)) == hw


def _verify_ok(url: str) -> bool:
    return _verify(url, progress=False).ok


def _arrays(path):
    s = open_store(str(path))
    return {name: s.group[name][:] for name in ("keys", *s.meta.layout.arrays())}


def _assert_same_store(a, b):
    x, y = _arrays(a), _arrays(b)
    assert x.keys() == y.keys()
    for name in x:
        assert np.array_equal(x[name], y[name]), name


def test_coco_end_to_end(ray_local, tiny_models, synthetic_coco, tmp_path):
    spec = tiny_models["tinyrn"]
    res = run_extract(_cfg(spec, synthetic_coco, tmp_path / "c.zarr"))
    manifest, _ = scan("coco", synthetic_coco)
    assert (res.items, res.computed, res.shards_done, res.failed) == (36, 36, 5, {})
    assert {"read", "decode", "forward", "write"} <= set(res.timings)
    assert _verify_ok(str(tmp_path / "c.zarr"))
    store = open_store(str(tmp_path / "c.zarr"))
    assert store.meta.status == "complete" and store.keys == manifest.keys
    assert store.meta.encoder.weights_sha256 and store.meta.layout.grid_hw == (2, 2)
    from clipfeat.pipeline.images import Preprocessor

    _assert_matches_reference(store, _reference(spec, synthetic_coco, manifest, Preprocessor(mode="fixed", size=64)))
    # same command again: nothing to do, store untouched
    again = run_extract(_cfg(spec, synthetic_coco, tmp_path / "c.zarr"))
    assert (again.computed, again.shards_skipped) == (0, 5)


def test_vg_aspect_mode_variable_grids(ray_local, tiny_models, synthetic_vg, tmp_path):
    from clipfeat.pipeline.images import Preprocessor

    spec = tiny_models["tinyrn"]
    cfg = _cfg(spec, synthetic_vg, tmp_path / "vg.zarr", dataset="vg", preprocess="aspect", shorter_side=96, max_side=160)
    run_extract(cfg)
    store = open_store(str(tmp_path / "vg.zarr"))
    manifest, _ = scan("vg", synthetic_vg)
    assert store.keys == manifest.keys and store.meta.layout.variable_grid
    assert store.meta.layout.grid_max_cells == 3 * 5
    hws = {tuple(store.grid_hw(i)) for i in range(len(store))}
    assert len(hws) > 1  # landscape and portrait images give different grids
    _assert_matches_reference(store, _reference(spec, synthetic_vg, manifest, Preprocessor(mode="aspect", shorter_side=96, max_side=160)))
    assert _verify_ok(str(tmp_path / "vg.zarr"))


def test_vit_fixed_with_decode_processes(ray_local, tiny_models, synthetic_coco, tmp_path):
    # decode processes (what GPU workers use) started from inside a Ray actor
    run_extract(_cfg(tiny_models["tinyvit"], synthetic_coco, tmp_path / "v.zarr", splits=("val2014",), workers=1, threads=2,
                     decode="processes"))
    store = open_store(str(tmp_path / "v.zarr"))
    assert len(store) == 12 and store.grid(0).shape == (16, 48)


def test_real_coco_sample(ray_local, tiny_models, shared_data, tmp_path):
    """The 12 real val2014 JPEGs (greyscale and odd sizes included) through the whole job."""
    from clipfeat.pipeline.images import Preprocessor

    src = shared_data / "coco-val2014-sample"
    root = tmp_path / "coco"
    (root / "val2014").mkdir(parents=True)
    for f in src.iterdir():
        shutil.copy(f, root / "val2014" / f.name)
    spec = tiny_models["tinyrn"]
    res = run_extract(_cfg(spec, str(root), tmp_path / "real.zarr", shard_size=5))
    assert res.failed == {} and res.computed == 12
    store = open_store(str(tmp_path / "real.zarr"))
    manifest, _ = scan("coco", str(root))
    assert store.keys == manifest.keys and "885" in store.keys
    _assert_matches_reference(store, _reference(spec, str(root), manifest, Preprocessor(mode="fixed", size=64)))


def test_worker_sigkill_mid_job(ray_local, tiny_models, synthetic_coco, tmp_path):
    spec = tiny_models["tinyrn"]
    clean = tmp_path / "clean.zarr"
    run_extract(_cfg(spec, synthetic_coco, clean))
    marker = tmp_path / "killed-once"
    res = run_extract(_cfg(spec, synthetic_coco, tmp_path / "f.zarr", batch_hook=sigkill_once(shard=2, marker=str(marker))))
    assert marker.exists() and res.worker_restarts >= 1
    assert _verify_ok(str(tmp_path / "f.zarr"))
    _assert_same_store(clean, tmp_path / "f.zarr")


def test_shard_that_raises_is_retried_then_fails_the_job(ray_local, tiny_models, synthetic_coco, tmp_path):
    cfg = _cfg(tiny_models["tinyrn"], synthetic_coco, tmp_path / "r.zarr", splits=("val2014",), workers=1, retries=1,
               batch_hook=raise_in(shard=1))
    with pytest.raises(JobFailedError, match="^shard 1 failed 2 times: injected fault in shard 1$"):
        run_extract(cfg)
    s = open_store(str(tmp_path / "r.zarr"), allow_partial=True)
    assert s.meta.status == "writing" and s.done_shards() == [0]  # the other shard is kept for a rerun


def test_driver_sigkill_then_resume(ray_local, tiny_models, tmp_path):
    from clipfeat.manifests.synthetic import make_coco

    root = str(tmp_path / "coco")
    make_coco(root, splits={"val2014": 160}, sizes=((800, 600),))  # big enough to be killed mid-way
    spec = tiny_models["tinyrn"]
    clean, out = tmp_path / "clean.zarr", tmp_path / "d.zarr"
    run_extract(_cfg(spec, root, clean, shard_size=8))
    cmd = [
        sys.executable, "-m", "clipfeat.pipeline.cli", "extract", "--dataset", "coco", "--root", root,
        "--model", spec.model, "--model-config", spec.model_config, "--checkpoint", spec.checkpoint,
        "--out", str(out), "--shard-size", "8", "--batch-size", "4", "--device", "cpu", "--workers", "1",
        "--threads", "1", "--no-progress",
    ]
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 120
        done_before: dict[int, str] = {}
        while time.time() < deadline and proc.poll() is None:
            if (out / "zarr.json").exists():
                try:
                    s = open_store(str(out), allow_partial=True)
                    done_before = {k: s.shard_status()[k].written_at for k in s.done_shards()}
                except (ClipfeatError, OSError, ValueError, KeyError):  # the store is being created; try again
                    done_before = {}
                if len(done_before) >= 3:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, f"job ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(1.0)  # let Ray notice its driver is gone and stop that job's actors
        s = open_store(str(out), allow_partial=True)
        done_before = {k: s.shard_status()[k].written_at for k in s.done_shards()}
        assert 3 <= len(done_before) < s.meta.shards.count
        res = run_extract(_cfg(spec, root, out, shard_size=8))  # the same job, resumed (stale lock taken over)
        assert res.shards_skipped >= len(done_before)
        assert res.computed == len(s) - 8 * res.shards_skipped  # 160 items in 20 shards of 8
        s = open_store(str(out))
        assert all(s.shard_status()[k].written_at == w for k, w in done_before.items())  # not recomputed
        _assert_same_store(clean, out)
    finally:
        try:  # hygiene: the killed driver's local Ray leaves agent processes in its session
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_broken_files_are_recorded(ray_local, tiny_models, synthetic_coco, tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(synthetic_coco, root)
    val = root / "val2014"
    names = sorted(os.listdir(val))
    (val / names[0]).write_bytes(b"")  # zero bytes
    data = (val / names[1]).read_bytes()
    (val / names[1]).write_bytes(data[: len(data) // 3])  # truncated
    (val / names[2]).write_text("<html>404 not found</html>")  # not an image
    from PIL import Image

    Image.new("1", (9000, 9000)).save(val / names[3], format="PNG")  # decompression bomb
    manifest, _ = scan("coco", str(root))
    manifest.save(tmp_path / "m.jsonl")
    os.remove(val / names[4])  # listed in the manifest, gone from disk
    broken = {manifest.keys.index(str(int(n.split("_")[-1].split(".")[0]))) for n in names[:5]}
    cfg = _cfg(tiny_models["tinyrn"], str(root), tmp_path / "b.zarr", dataset=None, manifest=str(tmp_path / "m.jsonl"))
    with pytest.raises(JobFailedError, match="5 images failed"):
        run_extract(cfg)
    assert open_store(str(tmp_path / "b.zarr"), allow_partial=True).meta.status == "writing"
    res = run_extract(dataclasses.replace(cfg, max_failures="5"))  # accept them: nothing recomputed, finalized
    assert res.computed == 0 and set(res.failed) == broken
    store = open_store(str(tmp_path / "b.zarr"))
    assert set(store.failed_rows()) == broken and _verify_ok(str(tmp_path / "b.zarr"))
    reasons = " | ".join(store.failed_rows().values())
    for word in ("0 bytes", "not an image", "decompression-bomb", "file not found"):
        assert word in reasons


def test_cli_extract_and_user_errors(ray_local, tiny_models, synthetic_coco, tmp_path):
    from click.testing import CliRunner

    from clipfeat.pipeline.cli import cli

    spec = tiny_models["tinyrn"]
    model = ["--model", spec.model, "--model-config", spec.model_config, "--checkpoint", spec.checkpoint]
    base = ["extract", "--dataset", "coco", "--root", synthetic_coco, "--splits", "val2014", "--no-progress", "--device", "cpu"]
    runner = CliRunner()
    out = str(tmp_path / "cli.zarr")
    r = runner.invoke(cli, [*base, *model, "--out", out, "--shard-size", "8"])
    assert r.exit_code == 0, r.output
    assert "12 items; computed 12 in 2 shards" in r.output
    cases = {
        "did you mean RN50x4": [*base, "--model", "RN50x5", "--pretrained", "openai", "--out", str(tmp_path / "a.zarr")],
        "does not exist": ["extract", "--dataset", "coco", "--root", str(tmp_path / "nope"), *model, "--out", str(tmp_path / "b.zarr")],
        "holds another configuration": [*base, *model, "--out", out, "--shard-size", "4"],
        "no usable GPU": [*base[:-2], "--device", "cuda", *model, "--out", str(tmp_path / "c.zarr")],
    }
    for message, args in cases.items():
        r = runner.invoke(cli, args)
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, (message, r.output)
    assert not (tmp_path / "c.zarr").exists()  # refused before anything was created
    r = runner.invoke(cli, ["extract", "--dataset", "imagenet", "--root", synthetic_coco, "--out", str(tmp_path / "d.zarr")])
    assert r.exit_code == 2 and "imagenet" in r.output


def test_worker_environment(ray_local, monkeypatch):
    """Local CPU workers run at normal priority under the jemalloc Ray ships (freed pages kept);
    GPU workers, clusters and CLIPFEAT_JEMALLOC=0 keep the system allocator."""
    from clipfeat.pipeline.job import jemalloc_library, worker_env

    lib = jemalloc_library()
    if lib is None:
        pytest.skip("this Ray has no bundled jemalloc")
    env = worker_env("cpu", local=True)
    assert env["LD_PRELOAD"].split()[-1] == lib and env["MALLOC_CONF"] == "dirty_decay_ms:-1,muzzy_decay_ms:-1"
    assert "LD_PRELOAD" not in worker_env("cuda", local=True)
    assert "LD_PRELOAD" not in worker_env("cpu", local=False)
    monkeypatch.setenv("CLIPFEAT_JEMALLOC", "0")
    assert worker_env("cpu", local=True) == {"RAY_worker_niceness": "0"}

    @ray_local.remote(num_cpus=1, runtime_env={"env_vars": env})
    def probe():
        with open("/proc/self/maps") as f:
            return os.nice(0), any(line.rstrip().endswith("libjemalloc.so") for line in f)

    assert ray_local.get(probe.remote()) == (0, True)


def test_decode_threads_yield_to_the_model():
    """A CPU worker's decode threads (with more than one model thread) run under SCHED_IDLE."""
    import threading

    from clipfeat.pipeline.worker import _background_thread

    if not hasattr(os, "SCHED_IDLE"):
        pytest.skip("no SCHED_IDLE on this platform")
    seen = []

    def body():
        _background_thread()
        seen.append(os.sched_getscheduler(threading.get_native_id()))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == [os.SCHED_IDLE]


class _FakeActors:
    """ShardQueue's `submit`: records (actor, shard) and returns a fresh reference."""

    def __init__(self):
        self.sent: list[tuple[int, int]] = []

    def __call__(self, a: int, k: int) -> object:
        self.sent.append((a, k))
        return object()


def _ref_of(queue: ShardQueue, a: int, k: int) -> object:
    return next(ref for ref, ak in queue.running.items() if ak == (a, k))


def test_shard_queue_fills_actors_and_retries_raised_shards_first():
    sent = _FakeActors()
    q = ShardQueue([0, 1, 2, 3, 4], 2, per_actor=2, retries=1, submit=sent)
    q.start()
    assert sent.sent == [(0, 0), (0, 1), (1, 2), (1, 3)] and q.waiting == [4]
    q.shard_raised(*q.take(_ref_of(q, 0, 1)), "ValueError: boom")  # back to the front, on the same actor
    assert sent.sent[-1] == (0, 1) and q.waiting == [4] and q.attempts[1] == 1
    q.take(_ref_of(q, 1, 2))
    q.shard_done(1)
    assert sent.sent[-1] == (1, 4) and q.waiting == []
    with pytest.raises(JobFailedError, match="^shard 1 failed 2 times: ValueError: boom$"):
        q.shard_raised(*q.take(_ref_of(q, 0, 1)), "ValueError: boom")


def test_shard_queue_moves_a_dead_actors_shards_to_the_survivors():
    sent = _FakeActors()
    q = ShardQueue([0, 1, 2, 3], 2, per_actor=2, retries=1, submit=sent)
    q.start()
    for k in (2, 3):  # actor 1 finishes its shards while nothing waits
        q.take(_ref_of(q, 1, k))
        q.shard_done(1)
    q.worker_died(*q.take(_ref_of(q, 0, 0)))  # Ray restarts actor 0: it gets shard 0 again
    assert q.alive == {0, 1} and sent.sent[-1] == (0, 0) and q.attempts[0] == 1
    q.worker_died(*q.take(_ref_of(q, 0, 1)))  # more deaths than retries: Ray gives up on it
    assert q.alive == {1} and q.waiting == [1]
    q.rebalance()
    assert sent.sent[-1] == (1, 1) and q.waiting == []
    with pytest.raises(JobFailedError, match=r"^shard 0 failed 2 times \(its worker died each time\); see the Ray logs$"):
        q.worker_died(*q.take(_ref_of(q, 0, 0)))


def test_shard_queue_fails_the_job_when_retries_run_out():
    q = ShardQueue([0, 1], 1, per_actor=2, retries=0, submit=_FakeActors())
    q.start()
    with pytest.raises(JobFailedError, match="^shard 0 failed 1 times"):
        q.worker_died(*q.take(_ref_of(q, 0, 0)))
    q = ShardQueue([0, 1], 1, per_actor=1, retries=1, submit=_FakeActors())
    q.start()
    q.worker_died(*q.take(_ref_of(q, 0, 0)))  # dies in shard 0, which then succeeds
    q.take(_ref_of(q, 0, 0))
    q.shard_done(0)
    with pytest.raises(JobFailedError, match="^every worker died more than --retries times"):
        q.worker_died(*q.take(_ref_of(q, 0, 1)))  # and dies again in shard 1
