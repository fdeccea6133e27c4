"""Flickr30k end to end: a synthetic root in the distributed layout -> `clipfeat extract --dataset
flickr30k` through the real pipeline (Ray, tiny random ViT) -> `clipfeat train caption` on
Karpathy's dataset_flickr30k.json -> predictions for every test image."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from clipfeat.features import open_store
from clipfeat.pipeline.cli import cli
from clipfeat.trainers.caption.data import load_splits
from clipfeat.trainers.config import ConfigError

SMALL = ((64, 48), (48, 64), (56, 56))
TINY_CAPTIONER = ["d_model=32", "enc_layers=1", "dec_layers=1", "heads=2", "ff_dim=64", "batch_size=8", "warmup_steps=5",
                  "lr=2e-3", "min_word_count=2", "beam_size=2"]


@pytest.fixture(scope="module")
def flickr30k_root(tmp_path_factory):
    """(root, made): 36 images in the Flickr30k layout, 24 train, 6 val, 6 test."""
    from clipfeat.manifests.synthetic import make_flickr30k

    root = tmp_path_factory.mktemp("flickr30k")
    return root, make_flickr30k(root, n_images=36, seed=11, sizes=SMALL)


@pytest.fixture(scope="module")
def flickr30k(flickr30k_root, tmp_path_factory, tiny_models, ray_local):
    """(root, made, store): the root extracted by `clipfeat extract --dataset flickr30k`."""
    root, made = flickr30k_root
    store = str(tmp_path_factory.mktemp("stores") / "flickr30k-tinyvit.zarr")
    spec = tiny_models["tinyvit"]
    r = CliRunner().invoke(cli, ["extract", "--dataset", "flickr30k", "--root", str(root), "--out", store,
                                 "--model", spec.model, "--model-config", spec.model_config, "--checkpoint", spec.checkpoint,
                                 "--device", "cpu", "--workers", "1", "--threads", "2", "--shard-size", "16",
                                 "--batch-size", "16", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "36 items; computed 36 in 3 shards" in r.output, r.output
    return root, made, store


def test_extract_writes_every_image_under_its_flickr_id(flickr30k):
    _, made, store = flickr30k
    st = open_store(store)
    ids = sorted(i for v in made.values() for i in v)
    assert st.keys == [str(i) for i in ids]
    assert st.meta.dataset.name == "flickr30k" and st.meta.dataset.splits == {"train": 24, "val": 6, "test": 6}
    assert st.meta.layout.views is None and st.meta.layout.grid_hw == (4, 4) and st.meta.layout.grid_channels
    assert len(st.done_rows()) == 36
    pooled = st.group["pooled"][:]
    assert pooled.shape == (36, 32) and np.isfinite(pooled).all() and len(np.unique(pooled, axis=0)) == 36


def test_caption_data_reads_the_file_or_its_folder(flickr30k_root, tmp_path):
    root, made = flickr30k_root
    by_file, by_folder = load_splits(root / "dataset_flickr30k.json"), load_splits(root)
    for splits in (by_file, by_folder):
        assert {n: sorted(s.image_ids) for n, s in splits.items()} == {n: sorted(v) for n, v in made.items()}
    test = by_file["test"]
    assert all(len(r) == 5 and r[0][0].isupper() for r in test.raw) and test.tokens[0][0][0] == test.raw[0][0].split()[0].lower()
    (tmp_path / "dataset_flickr30k.json").write_text("{}")
    (tmp_path / "dataset_coco.json").write_text("{}")
    with pytest.raises(ConfigError, match="holds both dataset_coco.json and dataset_flickr30k.json"):
        load_splits(tmp_path)
    (tmp_path / "dataset_coco.json").unlink()
    with pytest.raises(ConfigError, match="is not in Karpathy's"):
        load_splits(tmp_path)


def test_train_caption_on_the_flickr30k_store(flickr30k, tmp_path):
    root, made, store = flickr30k
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", "caption", "--features", store, "--data", str(root / "dataset_flickr30k.json"),
                                 "--out", str(out), "--set", "progress=false", "epochs=2", "train_splits=train",
                                 "final_metrics=false", *TINY_CAPTIONER])  # pycocoevalcap's Java steps: not needed here
    assert r.exit_code == 0, r.output
    assert "train: 24 of 24 images, 120 captions" in r.output and "val: 6 of 6 images" in r.output
    evals = [e for e in map(json.loads, open(out / "metrics.jsonl")) if e["kind"] == "eval"]
    assert [e["epoch"] for e in evals] == [1, 2] and all(e["CIDEr"] >= 0 and e["baseline"] > 0 for e in evals)
    words = {w for caps in load_splits(root)["train"].tokens for c in caps for w in c}
    for split in ("val", "test"):
        preds = json.loads((out / f"predictions_{split}.json").read_text())
        assert sorted(p["image_id"] for p in preds) == sorted(made[split])  # every image, under its Flickr id
        assert all(set(p["caption"].split()) <= words for p in preds)  # decoded with the training vocabulary
