"""The Flickr30k manifest on a synthetic root in the distributed layout: keys, paths, Karpathy
splits, missing files and the one-line errors for a wrong --root."""

from __future__ import annotations

import json
import os
import re

import pytest
from click.testing import CliRunner

from clipfeat.manifests import IMAGES, Manifest, ManifestError, scan
from clipfeat.manifests.synthetic import make_flickr30k
from clipfeat.pipeline.cli import cli

TINY = ((32, 24), (24, 32))


@pytest.fixture(scope="module")
def flickr(tmp_path_factory):
    root = tmp_path_factory.mktemp("flickr30k")
    return root, make_flickr30k(root, n_images=18, seed=7, sizes=TINY)


def test_synthetic_root_has_the_real_layout_and_fields(flickr):
    root, made = flickr
    data = json.loads((root / "dataset_flickr30k.json").read_text())
    assert data["dataset"] == "flickr30k" and len(data["images"]) == 18
    im = data["images"][0]
    assert set(im) == {"filename", "imgid", "sentids", "split", "sentences"} and im["imgid"] == 0
    assert set(im["sentences"][0]) == {"tokens", "raw", "imgid", "sentid"}
    assert im["sentids"] == [s["sentid"] for s in im["sentences"]] and len(im["sentences"]) == 5
    raw = im["sentences"][0]["raw"]
    assert raw[0].isupper() and raw.endswith(".") and im["sentences"][0]["tokens"] == re.findall(r"[a-z]+", raw.lower())
    assert sorted(os.listdir(root / "flickr30k-images")) == sorted(i["filename"] for i in data["images"])
    assert {k: len(v) for k, v in made.items()} == {"train": 12, "val": 3, "test": 3}
    assert len({len(str(i)) for v in made.values() for i in v}) > 1  # ids of several lengths, like Flickr's


def test_keys_paths_splits_and_a_stable_hash(flickr, tmp_path):
    root, made = flickr
    m, warnings = scan("flickr30k", str(root))
    assert warnings == [] and m.dataset == "flickr30k" and m.layout == IMAGES
    ids = sorted(i for v in made.values() for i in v)
    assert m.keys == [str(i) for i in ids]  # numeric order: 5-digit ids before 10-digit ones
    assert m.splits() == {"train": 12, "val": 3, "test": 3}
    split_of = {str(i): s for s, v in made.items() for i in v}
    assert all(r.split == split_of[r.key] and r.path == f"flickr30k-images/{r.key}.jpg" and r.fields == {} for r in m.rows)
    assert os.path.isfile(m.resolve(root, 0))
    assert scan("flickr30k", str(root))[0].sha256 == m.sha256

    test = scan("flickr30k", str(root), splits=["test"])[0]
    assert test.keys == [str(i) for i in sorted(made["test"])] and test.splits() == {"test": 3}
    assert len(scan("flickr30k", str(root), splits=["val", "test"])[0]) == 6
    with pytest.raises(ManifestError, match="unknown Flickr30k split 'restval'; choose from train, val, test"):
        scan("flickr30k", str(root), splits=["restval"])
    with pytest.raises(ManifestError, match="--scans and --connectivity are for --dataset r2r"):
        scan("flickr30k", str(root), scans=["x"])

    m.save(tmp_path / "f.jsonl")
    back = Manifest.load(tmp_path / "f.jsonl")
    assert back.rows == m.rows and back.layout == IMAGES and back.dataset == "flickr30k"


def test_listed_images_without_a_file_are_left_out_with_a_warning(tmp_path):
    made = make_flickr30k(tmp_path, n_images=12, seed=1, sizes=TINY)
    gone, stray = made["val"][0], 123
    os.remove(tmp_path / "flickr30k-images" / f"{gone}.jpg")
    (tmp_path / "flickr30k-images" / f"{stray}.jpg").write_bytes(b"\xff\xd8\xff")
    (tmp_path / "flickr30k-images" / "readme.txt").write_text("")  # not an image: ignored
    m, warnings = scan("flickr30k", str(tmp_path))
    assert len(m) == 11 and str(gone) not in m.keys and str(stray) not in m.keys
    assert warnings == [f"1 of 12 listed images have no file in flickr30k-images/ (first: {gone}.jpg); they are left out",
                        f"1 files in flickr30k-images/ are not in dataset_flickr30k.json (first: {stray}.jpg)"]
    for name in os.listdir(tmp_path / "flickr30k-images"):
        os.remove(tmp_path / "flickr30k-images" / name)
    with pytest.raises(ManifestError, match="none of the 12 images dataset_flickr30k.json lists is in"):
        scan("flickr30k", str(tmp_path))


def test_malformed_split_file(tmp_path):
    (tmp_path / "flickr30k-images").mkdir()
    bad = {
        "not json": "{",
        "no images key": json.dumps({"dataset": "flickr30k"}),
        "an entry without a split": json.dumps({"images": [{"filename": "1.jpg"}]}),
    }
    for why, text in bad.items():
        (tmp_path / "dataset_flickr30k.json").write_text(text)
        with pytest.raises(ManifestError, match="is not Karpathy's dataset_flickr30k.json format"):
            scan("flickr30k", str(tmp_path))
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps({"images": [{"filename": "a_b.jpg", "split": "train"}]}))
    with pytest.raises(ManifestError, match="'a_b.jpg' is not an integer id"):
        scan("flickr30k", str(tmp_path))
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps({"images": [{"filename": "1.jpg", "split": "train"}] * 2}))
    with pytest.raises(ManifestError, match="1.jpg is listed twice"):
        scan("flickr30k", str(tmp_path))


def test_wrong_root_is_one_line_naming_the_layout(flickr, tmp_path):
    root, _ = flickr
    (tmp_path / "a-file").write_text("")
    (tmp_path / "json-only").mkdir()
    (tmp_path / "json-only" / "dataset_flickr30k.json").write_text((root / "dataset_flickr30k.json").read_text())
    (tmp_path / "images-only" / "flickr30k-images").mkdir(parents=True)
    cases = {
        "nope": "Flickr30k root {p} does not exist",
        "a-file": "Flickr30k root {p} is not a folder",
        "images-only": "{p}/dataset_flickr30k.json not found",
        "json-only": "{p}/flickr30k-images/ not found",
    }
    runner = CliRunner()
    for name, first in cases.items():
        p = tmp_path / name
        with pytest.raises(ManifestError) as e:
            scan("flickr30k", str(p))
        assert str(e.value).startswith(first.format(p=p)) and "\n" not in str(e.value)
        assert str(e.value).endswith("pass --root the Flickr30k folder holding flickr30k-images/ "
                                     "(e.g. flickr30k-images/1000092795.jpg) and Karpathy's dataset_flickr30k.json")
        r = runner.invoke(cli, ["manifest", "--dataset", "flickr30k", "--root", str(p), "--out", str(tmp_path / "m.jsonl")])
        assert r.exit_code == 2 and r.output == f"Error: {e.value}\n", r.output
    assert not (tmp_path / "m.jsonl").exists()


def test_manifest_cli(flickr, tmp_path):
    root, _ = flickr
    out = tmp_path / "f.jsonl.gz"
    r = CliRunner().invoke(cli, ["manifest", "--dataset", "flickr30k", "--root", str(root), "--splits", "train,test",
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "15 items (" in r.output and "train 12" in r.output and "test 3" in r.output
    assert Manifest.load(out).splits() == {"train": 12, "test": 3}
