"""`read_connectivity`: the simulator's `{scan}_connectivity.json`, one reader for the manifest,
the renderer and the navigation graphs, each keeping its own error type and wording."""

from __future__ import annotations

import json
import math

import pytest

from clipfeat.common import ConnectivityError, Viewpoint, read_connectivity


def _pose(x: float, y: float, z: float) -> list[float]:
    """Row-major camera-to-world: Matterport camera axes (x right, y down, z forward), at (x, y, z)."""
    return [1.0, 0.0, 0.0, x, 0.0, 0.0, 1.0, y, 0.0, -1.0, 0.0, z, 0.0, 0.0, 0.0, 1.0]


ENTRIES = [  # a - b joined, c not included (its edge to a is in the file, as in the real ones)
    {"image_id": "a", "pose": _pose(0.0, 0.0, 1.5), "included": True, "visible": [False, True, True],
     "unobstructed": [False, True, True], "height": 1.5},
    {"image_id": "b", "pose": _pose(3.0, 4.0, 1.5), "included": True, "visible": [True, False, False],
     "unobstructed": [True, False, False], "height": 1.4},
    {"image_id": "c", "pose": _pose(-1, 2, 0), "included": False, "visible": [True, False, False],
     "unobstructed": [True, False, False], "height": 1.5},
]


def _write(tmp_path, entries, name="scan_connectivity.json"):
    path = tmp_path / name
    path.write_text(entries if isinstance(entries, str) else json.dumps(entries))
    return path


def test_reads_every_entry_in_file_order(tmp_path):
    vps = read_connectivity(_write(tmp_path, ENTRIES))
    assert [v.id for v in vps] == ["a", "b", "c"] and all(isinstance(v, Viewpoint) for v in vps)
    a, b, c = vps
    assert b.position == (3.0, 4.0, 1.5) and b.pose == tuple(_pose(3.0, 4.0, 1.5))
    assert c.position == (-1.0, 2.0, 0.0) and all(type(x) is float for x in c.pose)  # JSON ints become floats
    assert (a.included, b.included, c.included) == (True, True, False)
    assert a.unobstructed == (False, True, True) and b.unobstructed == (True, False, False)
    assert read_connectivity(str(tmp_path / "scan_connectivity.json")) == vps  # str or PathLike
    assert read_connectivity(_write(tmp_path, [], "empty_connectivity.json")) == []  # the caller decides
    with pytest.raises(AttributeError):
        a.included = False  # frozen: plain data, shared safely


@pytest.mark.parametrize("entries, message", [
    ("[{", r"is not valid JSON \(Expecting"),
    ({"a": 1}, "holds no list of viewpoints"),
    (["a"], r"entry 0 lacks an image_id \(it is a str, not an object\)"),
    ([{"image_id": 7}], r"entry 0 lacks a string image_id \(it has 7\)"),
    ([{"image_id": "a"}], r"entry 0 lacks a 16-number pose \(viewpoint a has none\)"),
    ([{"image_id": "a", "pose": [0.0] * 12}], r"entry 0 lacks a 16-number pose \(viewpoint a has 12 numbers\)"),
    ([{"image_id": "a", "pose": "0 0 0"}], r"entry 0 lacks a 16-number pose \(viewpoint a has a str\)"),
    ([{"image_id": "a", "pose": [0.0] * 15 + [math.nan]}], "viewpoint a has a value that is not a finite number"),
    ([{"image_id": "a", "pose": [0.0] * 15 + [True]}], "viewpoint a has a value that is not a finite number"),
    ([{"image_id": "a", "pose": [0.0] * 15 + ["1"]}], "viewpoint a has a value that is not a finite number"),
    ('[{"image_id": "a", "pose": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1' + "0" * 400 + "]}]",
     "viewpoint a has a value that is not a finite number"),
    ([{"image_id": "a", "pose": _pose(0, 0, 0)}], r"entry 0 lacks 1 unobstructed flags, one per entry \(viewpoint a has none\)"),
    ([{**ENTRIES[0], "unobstructed": [False, True]}, {**ENTRIES[1], "unobstructed": [True]}],
     r"entry 1 lacks 2 unobstructed flags, one per entry \(viewpoint b has 1\)"),
])
def test_format_errors_are_one_line_and_name_the_entry(tmp_path, entries, message):
    path = _write(tmp_path, entries)
    with pytest.raises(ConnectivityError, match=message) as info:
        read_connectivity(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_missing_file_is_the_callers_to_word(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_connectivity(tmp_path / "nope_connectivity.json")


def test_callers_keep_their_error_types(tmp_path):
    from clipfeat.manifests import ManifestError, scan
    from clipfeat.pipeline.panorama import PanoramaError, load_pose
    from clipfeat.trainers.nav.graphs import load_graph

    bad = [{"image_id": "a", "pose": [0.0] * 12, "included": True, "unobstructed": [False]}]
    root = tmp_path / "mp"  # a Matterport root in the pre-rendered views layout: only connectivity/ is read
    (root / "connectivity").mkdir(parents=True)
    path = _write(root / "connectivity", bad)
    with pytest.raises(ValueError, match=r"entry 0 lacks a 16-number pose .*; expected the R2R connectivity format") as info:
        load_graph(path)
    assert not isinstance(info.value, ConnectivityError)  # the trainers' plain ValueError, as before
    with pytest.raises(ManifestError, match="entry 0 lacks a 16-number pose"):
        scan("r2r", str(root))
    with pytest.raises(PanoramaError, match="entry 0 lacks a 16-number pose"):
        load_pose(path, "a")
    with pytest.raises(PanoramaError, match="not found; pass the folder"):
        load_pose(tmp_path / "nope_connectivity.json", "a")
    path = _write(root / "connectivity", ENTRIES)
    assert load_pose(path, "c").tolist() == [_pose(-1, 2, 0)[r * 4:r * 4 + 4] for r in range(4)]  # any entry has a pose
    m, _ = scan("r2r", str(root))
    assert [r.fields["viewpoint"] for r in m.rows] == ["a", "b"] and m.rows[1].fields["pose"] == _pose(3.0, 4.0, 1.5)
    g = load_graph(path)
    assert g.viewpoints == ["a", "b"] and g.distance("a", "b") == 5.0


def test_real_graphs(shared_data):
    conn = shared_data / "r2r" / "connectivity"
    if not conn.is_dir():
        pytest.skip("../shared/data/r2r/connectivity is absent")
    files = sorted(conn.glob("*_connectivity.json"))
    assert len(files) == 90
    entries = included = edges = 0
    for f in files:
        raw = json.loads(f.read_text())
        vps = read_connectivity(f)
        assert [v.id for v in vps] == [e["image_id"] for e in raw]
        for v, e in zip(vps, raw):
            assert v.pose == tuple(e["pose"]) and v.position == (e["pose"][3], e["pose"][7], e["pose"][11])
            assert v.included == e["included"] and v.unobstructed == tuple(e["unobstructed"]) and len(v.unobstructed) == len(vps)
        entries += len(vps)
        included += sum(v.included for v in vps)
        inc = [v.included for v in vps]
        edges += sum(f and inc[i] and inc[j] for i, v in enumerate(vps) for j, f in enumerate(v.unobstructed) if j > i)
    assert (entries, included, edges) == (10800, 10567, 21468)
