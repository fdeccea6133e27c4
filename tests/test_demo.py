"""`make demo`'s code path at tiny scale (a tiny random ViT, `--quick` data and schedules):
every stage runs, the stores verify, the run folders and the summary are there, and a rerun
skips what is done."""

from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_every_stage_and_resumes(ray_local, tiny_models, tmp_path, capsys):
    from clipfeat.features import open_store
    from clipfeat.features.verify import verify_store
    from clipfeat.apps.demo import main

    spec = tiny_models["tinyvit"]
    argv = ["--dir", str(tmp_path / "demo"), "--model", spec.model, "--model-config", spec.model_config,
            "--checkpoint", spec.checkpoint, "--quick"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    d = tmp_path / "demo"

    # the three datasets in their real layouts, extracted into verified stores
    assert (d / "data" / "coco" / "val2014").is_dir() and (d / "data" / "vg" / "image_data.json").is_file()
    assert (d / "data" / "r2r" / "v1" / "scans").is_dir() and (d / "data" / "r2r" / "R2R_val_unseen.json").is_file()
    assert (d / "data" / "gqa" / "testdev_balanced_questions.json").is_file()
    assert (d / "data" / "flickr30k" / "dataset_flickr30k.json").is_file()
    sizes = {"coco": 24, "vg": 12, "r2r": 3 * 4, "flickr30k": 12}
    for name, n in sizes.items():
        url = str(d / f"{name}-tinyvit.zarr")
        st = open_store(url)
        assert len(st) == n and st.meta.status == "complete" and verify_store(url, progress=False).ok
        assert st.meta.layout.views == (36 if name == "r2r" else None)

    # the trained runs with their plots and predictions, each scored by `clipfeat eval`
    for task, preds in (("vqa", "predictions_val2014.json"), ("caption", "predictions_test.json"),
                        ("nav", "predictions_val_unseen.json"), ("gqa", "predictions_testdev.json"),
                        ("caption-flickr30k", "predictions_test.json")):
        run = d / "runs" / task
        assert (run / "curve.png").is_file() and (run / "ckpt_best.pt").is_file() and (run / preds).is_file()
    assert json.loads((d / "runs" / "caption" / "scores_test.json").read_text())["CIDEr"] >= 0
    for command in ("clipfeat extract --dataset r2r", "clipfeat extract --dataset flickr30k", "clipfeat info",
                    "clipfeat verify", "clipfeat eval vqa", "clipfeat eval caption", "clipfeat eval nav",
                    "clipfeat train gqa", "clipfeat eval gqa"):
        assert f"$ {command}" in out
    assert "clipfeat demo: summary" in out and "val_unseen (a new house) success rate" in out and "curve.png" in out
    assert "GQA (BUTD, VG)     val accuracy" in out and "Flickr30k captions val CIDEr-D" in out
    summary = out[out.index("clipfeat demo: summary"):]
    assert all(f"{name}-tinyvit.zarr" in summary for name in sizes)

    # a rerun resumes: nothing extracted again, finished runs reused
    mtimes = {p: os.path.getmtime(p) for p in (d / "runs").rglob("ckpt_best.pt")}
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("computed 0 in 0 shards") == len(sizes)
    assert {p: os.path.getmtime(p) for p in mtimes} == mtimes
