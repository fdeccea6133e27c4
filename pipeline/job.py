"""The extraction job: manifest -> shards -> Ray worker actors -> a finished feature store.

    result = run_extract(ExtractConfig(dataset="coco", root="DATA/coco", out="coco.zarr",
                                       spec=EncoderSpec("RN50x4", pretrained="openai")))

The driver plans the store (its identity, layout and shards), creates or resumes it, and skips
shards that are already done. It then starts one `ShardWorker` actor per GPU (or `workers`
CPU actors with `threads` each), keeps `inflight` shards queued per actor (2 on CPU, 4 on GPU)
so none idles while the driver bookkeeps, and finalizes the store when every shard is done.
Workers write their own shards (whole Zarr shards, then the status record), so the driver
never moves feature bytes. `ShardQueue` is the scheduling (which shard runs where, retries)
without Ray in it; `_Progress` is the progress bar and the result's running totals.

Failures: a dead worker (SIGKILL, OOM, preemption) is restarted by Ray and its shards are
resubmitted; a shard whose worker raised is resubmitted too (`retries` times at most); a killed
driver leaves done shards done, and rerunning the same command resumes; an image that cannot be
decoded is recorded in its shard and counted against `max_failures`.
This is the only module that imports ray.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clipfeat.features.errors import ClipfeatError
from clipfeat.manifests.manifest import SKYBOX

from .encoder import EncoderError, EncoderSpec, describe_encoder, resolve_weights
from .images import Preprocessor
from .panorama import VFOV_DEG, VIEW_HEIGHT, VIEW_WIDTH, VIEWS
from .worker import BatchHook, ShardReport, ShardWorker, WorkerConfig, WorkItem

__all__ = ["ExtractConfig", "ExtractResult", "JobFailedError", "default_shard_size", "parse_max_failures", "plan_store", "run_extract"]

log = logging.getLogger("clipfeat.extract")


class JobFailedError(ClipfeatError):
    """The job ran but its result is not acceptable (too many bad images, a worker bug): exit 1."""

    exit_code = 1


@dataclass(frozen=True)
class ExtractConfig:
    out: str  # store URL
    spec: EncoderSpec
    dataset: str | None = None  # "coco" | "vg" | "r2r" (with root), or None with manifest
    root: str | None = None  # dataset root
    manifest: str | None = None  # saved manifest file (rows relative to root)
    splits: tuple[str, ...] | None = None
    scans: tuple[str, ...] | None = None  # r2r: these scans only
    connectivity: str | None = None  # r2r: the graphs' folder (default ROOT/connectivity)
    grid: bool | None = None  # store the grid too (default: yes for images, no for R2R's 36 views)
    preprocess: str = "fixed"  # "fixed" | "aspect" (a preset's mode overrides it)
    shorter_side: int = 600  # aspect mode
    max_side: int = 1000  # aspect mode
    preset: str | None = None  # a `pipeline.presets` name: its preprocessing replaces the three above
    shard_size: int | None = None  # items per shard; None: `default_shard_size` of the layout
    batch_size: int = 64
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    workers: int | None = None  # CPU actors (default 1); GPU: one per GPU (at most this many)
    threads: int | None = None  # threads per actor (default: CPUs / actors)
    decode: str = "auto"  # "threads" | "processes" | "cuda" (nvjpeg + GPU resize) | "auto" (processes on GPU, threads on CPU)
    inflight: int | None = None  # shards a worker holds at once (default: 2 on CPU, 4 on GPU)
    address: str | None = None  # Ray cluster ("auto", "ray://host:10001"); None: local Ray
    max_failures: str = "0"  # count ("10") or fraction ("0.001", "0.1%") of items
    retry_failed: bool = False  # recompute shards that recorded failed rows
    retries: int = 3  # resubmissions of a shard whose worker died or raised
    codec: str = "zstd"
    overwrite: bool = False
    progress: bool = True
    storage_options: dict | None = None
    batch_hook: BatchHook | None = None  # every worker runs it after each batch (a test seam: worker.BatchHook)


@dataclass
class ExtractResult:
    store: str
    items: int  # items in the store
    computed: int  # items computed by this run (0 when everything was already done)
    shards_done: int  # shards computed by this run
    shards_skipped: int  # already done before this run
    failed: dict[int, str] = field(default_factory=dict)  # global row -> reason (whole store)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds, summed over shards
    seconds: float = 0.0  # wall time of the compute phase (workers loaded -> last shard written)
    startup_s: float = 0.0  # starting workers and loading the model (Ray start excluded)
    worker_restarts: int = 0
    unit: str = "images"  # what an item is: "images", or "viewpoints" (R2R, 36 views each)

    @property
    def images_per_s(self) -> float:
        return self.computed / self.seconds if self.seconds else 0.0


def parse_max_failures(value: str, num_items: int) -> int:
    """'10' -> 10 images; '0.001' or '0.1%' -> that fraction of num_items (rounded down)."""
    v = str(value).strip()
    try:
        if v.endswith("%"):
            return int(float(v[:-1]) / 100 * num_items)
        if "." in v:
            f = float(v)
            if not 0 <= f <= 1:
                raise ValueError
            return int(f * num_items)
        n = int(v)
        if n < 0:
            raise ValueError
        return n
    except ValueError:
        raise ClipfeatError(f"--max-failures {value!r}: give a count (10), a fraction (0.001) or a percentage (0.1%)") from None


def _manifest(cfg: ExtractConfig):
    from clipfeat.manifests import Manifest, ManifestError, scan

    if cfg.manifest:
        if not cfg.root:
            raise ClipfeatError("--manifest needs --root: manifest paths are relative to the dataset root")
        if not os.path.isdir(cfg.root):
            raise ClipfeatError(f"dataset root {cfg.root} does not exist")
        m = Manifest.load(cfg.manifest)
        if cfg.dataset and cfg.dataset != m.dataset:
            raise ClipfeatError(f"{cfg.manifest} is a {m.dataset} manifest but --dataset is {cfg.dataset}")
        return m
    if not cfg.dataset or not cfg.root:
        raise ClipfeatError("pass --dataset and --root (or --manifest and --root)")
    try:
        m, warnings = scan(cfg.dataset, cfg.root, splits=list(cfg.splits) if cfg.splits else None,
                           scans=list(cfg.scans) if cfg.scans else None, connectivity=cfg.connectivity)
    except ManifestError as e:
        raise ClipfeatError(str(e)) from None
    for w in warnings:
        log.warning(w)
    return m


def plan_store(cfg: ExtractConfig, manifest, weights_sha256: str):
    """The StoreMeta this job produces (identity, layout, shards) and its Preprocessor."""
    from clipfeat.features.schema import Layout, PreprocessInfo

    if cfg.preset:
        return _plan_preset(cfg, manifest, weights_sha256)
    if cfg.preprocess not in ("fixed", "aspect"):
        raise ClipfeatError(f"unknown --preprocess {cfg.preprocess!r}; choose fixed or aspect")
    aspect = cfg.preprocess == "aspect"
    panorama = manifest.layout == SKYBOX
    if panorama and aspect:
        raise ClipfeatError("R2R views are stored as fixed-size grids (36 per viewpoint): use --preprocess fixed")
    if panorama and cfg.decode == "cuda":
        raise ClipfeatError("--decode cuda is for single images; R2R skyboxes are rendered on the workers' device anyway")
    keep_grid = cfg.grid if cfg.grid is not None else not panorama
    if aspect and cfg.spec.image_size:
        raise ClipfeatError("--image-size applies to --preprocess fixed; aspect mode uses --shorter-side/--max-side")
    shape = describe_encoder(cfg.spec, probe_hw=(cfg.shorter_side, cfg.max_side) if aspect else None)
    if aspect and shape.kind != "resnet":
        raise ClipfeatError(f"--preprocess aspect needs a CLIP ResNet (variable-size layer4 grids); {cfg.spec.model} is a ViT: use fixed")
    size = cfg.spec.image_size or shape.image_size
    pre = Preprocessor(
        mode=cfg.preprocess, size=size, shorter_side=cfg.shorter_side, max_side=cfg.max_side,
        interpolation=shape.interpolation, resize_mode=shape.resize_mode,
    )
    # GPU resizing rounds differently from PIL's: say so, which also gives another store_id.
    # Panorama views are resized by torchvision on every device (they are tensors already).
    interp = shape.interpolation
    if cfg.decode == "cuda":
        interp += "/torchvision-gpu"
    elif panorama:
        interp += "/torchvision"
    grid_channels = shape.grid_channels if keep_grid else None
    if aspect:
        layout = Layout(pooled_dim=shape.pooled_dim, grid_channels=grid_channels,
                        grid_max_cells=shape.probe_grid[0] * shape.probe_grid[1] if keep_grid else None)
        info = PreprocessInfo(mode="aspect", shorter_side=cfg.shorter_side, max_side=cfg.max_side,
                              interpolation=interp, mean=shape.mean, std=shape.std)
    else:
        layout = Layout(pooled_dim=shape.pooled_dim, grid_channels=grid_channels, grid_hw=shape.probe_grid if keep_grid else None,
                        views=VIEWS if panorama else None)
        info = PreprocessInfo(mode="fixed", size=size, interpolation=interp, mean=shape.mean, std=shape.std,
                              render=_render_info(manifest) if panorama else None)
    return _store_meta(cfg, manifest, weights_sha256, info, layout), pre


def _plan_preset(cfg: ExtractConfig, manifest, weights_sha256: str):
    """plan_store for `--preset`: every preprocessing value from the preset file; a fixed grid
    (the preset's input size is the same for every image)."""
    from clipfeat.features.schema import Layout, PreprocessInfo

    from .presets import get_preset

    preset = get_preset(cfg.preset)
    p = preset.preprocess
    if p["mode"] != "squash":
        raise ClipfeatError(f"preset {preset.name}: mode {p['mode']!r} is not supported by this clipfeat (squash)")
    if manifest.layout == SKYBOX:
        raise ClipfeatError(f"preset {preset.name} is for single images; R2R panoramas use --preprocess fixed")
    if cfg.spec.image_size:
        raise ClipfeatError(f"--image-size does not apply with --preset {preset.name} (it fixes the input at {p['height']}x{p['width']})")
    shape = describe_encoder(cfg.spec, probe_hw=(p["height"], p["width"]))
    if shape.kind != "resnet":
        raise ClipfeatError(f"preset {preset.name} takes a CLIP ResNet's layer4 map; {cfg.spec.model} is a ViT")
    pre = Preprocessor(mode="squash", shorter_side=p["shorter_side"], max_side=p["max_side"], height=p["height"],
                       width=p["width"], interpolation=p["interpolation"], mean=p["mean"], std=p["std"])
    interp = p["interpolation"] + ("/torchvision-gpu" if cfg.decode == "cuda" else "")
    keep_grid = cfg.grid if cfg.grid is not None else preset.grid
    layout = Layout(pooled_dim=shape.pooled_dim, grid_channels=shape.grid_channels if keep_grid else None,
                    grid_hw=shape.probe_grid if keep_grid else None)
    info = PreprocessInfo(mode="squash", shorter_side=p["shorter_side"], max_side=p["max_side"], height=p["height"],
                          width=p["width"], interpolation=interp, mean=p["mean"], std=p["std"], preset=preset.name)
    return _store_meta(cfg, manifest, weights_sha256, info, layout), pre


def _store_meta(cfg: ExtractConfig, manifest, weights_sha256: str, info, layout):
    import open_clip
    import torch

    from clipfeat.features.schema import CreatedBy, DatasetInfo, EncoderInfo, StoreMeta

    return StoreMeta.build(
        dataset=DatasetInfo(name=manifest.dataset, manifest_sha256=manifest.sha256, num_items=len(manifest), splits=manifest.splits()),
        encoder=EncoderInfo(
            model=cfg.spec.model, pretrained=cfg.spec.pretrained,
            checkpoint=os.path.abspath(cfg.spec.checkpoint) if cfg.spec.checkpoint else None,
            weights_sha256=weights_sha256, open_clip_version=open_clip.__version__, torch_version=torch.__version__,
        ),
        preprocess=info,
        layout=layout,
        shard_size=cfg.shard_size or default_shard_size(layout),
        created_by=CreatedBy(command=" ".join(["clipfeat", *sys.argv[1:]]) if "clipfeat" in sys.argv[0] else ""),
    )


def default_shard_size(layout) -> int:
    """256 items, halved until a shard's arrays fit in 512 MiB: a worker holds a few shards in
    memory, and R2R viewpoints with grids are 36 images each (RN50x4: 15 MiB a viewpoint -> 32)."""
    item = 2 * sum(math.prod(layout.item_shape(name)) for name in layout.arrays())  # float16 bytes
    size = 256
    while size > 1 and size * item > 512 << 20:
        size //= 2
    return size


def _render_info(manifest) -> str:
    """How a panorama store's views are made: rendered here from skyboxes, or the user's own."""
    layouts = {row.fields.get("layout", "skybox") for row in manifest.rows}
    if len(layouts) != 1:
        raise ClipfeatError("the manifest mixes skybox and pre-rendered viewpoints; extract them into separate stores")
    if layouts == {"views"}:
        return "prerendered"
    return f"matterport-skybox bilinear {VIEW_WIDTH}x{VIEW_HEIGHT} vfov{VFOV_DEG:g}"


_RAY_HINT = ("check --address (ray://HEAD:10001 for Ray Client, HEAD:6379 or auto on a cluster node; "
             "start one with `ray start --head`), or drop --address to run on a local Ray")


def check_address(address: str | None) -> None:
    """A one-line error at once when nothing listens at a fixed `--address` (Ray itself waits
    30 s or more); run before the store is created so a typo leaves nothing behind."""
    import socket
    import urllib.parse

    if not address or address in ("auto", "local"):
        return
    client = address.startswith("ray://")
    parts = urllib.parse.urlsplit(address if client else f"//{address}")
    try:
        host, port = parts.hostname, parts.port or (10001 if client else None)
    except ValueError:  # a port that is not a number
        host = port = None
    if not host or not port:
        raise ClipfeatError(f"--address {address} is not HOST:PORT or ray://HOST[:PORT]; {_RAY_HINT}")
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as e:
        why = {ConnectionRefusedError: "connection refused", TimeoutError: "no answer in 5 s",
               socket.gaierror: f"unknown host {host}"}.get(type(e), e.strerror or type(e).__name__)
        raise ClipfeatError(f"cannot reach the Ray cluster at {address} ({why}); {_RAY_HINT}") from None


def _start_ray(address: str | None):
    """The driver's Ray: a local instance, or the cluster at `address` (`run_extract` has
    already probed it with `check_address`)."""
    import ray

    if ray.is_initialized():
        return ray
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False)
    except ConnectionError as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise ClipfeatError(f"cannot join the Ray cluster at {address} ({first}); {_RAY_HINT}") from None
    return ray


def worker_env(device: str, *, local: bool) -> dict[str, str]:
    """Environment variables of the worker processes (set when Ray spawns them).

    - Ray starts workers at nice 15, under every ordinary process on the node; a worker owns
      the CPUs it reserved, so its model threads run at normal priority.
    - CPU workers on a local Ray get jemalloc (the copy Ray ships) with freed pages kept: a
      CPU forward allocates and frees ~100 MB per activation, which glibc hands back to the
      kernel and page-faults in again, zero-filled, every batch (20-35 % of the worker's CPU
      time in the kernel; RN50 on 2 cores: 18 -> 29 images/s). The worker's resident memory
      stays at its peak instead (RN50, batch 32: 1.9 GB against 1.3 GB). Not on clusters,
      whose nodes may keep Ray elsewhere; CLIPFEAT_JEMALLOC=0 turns it off.
    """
    env = {"RAY_worker_niceness": "0"}
    if device == "cpu" and local and os.environ.get("CLIPFEAT_JEMALLOC", "1") != "0":
        lib = jemalloc_library()
        if lib:
            env["LD_PRELOAD"] = " ".join(filter(None, [os.environ.get("LD_PRELOAD"), lib]))
            env["MALLOC_CONF"] = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
    return env


def jemalloc_library() -> str | None:
    """The jemalloc shared library bundled with Ray, if this Ray has one (Linux wheels do)."""
    import importlib.util

    spec = importlib.util.find_spec("ray")
    if spec is None or not spec.submodule_search_locations or not sys.platform.startswith("linux"):
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "core", "libjemalloc.so")
    return path if os.path.isfile(path) else None


def _placement(cfg: ExtractConfig, ray) -> tuple[str, int, int]:
    """(device, actors, threads per actor) from the cluster's nodes. An actor's threads are CPUs
    it reserves on one node, so they must fit on the nodes as they are, not on the cluster's
    total: otherwise Ray waits forever for a node that big."""
    nodes = [(int(n["Resources"].get("CPU", 0)), int(n["Resources"].get("GPU", 0))) for n in ray.nodes() if n.get("Alive")]
    gpus, cpus = sum(g for _, g in nodes), sum(c for c, _ in nodes)
    device = cfg.device
    if device == "auto":
        device = "cuda" if gpus else "cpu"
    if device == "cuda":
        if not gpus:
            raise EncoderError("--device cuda was asked but the Ray cluster has no GPU; use --device cpu")
        actors = min(gpus, cfg.workers or gpus)
        # every GPU's actor may land on any GPU node: give each the smallest CPUs-per-GPU share
        threads = cfg.threads or max(1, min(c // g for c, g in nodes if g))
    elif device == "cpu":
        actors = cfg.workers or 1
        if actors > max(1, cpus):
            raise ClipfeatError(f"--workers {actors} exceeds the cluster's {cpus} CPUs")
        threads = cfg.threads or cpu_threads(actors, [c for c, _ in nodes])
    else:
        raise ClipfeatError(f"unknown --device {device!r}; choose auto, cpu or cuda")
    biggest = max((c for c, g in nodes if g or device == "cpu"), default=0)
    if cfg.threads and cfg.threads > max(1, biggest):
        raise ClipfeatError(f"--threads {cfg.threads} is more than any node has ({biggest} CPUs); lower --threads")
    return device, actors, threads


def cpu_threads(actors: int, node_cpus: list[int]) -> int:
    """The most threads per CPU actor such that `actors` of them fit on nodes with these CPUs."""
    t = max(1, sum(node_cpus) // actors)
    while t > 1 and sum(c // t for c in node_cpus) < actors:
        t -= 1
    return t


def run_extract(cfg: ExtractConfig) -> ExtractResult:
    from clipfeat.features.writer import create_store

    if cfg.decode == "cuda" and cfg.device != "cuda":
        raise ClipfeatError("--decode cuda decodes on the workers' GPUs: pass --device cuda too")
    if cfg.device == "cuda" and not cfg.address:
        import torch

        if not torch.cuda.is_available():  # before anything is created on disk
            raise EncoderError("--device cuda was asked but this machine has no usable GPU; use --device cpu")
    check_address(cfg.address)
    if cfg.device == "cuda" and cfg.address:  # the cluster's GPUs, before anything is created on disk
        _placement(cfg, _start_ray(cfg.address))
    manifest = _manifest(cfg)
    weights, weights_sha = resolve_weights(cfg.spec)
    meta, pre = plan_store(cfg, manifest, weights_sha)
    limit = parse_max_failures(cfg.max_failures, len(manifest))
    writer = create_store(cfg.out, meta=meta, keys=manifest.keys, codec=cfg.codec, overwrite=cfg.overwrite,
                          storage_options=cfg.storage_options)
    try:
        statuses = writer.shard_statuses()
        todo = [k for k, r in enumerate(statuses) if r is None or not r.done]
        if cfg.retry_failed:
            todo += [k for k, r in enumerate(statuses) if r is not None and r.done and r.failed]
        result = ExtractResult(store=cfg.out, items=len(manifest), computed=0, shards_done=0,
                               unit="viewpoints" if meta.layout.views else "images",
                               shards_skipped=meta.shards.count - len(todo))
        if todo:
            _run_shards(cfg, writer, manifest, todo, weights, pre, result)
        failed = {}
        for r in writer.shard_statuses():  # one read of every record, after this run's writes
            failed.update(r.failed)
        result.failed = failed
        if len(failed) > limit:
            listing = "; ".join(f"{manifest.rows[r].path}: {why}" for r, why in sorted(failed.items())[:20])
            more = f" (and {len(failed) - 20} more)" if len(failed) > 20 else ""
            raise JobFailedError(
                f"{len(failed)} images failed, more than --max-failures allows ({limit}): {listing}{more}. "
                "Fix them and rerun with --retry-failed, or raise --max-failures to accept them; the store is kept, unfinalized"
            )
        if writer.meta.status != "complete":
            writer.finalize()
        return result
    finally:
        writer.close()


def _run_shards(cfg: ExtractConfig, writer, manifest, todo: list[int], weights: str, pre: Preprocessor, result: ExtractResult) -> None:
    """Compute shards `todo` on Ray worker actors, which write them; their reports go into `result`."""
    ray = _start_ray(cfg.address)
    device, n_actors, threads = _placement(cfg, ray)
    n_actors = min(n_actors, len(todo))
    wcfg = WorkerConfig(
        store=cfg.out, root=os.path.abspath(cfg.root), spec=cfg.spec, preprocess=pre, weights=weights, device=device,
        threads=threads, batch_size=cfg.batch_size, storage_options=cfg.storage_options,
        decode_processes={"auto": None, "threads": False, "processes": True, "cuda": None}[cfg.decode],
        gpu_jpeg=cfg.decode == "cuda", batch_hook=cfg.batch_hook,
    )
    # Several shards per worker: while one runs the model, the others decode or write, so
    # neither the GPU nor the CPUs wait on the other.
    per_actor = cfg.inflight or (4 if device == "cuda" else 2)
    actor_cls = ray.remote(ShardWorker).options(
        num_cpus=threads, num_gpus=1 if device == "cuda" else 0,
        max_restarts=cfg.retries, max_task_retries=0,  # we resubmit ourselves, counting attempts
        max_concurrency=per_actor,  # later shards decode and write while one runs the model (worker.py)
        runtime_env={"env_vars": worker_env(device, local=not cfg.address)},
    )
    actors = [actor_cls.remote(wcfg) for _ in range(n_actors)]
    work = _work_items(manifest, writer, todo)
    queue = ShardQueue(todo, n_actors, per_actor=per_actor, retries=cfg.retries,
                       submit=lambda a, k: actors[a].run.remote(k, work[k]))
    progress = None
    t_start = t0 = time.perf_counter()
    try:
        ray.get([a.pid.remote() for a in actors])  # every worker has its model loaded
        t0 = time.perf_counter()
        result.startup_s = t0 - t_start
        progress = _Progress(result, items=sum(len(work[k]) for k in todo), shards=len(todo),
                             desc=f"extract {n_actors}x{device}", enabled=cfg.progress)
        queue.start()
        while queue.running:
            ready, _ = ray.wait(list(queue.running), num_returns=1, timeout=1.0)
            for ref in ready:
                _settle(ray, ref, queue, progress)
            queue.rebalance()
    finally:
        result.seconds = time.perf_counter() - t0
        if progress is not None:
            progress.close()
        for actor in actors:
            ray.kill(actor, no_restart=True)


def _work_items(manifest, writer, todo: list[int]) -> dict[int, list[WorkItem]]:
    """Shard -> its rows as the workers take them. Panorama workers also get each row's fields:
    the viewpoint, its pose, and whether its images are skybox faces or pre-rendered views."""
    panorama = manifest.layout == SKYBOX
    work = {}
    for k in todo:
        rows = ((r, manifest.rows[r]) for r in writer.shard_rows(k))
        work[k] = [WorkItem(r, row.key, row.path, row.fields if panorama else None) for r, row in rows]
    return work


def _settle(ray, ref, queue: ShardQueue, progress: _Progress) -> None:
    """Hand the outcome of one finished `run` call to the queue and the progress display."""
    from ray.exceptions import RayActorError, RayTaskError

    a, k = queue.take(ref)
    try:
        rep: ShardReport = ray.get(ref)
    except RayActorError as e:  # the process died (SIGKILL, OOM, node lost)
        progress.worker_died(a, k, e)
        queue.worker_died(a, k)
    except RayTaskError as e:  # `run` raised
        cause = str(e.cause if hasattr(e, "cause") else e).splitlines()[-1]
        queue.shard_raised(a, k, cause)
        progress.note(f"shard {k} raised {cause}; retrying")
    else:
        progress.shard_done(k, rep)
        queue.shard_done(a)


class ShardQueue:
    """The driver's scheduling, without Ray: which shards wait, which run on which actor, how
    often each shard failed, and which actors Ray still restarts.

    `submit(actor, shard)` starts a shard on an actor and returns what the driver waits on (a
    Ray ObjectRef); the driver reports each outcome to `shard_done`, `worker_died` or
    `shard_raised`, then calls `rebalance`. Every actor holds up to `per_actor` shards. A
    failed shard goes back to the front of the queue, `retries` times at most: one more failure
    fails the job. An actor whose deaths exceed `retries` (Ray's `max_restarts`) gets no more
    shards; once no actor is left, the job fails.
    """

    def __init__(self, todo: list[int], actors: int, *, per_actor: int, retries: int,
                 submit: Callable[[int, int], Any]) -> None:
        self.waiting = list(todo)  # not submitted yet, next first
        self.running: dict[Any, tuple[int, int]] = {}  # what `submit` returned -> (actor, shard)
        self.attempts = dict.fromkeys(todo, 0)  # shard -> failed attempts
        # One per shard an actor held when it died (each reports the death): a death with
        # several shards in flight counts several times.
        self.deaths = [0] * actors
        self.alive = set(range(actors))  # actors that get shards
        self.per_actor, self.retries = per_actor, retries
        self._submit = submit

    def start(self) -> None:
        """Fill every actor's slots, actor by actor."""
        for a in sorted(self.alive):
            for _ in range(min(self.per_actor, len(self.waiting))):
                self._send(a)

    def take(self, ref: Any) -> tuple[int, int]:
        """(actor, shard) of a finished submission, which no longer counts as running."""
        return self.running.pop(ref)

    def shard_done(self, a: int) -> None:
        self._refill(a)

    def worker_died(self, a: int, k: int) -> None:
        self.deaths[a] += 1
        self._retry(k, " (its worker died each time); see the Ray logs")
        if self.deaths[a] > self.retries:  # Ray stops restarting it after max_restarts
            self.alive.discard(a)
        if not self.alive:
            raise JobFailedError("every worker died more than --retries times; see the Ray logs") from None
        self._refill(a)

    def shard_raised(self, a: int, k: int, cause: str) -> None:
        self._retry(k, f": {cause}")
        self._refill(a)

    def rebalance(self) -> None:
        """Shards left queued while their actor was declared dead go to the least busy survivors."""
        while self.waiting and len(self.running) < self.per_actor * len(self.alive):
            self._send(min(self.alive, key=self._load))

    def _retry(self, k: int, why: str) -> None:
        self.attempts[k] += 1
        if self.attempts[k] > self.retries:
            raise JobFailedError(f"shard {k} failed {self.attempts[k]} times{why}") from None
        self.waiting.insert(0, k)

    def _refill(self, a: int) -> None:
        """The actor that just finished a shard takes the next one, if it still gets shards."""
        if a in self.alive and self.waiting:
            self._send(a)

    def _send(self, a: int) -> None:
        k = self.waiting.pop(0)
        self.running[self._submit(a, k)] = (a, k)

    def _load(self, a: int) -> int:
        return sum(1 for x, _ in self.running.values() if x == a)


class _Progress:
    """The job's progress bar, and the running totals of the shards' reports in `result`."""

    def __init__(self, result: ExtractResult, *, items: int, shards: int, desc: str, enabled: bool) -> None:
        from tqdm import tqdm

        self.result, self.shards = result, shards
        self.failed = 0  # rows that failed in this run's shards
        self.bar = tqdm(total=items, unit="vp" if result.unit == "viewpoints" else "img", desc=desc,
                        disable=not enabled, dynamic_ncols=True, smoothing=0.1)

    def shard_done(self, k: int, rep: ShardReport) -> None:
        res = self.result
        res.shards_done += 1
        res.computed += rep.items
        self.failed += len(rep.failed)
        for stage, s in rep.timings.items():
            res.timings[stage] = res.timings.get(stage, 0.0) + s
        log.info("shard %d: %d items, %d failed on %s; %s", k, rep.items, len(rep.failed), rep.worker,
                 " ".join(f"{s}={v:.2f}s" for s, v in rep.timings.items()))
        self.bar.update(rep.items)
        self.bar.set_postfix(failed=self.failed, shards=f"{res.shards_done}/{self.shards}", refresh=False)

    def worker_died(self, a: int, k: int, error: Exception) -> None:
        self.result.worker_restarts += 1
        self.note(f"worker {a} died during shard {k} ({type(error).__name__}); recomputing the shard")

    def note(self, message: str) -> None:
        self.bar.write(message)

    def close(self) -> None:
        self.bar.close()


def summarize(result: ExtractResult) -> str:
    """A one-paragraph human summary of the run (the CLI prints it)."""
    stages = ", ".join(f"{s} {v:.1f}s" for s, v in result.timings.items() if s != "total")
    parts = [
        f"{result.store}: {result.items} items; computed {result.computed} in {result.shards_done} shards "
        f"({result.shards_skipped} already done) at {result.images_per_s:.1f} {result.unit}/s "
        f"(+{result.startup_s:.1f}s starting workers)",
    ]
    if stages:
        parts.append(f"stage totals: {stages}")
    if result.failed:
        parts.append(f"{len(result.failed)} failed rows recorded (clipfeat info shows them)")
    if result.worker_restarts:
        parts.append(f"{result.worker_restarts} worker deaths recovered")
    return "\n".join(parts)

