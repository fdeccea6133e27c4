"""GPU-only checks (skipped without CUDA; run them on a GPU machine): nvjpeg decoding and GPU
resizing give the CPU path's features within rounding, and route bad files the same way."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_gpu_preprocess_matches_pil_within_rounding(synthetic_coco):
    import torchvision

    from clipfeat.manifests import scan
    from clipfeat.pipeline.images import Preprocessor, decode_image, gpu_preprocess

    manifest, _ = scan("coco", synthetic_coco)
    for pre in (Preprocessor(mode="fixed", size=224), Preprocessor(mode="aspect", shorter_side=96, max_side=160)):
        for i in range(6):
            data = open(manifest.resolve(synthetic_coco, i), "rb").read()
            img = decode_image(data)
            cpu = pre(img).astype(int)
            t = torch.from_numpy(np.array(img)).cuda().permute(2, 0, 1)
            gpu = gpu_preprocess([t], pre)[0].cpu().numpy().astype(int)
            assert gpu.shape == cpu.shape
            assert np.abs(gpu - cpu).mean() < 1.0 and np.percentile(np.abs(gpu - cpu), 99) <= 4
            if data[:2] == b"\xff\xd8":  # nvjpeg itself against PIL's decode, same geometry
                nv = torchvision.io.decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), device="cuda",
                                                mode=torchvision.io.ImageReadMode.RGB)
                if nv.shape[-2:] == (img.size[1], img.size[0]):
                    assert (nv.cpu().numpy().transpose(1, 2, 0).astype(int) - np.array(img).astype(int)).__abs__().mean() < 2.0


def test_worker_gpu_jpeg_matches_cpu_path(tiny_models, synthetic_coco, tmp_path):
    from clipfeat.features import open_store
    from clipfeat.features.writer import create_store
    from clipfeat.manifests import scan
    from clipfeat.pipeline.job import ExtractConfig, plan_store
    from clipfeat.pipeline.worker import ShardWorker, WorkerConfig, WorkItem

    root = tmp_path / "coco"
    shutil.copytree(synthetic_coco, root)
    val = root / "val2014"
    names = sorted(os.listdir(val))
    data = (val / names[1]).read_bytes()
    (val / names[1]).write_bytes(data[: len(data) // 3])  # truncated
    (val / names[2]).write_bytes(b"")
    manifest, _ = scan("coco", str(root))
    spec = tiny_models["tinyrn"]
    out = {}
    for mode in ("cpu", "cuda"):
        cfg = ExtractConfig(out=str(tmp_path / f"{mode}.zarr"), spec=spec, shard_size=64, device="cuda", decode=mode if mode == "cuda" else "processes")
        meta, pre = plan_store(cfg, manifest, "test")
        create_store(cfg.out, meta=meta, keys=manifest.keys).close()
        w = ShardWorker(WorkerConfig(store=cfg.out, root=str(root), spec=spec, preprocess=pre, device="cuda", threads=4,
                                     batch_size=8, gpu_jpeg=mode == "cuda"))
        rows = [WorkItem(i, r.key, r.path) for i, r in enumerate(manifest.rows)]
        rep = w.run(0, rows)
        out[mode] = (rep.failed, open_store(cfg.out, allow_partial=True))
    assert out["cpu"][0].keys() == out["cuda"][0].keys() and len(out["cpu"][0]) == 2
    a, b = out["cpu"][1], out["cuda"][1]
    assert a.meta.store_id != b.meta.store_id and b.meta.preprocess.interpolation.endswith("/torchvision-gpu")
    rows = np.arange(len(a))
    pa, pb = a.pooled(rows).astype(np.float32), b.pooled(rows).astype(np.float32)
    cos = (pa * pb).sum(1) / (np.linalg.norm(pa, axis=1) * np.linalg.norm(pb, axis=1) + 1e-12)
    ok = np.array([r not in out["cpu"][0] for r in rows])
    assert cos[ok].min() > 0.99  # same images, resize rounding apart


def test_cuda_graph_forward_matches_eager(tiny_models):
    from clipfeat.pipeline.encoder import load_encoder

    enc = load_encoder(tiny_models["tinyrn"], device="cuda")
    x = enc.normalize(np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8))
    p0, g0 = enc.encode(x)
    enc.graphs, enc.graph_batch = True, 8
    for b in (5, 3, 5):  # short batches are padded to the captured 8 and sliced back
        p, g = enc.encode(x[:b])
        assert p.shape[0] == b and enc.last_hw == (2, 2)
        assert torch.allclose(p.float(), p0[:b].float(), atol=1e-3) and torch.allclose(g.float(), g0[:b].float(), atol=1e-3)
