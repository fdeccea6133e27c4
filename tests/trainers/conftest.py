"""Trainer fixtures: a synthetic COCO/VQA dataset and its feature store, extracted once per
session by the real pipeline (tiny random ViT at 128 px -> 8x8 grid of 48 channels)."""

from __future__ import annotations

import json

import pytest

SMALL = ((160, 120), (120, 160), (144, 144))  # small images: extraction stays a few seconds


@pytest.fixture(scope="session")
def coco_data(tmp_path_factory, tiny_models, ray_local):
    """(store path, data dir) for the VQA and caption trainers. 480 train / 120 val images (about
    3,100 / 780 questions; 5 captions each; Karpathy splits in dataset_coco.json); a
    test-dev2015 questions file (no annotations) asks the first 40 val questions again."""
    from clipfeat.manifests.synthetic import make_coco
    from clipfeat.pipeline.job import ExtractConfig, run_extract

    root = tmp_path_factory.mktemp("vqa")
    make_coco(root, splits={"train2014": 480, "val2014": 120}, sizes=SMALL, seed=5)
    val = json.loads((root / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    (root / "v2_OpenEnded_mscoco_test-dev2015_questions.json").write_text(
        json.dumps({**val, "data_subtype": "test-dev2015", "questions": val["questions"][:40]})
    )
    store = str(tmp_path_factory.mktemp("stores") / "coco-tinyvit128.zarr")
    run_extract(ExtractConfig(out=store, spec=tiny_models["tinyvit128"], dataset="coco", root=str(root), shard_size=64,
                              batch_size=32, device="cpu", workers=1, threads=2, progress=False))
    return store, str(root)


@pytest.fixture
def run_killed():
    """run_killed(module, argv): `module.main(argv)` in a subprocess that SIGKILLs itself right
    after epoch 1's checkpoint, as a crash would. The kill is a hook on the loop's test seam
    (`trainers.loop.EPOCH_END_HOOKS`), installed only in that subprocess."""
    import subprocess
    import sys

    def run(module: str, argv: list[str]) -> None:
        code = ("import os, signal\n"
                "from clipfeat.trainers import device, loop\n"
                "if os.environ.get('CLIPFEAT_TEST_BF16') == '0': device._cpu_has_bf16 = lambda: False\n"
                "loop.EPOCH_END_HOOKS.append(lambda epoch: epoch == 1 and os.kill(os.getpid(), signal.SIGKILL))\n"
                f"from {module} import main\n"
                f"main({argv!r})\n")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert proc.returncode == -9, proc.stderr[-2000:]

    return run
