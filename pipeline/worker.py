"""The work of one extraction worker, with no distribution in it: shard in, shard written.

    worker = ShardWorker(config)          # loads the model once
    report = worker.run(k, items)         # items: [WorkItem(global row, key, relative path), ...]
                                          # panoramas: WorkItem(..., fields=the manifest row's fields)

Within a shard, a thread pool reads, decodes and resizes images ahead of the model (a window
of two batches), so CPU decoding overlaps the forward pass; the calling thread batches the
ready images, runs the encoder, and fills the shard's arrays, which are written whole.
`run` may be called from two threads at once (the Ray actor is threaded) so the next shard
decodes while this one runs its last batches and writes; a lock keeps one forward at a time.
`WorkerConfig.batch_hook`, None by default, runs after each batch: the seam where tests inject
faults (tests/pipeline/faults.py kills the worker there).
In `aspect` mode images are batched by identical input size (padding would change the
convolutions' outputs at the borders), so a batch never mixes sizes.

Panorama stores (layout.views = 36, R2R) have viewpoints as items: the decode pool reads a
viewpoint's six skybox faces (or its 36 pre-rendered views); the forward thread moves them to
the model's device, renders the simulator's 36 views there (`panorama.render_views`, a batched
`grid_sample`), resizes all views in one torchvision call (`images.tensor_preprocess`) and runs
the encoder on viewpoints x 36 views. `batch_size` counts views, rounded down to whole viewpoints.
The job module (`job.py`) wraps this class in a Ray actor; tests and benchmarks call it
directly.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .encoder import EncoderSpec, load_encoder
from .images import ImageError, Preprocessor

__all__ = ["BatchHook", "WorkerConfig", "WorkItem", "ShardReport", "ShardWorker"]

# Called as hook(k) in the worker's process after each batch of shard k is encoded, before the
# shard is written: a test seam (fault injection). Sent to the worker, so it must be picklable.
BatchHook = Callable[[int], None]


@dataclass(frozen=True)
class WorkerConfig:
    store: str  # store URL (created by the driver)
    root: str  # dataset root the manifest's paths are relative to
    spec: EncoderSpec
    preprocess: Preprocessor
    weights: str | None = None  # weights file resolved by the driver; None: resolve from spec here
    device: str = "cpu"
    threads: int = 1  # torch intra-op threads and decode threads
    batch_size: int = 64
    storage_options: dict | None = None
    decode_processes: bool | None = None  # decode in processes (no GIL); default: on GPU workers
    gpu_jpeg: bool = False  # decode JPEGs with nvjpeg and resize on the GPU (CUDA workers)
    batch_hook: BatchHook | None = None  # run after each batch (see BatchHook); None: nothing


@dataclass(frozen=True)
class WorkItem:
    """One manifest row as the driver sends it to a worker (a shard is a list of them)."""

    row: int  # global row: the store row its features go to
    key: str  # the row's key, written to the store's `keys`
    path: str  # relative to the dataset root: an image file, or a viewpoint's folder (panoramas)
    fields: dict[str, Any] | None = None  # panoramas: the manifest row's fields (viewpoint, layout, pose)


@dataclass
class ShardReport:
    shard: int
    items: int
    failed: dict[int, str] = field(default_factory=dict)  # global row -> reason
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    worker: str = ""  # host:pid


@dataclass
class _Item:
    row: int
    # uint8 [H, W, 3]: resized (CPU path) or full size (gpu_jpeg fallback); panoramas: skybox
    # faces [6, S, S, 3] or pre-rendered views [36, h, w, 3], as decoded
    pixels: np.ndarray | None = None
    jpeg: bytes | None = None  # gpu_jpeg: the file, for nvjpeg
    pose: np.ndarray | None = None  # skybox panoramas: camera-to-world [4, 4]
    key: tuple = (0, 0)  # items are batched by it: model input (H, W); panoramas ("skybox", S) or ("views", h, w)
    error: str | None = None
    read_s: float = 0.0
    decode_s: float = 0.0  # decode + resize, thread seconds


class ShardWorker:
    def __init__(self, config: WorkerConfig) -> None:
        import torch

        from clipfeat.features.writer import open_writer

        self.cfg = config
        if config.device == "cpu":
            torch.set_num_threads(config.threads)
        pre = config.preprocess
        self.encoder = load_encoder(config.spec, device=config.device, weights=config.weights, mean=pre.mean, std=pre.std)
        # Fixed-size inputs on a GPU: replay the forward from CUDA graphs (one per shape).
        self.encoder.graphs = config.device.startswith("cuda") and pre.mode in ("fixed", "squash")
        self.writer = open_writer(config.store, lock=False, storage_options=config.storage_options)
        self.layout = self.writer.meta.layout
        self.views = self.layout.views  # None: one image per item; 36: an R2R viewpoint per item
        # items per forward: batch_size images, or as many whole viewpoints as fit in it
        self.items_per_batch = max(1, config.batch_size // self.views) if self.views else config.batch_size
        self.encoder.graph_batch = self.items_per_batch * (self.views or 1)
        procs = config.decode_processes if config.decode_processes is not None else config.device.startswith("cuda")
        if procs:
            # A GPU outruns what one process can decode: PIL releases the GIL while decoding,
            # but the rest (file reads, array copies) serialises 16 threads to ~4 busy cores.
            # forkserver: never fork a process that holds a CUDA context.
            import multiprocessing

            self.pool = ProcessPoolExecutor(max_workers=config.threads, mp_context=multiprocessing.get_context("forkserver"))
        else:
            # On a CPU worker the model's OpenMP threads use every core this worker has. With
            # several, decode threads run in the background, filling only the gaps: a preempted
            # OpenMP thread stalls its whole parallel region at the barrier. A single-threaded
            # forward loses only the time taken from it, so there decode shares the core
            # normally; in the background it would run only while the model waits for it.
            self.pool = ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="decode",
                                           initializer=_background_thread if config.threads > 1 else None)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._forward_lock = threading.Lock()
        self._warm_up()

    def _warm_up(self) -> None:
        """One forward on a blank batch: the first call pays for allocator growth, oneDNN
        primitive creation and cuDNN autotuning, which must not land on the first shard."""
        pre = self.cfg.preprocess
        h, w = pre.output_size(4, 3)  # fixed, squash: the input size; aspect: a 4:3 image's
        blank = np.zeros((min(self.cfg.batch_size, 64), h, w, 3), np.uint8)
        self.encoder.encode(self.encoder.normalize(blank))
        if isinstance(self.pool, ProcessPoolExecutor):  # start the decode processes now, not in shard 1
            list(self.pool.map(_pid, range(4 * self.cfg.threads)))

    def pid(self) -> int:
        return os.getpid()

    def _prepare(self, work: WorkItem) -> Future:
        if self.views:
            return self.pool.submit(prepare_viewpoint, self.cfg.root, work.row, work.path, work.fields or {})
        return self.pool.submit(prepare_item, self.cfg.root, work.row, work.path, self.cfg.preprocess, self.cfg.gpu_jpeg)

    def _panorama_pixels(self, batch: list[_Item]):
        """Viewpoints -> uint8 [B * 36, H, W, 3] model input on the device: skybox faces
        rendered into the simulator's 36 views (or the pre-rendered views), then resized."""
        import torch

        from .images import tensor_preprocess
        from .panorama import render_views

        x = torch.from_numpy(np.stack([it.pixels for it in batch])).to(self.encoder.device)  # [B, 6|36, h, w, 3]
        x = x.permute(0, 1, 4, 2, 3)  # -> [B, 6|36, 3, h, w]
        if batch[0].pose is not None:  # faces (the key keeps faces and views apart)
            x = render_views(x, [it.pose for it in batch])  # [B, 36, 3, 480, 640]
        return tensor_preprocess(x.flatten(0, 1), self.cfg.preprocess)  # [B * 36, H, W, 3]

    def _gpu_pixels(self, batch: list[_Item], failed: dict[int, str]):
        """gpu_jpeg: decode the batch's JPEGs with nvjpeg, resize on the GPU -> uint8
        [B, H, W, 3] on the device, and the items it holds (a file nvjpeg rejects is
        decoded by PIL instead, or recorded as failed)."""
        import torch
        import torchvision

        from .images import decode_image, gpu_preprocess

        dev = self.encoder.device
        jpegs = [it for it in batch if it.jpeg is not None]
        datas = [torch.frombuffer(bytearray(it.jpeg), dtype=torch.uint8) for it in jpegs]
        try:
            decoded = torchvision.io.decode_jpeg(datas, device=dev, mode=torchvision.io.ImageReadMode.RGB) if datas else []
        except RuntimeError:  # one bad file fails the whole call: go one by one
            decoded = []
            for d in datas:
                try:
                    decoded.append(torchvision.io.decode_jpeg(d, device=dev, mode=torchvision.io.ImageReadMode.RGB))
                except RuntimeError:
                    decoded.append(None)
        images, kept = [], []
        by_item = dict(zip((id(it) for it in jpegs), decoded))
        for it in batch:
            img = by_item.get(id(it))
            if it.jpeg is not None and img is None:
                try:
                    it.pixels = np.array(decode_image(it.jpeg), dtype=np.uint8)
                except ImageError as e:
                    failed[it.row] = str(e)
                    continue
            if img is None:
                img = torch.from_numpy(it.pixels).to(dev).permute(2, 0, 1)  # HWC -> CHW
            images.append(img)
            kept.append(it)
        return (gpu_preprocess(images, self.cfg.preprocess) if images else None), kept

    # -- per shard ---------------------------------------------------------------------------
    def run(self, k: int, items: Sequence[WorkItem]) -> ShardReport:
        """Extract shard `k` (its rows, in order) and write it whole."""
        t_start = time.perf_counter()
        lay, bs = self.layout, self.items_per_batch
        start = items[0].row
        n = len(items)
        pooled = np.zeros((n,) + lay.item_shape("pooled"), np.float16)  # [n, (V,) D]
        grid = np.zeros((n,) + lay.item_shape("grid"), np.float16) if lay.has_grid else None  # [n, (V,) cells, C]
        grid_hw = np.zeros((n, 2), np.int32) if lay.variable_grid else None
        report = ShardReport(shard=k, items=n, worker=self.name)
        t = {"read": 0.0, "decode": 0.0, "forward": 0.0, "wait": 0.0}
        if self.views:
            t["render"] = 0.0  # panoramas: faces -> views -> model input, on the device

        def forward(batch: list[_Item]) -> None:
            if not self.cfg.gpu_jpeg and not self.views:
                pixels = np.stack([it.pixels for it in batch])  # uint8 [B, H, W, 3]
            with self._forward_lock:
                t0 = time.perf_counter()
                if self.cfg.gpu_jpeg:
                    pixels, batch = self._gpu_pixels(batch, report.failed)
                    if not batch:
                        return
                elif self.views:
                    pixels = self._panorama_pixels(batch)
                    t1 = time.perf_counter()
                    t["render"] += t1 - t0
                    t0 = t1
                p, g = self.encoder.encode(self.encoder.normalize(pixels))  # [B(*V), D], [B(*V), h*w, C]
                h, w = self.encoder.last_hw
                p, g = p.cpu().numpy(), g.cpu().numpy() if grid is not None else None
                t["forward"] += time.perf_counter() - t0
            if self.views:  # [B*V, ...] -> [B, V, ...]
                p = p.reshape(len(batch), self.views, *p.shape[1:])
                g = g.reshape(len(batch), self.views, *g.shape[1:]) if g is not None else None
            idx = np.array([it.row - start for it in batch])
            pooled[idx] = p
            if grid is not None:
                if grid_hw is not None:
                    grid[idx, : h * w] = g  # padded: cells past h*w stay zero
                    grid_hw[idx] = (h, w)
                else:
                    grid[idx] = g
            if self.cfg.batch_hook is not None:
                self.cfg.batch_hook(k)

        # Decode runs `window` items ahead of the model; results are consumed in row order.
        window = 2 * bs
        pending: deque = deque()
        todo = iter(items)
        buckets: dict[tuple, list[_Item]] = {}
        for work in _take(todo, window):
            pending.append(self._prepare(work))
        while pending:
            t0 = time.perf_counter()
            item = pending.popleft().result()
            t["wait"] += time.perf_counter() - t0
            for work in _take(todo, 1):
                pending.append(self._prepare(work))
            t["read"] += item.read_s
            t["decode"] += item.decode_s
            if item.error is not None:
                report.failed[item.row] = item.error
                continue
            bucket = buckets.setdefault(item.key, [])
            bucket.append(item)
            if len(bucket) == bs:
                forward(bucket)
                del buckets[item.key]
        for bucket in buckets.values():
            forward(bucket)

        status = self.writer.write_shard(
            k, pooled=pooled, grid=grid, grid_hw=grid_hw, keys=[w.key for w in items], failed=report.failed, timings=t,
        )
        report.timings = dict(status.timings, total=time.perf_counter() - t_start)
        return report


def prepare_item(root: str, row: int, rel: str, preprocess: Preprocessor, gpu_jpeg: bool = False) -> _Item:
    """Read, decode and resize one image (runs in a decode thread or process). With
    gpu_jpeg, a JPEG nvjpeg can take is only read; anything else is decoded here at full
    size (the GPU resizes every item, so one store never mixes two resize codes)."""
    from clipfeat.manifests import ManifestError, safe_path

    from .images import decode_image, gpu_decodable, read_file

    item = _Item(row)
    try:
        path = safe_path(root, rel)
        t0 = time.perf_counter()
        data = read_file(path)
        t1 = time.perf_counter()
        item.read_s = t1 - t0
        size = gpu_decodable(data) if gpu_jpeg else None
        if size is not None:
            item.jpeg = data
            item.key = preprocess.output_size(*size)
        else:
            img = decode_image(data)
            item.pixels = np.array(img, dtype=np.uint8) if gpu_jpeg else preprocess(img)
            item.key = preprocess.output_size(*img.size)
        item.decode_s = time.perf_counter() - t1
    except (ImageError, ManifestError) as e:
        item.error = str(e)
    return item


def prepare_viewpoint(root: str, row: int, rel: str, fields: dict) -> _Item:
    """Read and decode one R2R viewpoint (runs in a decode thread or process): its six skybox
    faces or the simulator's strip -> `pixels` [6, S, S, 3] and `pose` from the manifest row, or
    its 36 pre-rendered views -> [36, h, w, 3]. Missing or bad files become the item's error."""
    from clipfeat.manifests import ManifestError, Row, safe_path, skybox_files

    from .images import decode_image, read_file
    from .panorama import VIEWS, PanoramaError, skybox_faces

    item = _Item(row)
    try:
        views = fields.get("layout") == "views"
        safe_path(root, rel)  # the folder stays inside the root (files are checked again below)
        files = skybox_files(root, Row(key=str(row), path=rel, split="", fields=fields))
        if files is None:
            vp = fields.get("viewpoint", "?")
            need = "0.jpg .. 35.jpg" if views else f"{vp}_skybox{{0..5}}_sami.jpg or {vp}_skybox_small.jpg"
            raise ImageError(f"no {'views' if views else 'skybox'} for viewpoint {vp}: {rel}/ lacks {need}")
        images = []  # uint8 [h, w, 3] each
        for f in files:
            t0 = time.perf_counter()
            try:
                data = read_file(str(safe_path(root, f)))
                t1 = time.perf_counter()
                images.append(np.asarray(decode_image(data), dtype=np.uint8))
            except ImageError as e:
                raise ImageError(f"{f}: {e}") from None
            item.read_s += t1 - t0
            item.decode_s += time.perf_counter() - t1
        if views:
            if len({im.shape for im in images}) != 1 or len(images) != VIEWS:
                raise PanoramaError(f"{rel}: the {VIEWS} pre-rendered views must all have one size")
            item.pixels = np.stack(images)
            item.key = ("views",) + images[0].shape[:2]
        else:
            item.pixels = skybox_faces(images, rel)
            item.pose = np.asarray(fields["pose"], dtype=np.float64).reshape(4, 4)
            item.key = ("skybox", item.pixels.shape[1])
    except (ImageError, ManifestError, PanoramaError) as e:
        item.error = str(e)
    return item


def _background_thread() -> None:
    """Make this decode thread yield to the model's threads: Linux SCHED_IDLE (runs only on a
    core nothing else wants), else nice 19. Nice alone is too weak inside a Ray worker, which
    Ray starts at nice 15: 19 against 15 is a 1:2.4 share, SCHED_IDLE against 15 is 1:12."""
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        return
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, tid, 19)
    except (AttributeError, OSError):
        pass


def _pid(_: int) -> int:
    return os.getpid()


def _take(it: Iterator[WorkItem], n: int) -> Iterator[WorkItem]:
    for _ in range(n):
        nxt = next(it, None)
        if nxt is None:
            return
        yield nxt
