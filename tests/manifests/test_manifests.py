import gzip
import json
import os
import shutil

import pytest
from click.testing import CliRunner

from clipfeat.manifests import Manifest, ManifestError, Row, safe_path, scan
from clipfeat.pipeline.cli import cli


def _touch(path, data=b"\xff\xd8\xff"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


@pytest.fixture
def coco_root(tmp_path):
    root = tmp_path / "coco"
    for i in (885, 42, 1000):
        _touch(root / "val2014" / f"COCO_val2014_{i:012d}.jpg")
    for i in (9, 1001):
        _touch(root / "train2014" / f"COCO_train2014_{i:012d}.jpg")
    _touch(root / "val2017" / f"{885:012d}.jpg")  # same image id as 2014: another year
    _touch(root / "val2014" / "README.txt")  # not an image: ignored
    return root


def test_coco_scan_sorted_ids_splits_and_stable_hash(coco_root, tmp_path):
    m, warnings = scan("coco", str(coco_root))
    assert m.keys == ["9", "42", "885", "1000", "1001"]  # numeric order, 2014 folders by default
    assert m.splits() == {"train2014": 2, "val2014": 3} and not warnings
    assert m.rows[2].path == "val2014/COCO_val2014_000000000885.jpg"
    other = tmp_path / "elsewhere"
    shutil.copytree(coco_root, other)
    assert scan("coco", str(other))[0].sha256 == m.sha256  # same rows, same hash, wherever it lives
    only = scan("coco", str(coco_root), splits=["val2017"])[0]
    assert only.keys == ["885"] and only.rows[0].path == "val2017/000000000885.jpg"
    with pytest.raises(ManifestError, match="appears twice"):
        scan("coco", str(coco_root), splits=["val2014", "val2017"])
    assert [r for r in m.shards(2)] == [range(0, 2), range(2, 4), range(4, 5)]


def test_coco_annotations_cross_check(coco_root):
    ann = coco_root / "annotations"
    ann.mkdir()
    (ann / "captions_val2014.json").write_text(json.dumps({"images": [{"id": 885}, {"id": 42}, {"id": 7}]}))
    _, warnings = scan("coco", str(coco_root), splits=["val2014"])
    assert any("1 annotated images have no file (first: 7)" in w for w in warnings)
    assert any("1 files are not in captions_val2014.json (first: 1000)" in w for w in warnings)


def test_real_coco_sample(shared_data, tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(shared_data / "coco-val2014-sample", root / "val2014")
    m, _ = scan("coco", str(root))
    assert len(m) == 12 and "39769" in m.keys and m.keys == sorted(m.keys, key=int)


def test_vg_from_real_image_data(shared_data, tmp_path):
    root = tmp_path / "vg"
    root.mkdir()
    shutil.copy(shared_data / "vg" / "image_data.sample.json", root / "image_data.json")
    entries = json.loads((root / "image_data.json").read_text())
    for e in entries[:10]:
        part = "VG_100K_2" if "/VG_100K_2/" in e["url"] else "VG_100K"
        _touch(root / part / f"{e['image_id']}.jpg")
    m, warnings = scan("vg", str(root))
    assert len(m) == 100 and m.keys[:3] == ["1", "2", "3"]
    assert m.rows[0].path == "VG_100K_2/1.jpg" and m.rows[1].path == "VG_100K/2.jpg"
    assert set(m.rows[0].fields) == {"coco_id", "width", "height"} and m.rows[0].fields["width"] == 800
    assert "90 of 100 listed images have no file" in warnings[0]


def test_save_load_round_trip_and_tamper_detection(coco_root, tmp_path):
    m, _ = scan("coco", str(coco_root))
    for name in ("m.jsonl", "m.jsonl.gz"):
        m.save(tmp_path / name)
        back = Manifest.load(tmp_path / name)
        assert back.rows == m.rows and back.sha256 == m.sha256 and back.dataset == "coco"
    with gzip.open(tmp_path / "m.jsonl.gz", "rt") as f:
        lines = f.readlines()
    lines[2] = lines[2].replace("42", "43")
    (tmp_path / "bad.jsonl").write_text("".join(lines))
    with pytest.raises(ManifestError, match="do not match"):
        Manifest.load(tmp_path / "bad.jsonl")


def test_paths_must_stay_inside_the_root(tmp_path):
    root = tmp_path / "root"
    _touch(root / "a" / "x.jpg")
    _touch(tmp_path / "outside.jpg")
    os.symlink(tmp_path / "outside.jpg", root / "a" / "link.jpg")
    assert safe_path(root, "a/x.jpg") == os.path.realpath(root / "a" / "x.jpg")
    for bad, why in (("../outside.jpg", "leaves"), ("/etc/passwd", "absolute"), ("a/link.jpg", "outside")):
        with pytest.raises(ManifestError, match=why):
            Manifest("coco", [Row("1", bad, "val2014")]).resolve(root, 0)


def test_manifest_cli(coco_root, tmp_path):
    out = tmp_path / "coco.jsonl.gz"
    r = CliRunner()
    res = r.invoke(cli, ["manifest", "--dataset", "coco", "--root", str(coco_root), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "5 items (train2014 2, val2014 3)" in res.output and len(Manifest.load(out)) == 5
    for args, msg in (
        (["--root", str(tmp_path / "nope")], "does not exist"),
        (["--root", str(tmp_path), "--splits", "val2014"], "no val2014/ folder"),
        (["--root", str(coco_root), "--splits", "val2099"], "unknown COCO split"),
    ):
        res = r.invoke(cli, ["manifest", "--dataset", "coco", "--out", str(tmp_path / "x.jsonl"), *args])
        assert res.exit_code == 2 and msg in res.output and res.output.startswith("Error:"), res.output
    empty = tmp_path / "empty"
    (empty / "val2014").mkdir(parents=True)
    res = r.invoke(cli, ["manifest", "--dataset", "coco", "--root", str(empty), "--out", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2 and "no COCO images found" in res.output


# -- R2R ------------------------------------------------------------------------------------------


def test_r2r_manifest_from_graphs_and_skyboxes(tmp_path):
    from clipfeat.manifests import skybox_files
    from clipfeat.manifests.synthetic import make_matterport

    made = make_matterport(tmp_path, scans=2, viewpoints=3)
    m, warnings = scan("r2r", str(tmp_path))
    assert warnings == [] and len(m) == 6 and m.splits() == {"r2r": 6}
    assert sorted(m.keys) == sorted(f"{s}_{v}" for s, vps in made.items() for v in vps)  # the non-included one is left out
    row = m.rows[0]
    assert row.path == f"v1/scans/{row.fields['scan']}/matterport_skybox_images" and len(row.fields["pose"]) == 16
    files = [skybox_files(tmp_path, r) for r in m.rows]
    assert sorted(len(f) for f in files) == [1, 1, 6, 6, 6, 6]  # one _skybox_small strip per scan
    assert m.sha256 == scan("r2r", str(tmp_path))[0].sha256

    one = sorted(made)[0]
    assert len(scan("r2r", str(tmp_path), scans=[one])[0]) == 3
    with pytest.raises(ManifestError, match="no connectivity file"):
        scan("r2r", str(tmp_path), scans=["nope"])
    with pytest.raises(ManifestError, match="no splits"):
        scan("r2r", str(tmp_path), splits=["train"])
    with pytest.raises(ManifestError, match="has no \\*_connectivity.json"):
        scan("r2r", str(tmp_path), connectivity=str(tmp_path / "v1"))

    # a missing face: the viewpoint stays a row (row numbers follow the graphs) and is reported
    victim = next(r for r in m.rows if len(skybox_files(tmp_path, r)) == 6)
    os.remove(tmp_path / victim.path / f"{victim.fields['viewpoint']}_skybox3_sami.jpg")
    m2, warnings = scan("r2r", str(tmp_path))
    assert len(m2) == 6 and "1 of 6 viewpoints have no skybox images" in warnings[0] and victim.key in warnings[0]
    assert skybox_files(tmp_path, Row(victim.key, victim.path, "r2r", victim.fields)) is None


def test_r2r_manifest_of_the_real_graphs(shared_data):


    m, _ = scan("r2r", str(shared_data / "r2r"))
    assert len(m) == 10_567 and len({r.fields["scan"] for r in m.rows}) == 90
    assert m.rows[0].key == "17DRP5sb8fy_00ebbf3782c64d74aaf7dd39cd561175"
