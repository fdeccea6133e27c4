"""R2R navigation graphs and the official R2R metrics: synthetic scans with hand-derived edges,
distances, paths and candidate views; hand-computed scores; input errors; and, when
../shared/data/r2r is there, all 90 real graphs and the val splits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from clipfeat.trainers.nav.graphs import Candidate, ScanGraph, angle_feature, load_graph, load_graphs, view_angles
from clipfeat.trainers.nav.metric import ERROR_MARGIN, NavScores, evaluate, format_scores

R2R = Path(__file__).resolve().parents[3] / "shared" / "data" / "r2r"
CAMERA = 1.5  # camera height of the synthetic viewpoints (pose z)


def _entry(vp, xyz, included, flags):
    x, y, z = xyz
    pose = [1.0, 0.0, 0.0, x, 0.0, 1.0, 0.0, y, 0.0, 0.0, 1.0, z, 0.0, 0.0, 0.0, 1.0]  # row-major camera-to-world
    return {"image_id": vp, "pose": pose, "included": included, "visible": flags, "unobstructed": flags, "height": CAMERA}


def _write_scan(root: Path, scan: str, points: dict, edges, *, excluded=(), one_way=()) -> Path:
    """A connectivity file in the real format: `points` {id: (x, y, z)} in file order, `edges`
    unobstructed both ways, `one_way` pairs unobstructed from the first only."""
    ids = list(points)
    flags = {vp: [False] * len(ids) for vp in ids}
    for a, b in edges:
        flags[a][ids.index(b)] = flags[b][ids.index(a)] = True
    for a, b in one_way:
        flags[a][ids.index(b)] = True
    data = [_entry(vp, points[vp], vp not in excluded, flags[vp]) for vp in ids]
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{scan}_connectivity.json"
    path.write_text(json.dumps(data))
    return path


def _deg(h):
    return math.radians(h)


# "square": a (0, 0); b 4 m east; c 3 m north of b; d 5 m north of a; e south of a, 2 m higher;
# g 4 m west. f is excluded (its edge to a is ignored), i is included without edges, a-c is obstructed.
SQUARE = {
    "a": (0.0, 0.0, CAMERA),
    "b": (4.0, 0.0, CAMERA),
    "c": (4.0, 3.0, CAMERA),
    "d": (0.0, 5.0, CAMERA),
    "e": (0.0, -3.0, CAMERA + 2.0),
    "f": (1.0, 1.0, CAMERA),
    "g": (-4.0, 0.0, CAMERA),
    "i": (9.0, 9.0, CAMERA),
}
SQUARE_EDGES = [("a", "b"), ("a", "d"), ("a", "e"), ("a", "f"), ("a", "g"), ("b", "c"), ("c", "d")]

# "wrap": neighbours of o at heading 350° (elevation 0), 98° (20° below) and 200° (10° above), 3 m away horizontally.
WRAP = {
    "o": (0.0, 0.0, CAMERA),
    "north": (3 * math.sin(_deg(350)), 3 * math.cos(_deg(350)), CAMERA),
    "east": (3 * math.sin(_deg(98)), 3 * math.cos(_deg(98)), CAMERA - 3 * math.tan(_deg(20))),
    "south": (3 * math.sin(_deg(200)), 3 * math.cos(_deg(200)), CAMERA + 3 * math.tan(_deg(10))),
}

# "line": p0..p5 along +x, 2 m apart, consecutive ones joined.
LINE = {f"p{k}": (2.0 * k, 0.0, CAMERA) for k in range(6)}
LINE_EDGES = [(f"p{k}", f"p{k + 1}") for k in range(5)]


@pytest.fixture
def conn(tmp_path):
    root = tmp_path / "connectivity"
    _write_scan(root, "square", SQUARE, SQUARE_EDGES, excluded={"f"})
    _write_scan(root, "wrap", WRAP, [("o", "north"), ("o", "east"), ("o", "south")])
    _write_scan(root, "line", LINE, LINE_EDGES)
    return root


# ---------------------------------------------------------------------------------------------
# Graphs
# ---------------------------------------------------------------------------------------------


def test_nodes_edges_and_weights(conn):
    g = load_graph(conn / "square_connectivity.json")
    assert g.scan == "square" and g.viewpoints == ["a", "b", "c", "d", "e", "g", "i"]  # f is excluded
    assert g.index == {vp: r for r, vp in enumerate(g.viewpoints)} and g.positions.shape == (7, 3)
    assert g.positions[g.index["e"]].tolist() == [0.0, -3.0, CAMERA + 2.0]
    assert sorted(map(sorted, g.graph.edges)) == [["a", "b"], ["a", "d"], ["a", "e"], ["a", "g"], ["b", "c"], ["c", "d"]]
    w = nx.get_edge_attributes(g.graph, "weight")
    assert w[("a", "b")] == 4.0 and w[("b", "c")] == 3.0 and w[("a", "d")] == 5.0
    assert w[("c", "d")] == pytest.approx(math.sqrt(20)) and w[("a", "e")] == pytest.approx(math.sqrt(13))
    assert not g.graph.has_edge("a", "c")  # obstructed
    assert g.neighbours("a") == ["b", "d", "e", "g"] and g.neighbours("i") == [] and "f" not in g


def test_distances_and_paths(conn):
    g = load_graph(conn / "square_connectivity.json")
    assert g.dist.dtype == np.float64 and g.dist.shape == (7, 7) and not g.dist.flags.writeable
    assert g.distance("a", "c") == 7.0 and g.path("a", "c") == ["a", "b", "c"]  # via b (7 m), not via d (9.47 m)
    assert g.distance("d", "c") == pytest.approx(math.sqrt(20)) and g.path("d", "c") == ["d", "c"]
    assert g.distance("g", "c") == 11.0 and g.path("g", "c") == ["g", "a", "b", "c"]
    assert g.distance("e", "d") == pytest.approx(math.sqrt(13) + 5) and g.distance("b", "b") == 0.0
    assert np.array_equal(g.dist, g.dist.T)
    # the isolated viewpoint: reachable from nowhere, no path
    assert g.distance("a", "i") == math.inf and g.distance("i", "i") == 0.0
    with pytest.raises(ValueError, match="no path from a to i"):
        g.path("a", "i")
    with pytest.raises(ValueError, match="'f' is not an included viewpoint of scan square"):
        g.distance("a", "f")
    # the distances of networkx's Dijkstra on the same graph, to the bit
    ref = dict(nx.all_pairs_dijkstra_path_length(g.graph))
    assert all(g.dist[g.index[u], g.index[v]] == d for u, row in ref.items() for v, d in row.items())


def test_candidates_square(conn):
    g = load_graph(conn / "square_connectivity.json")
    cands = {c.viewpoint: c for c in g.candidates("a")}
    assert set(cands) == {"b", "d", "e", "g"}
    # d due north: heading 0, view 12 (horizon row, heading 0); b due east: 90° -> view 12 + 3
    assert cands["d"] == Candidate("d", 0.0, 0.0, 12, 5.0)
    assert cands["b"] == Candidate("b", math.pi / 2, 0.0, 15, 4.0)
    assert cands["g"].heading == pytest.approx(1.5 * math.pi) and cands["g"].view == 21
    # e due south and 2 m up (atan(2/3) = 33.7°): the upper row, heading 180° -> view 24 + 6
    assert cands["e"].heading == pytest.approx(math.pi) and cands["e"].elevation == pytest.approx(math.atan2(2, 3))
    assert cands["e"].view == 30 and cands["e"].distance == pytest.approx(math.sqrt(13))
    # and from e, a is straight north, 33.7° down: the lower row, view 0
    (back,) = g.candidates("e")
    assert (back.viewpoint, back.heading, back.view) == ("a", 0.0, 0) and back.elevation == pytest.approx(-math.atan2(2, 3))
    # c -> d is (-4, +2): heading 296.6° -> view 12 + 10 (300°); d -> c is 116.6° -> view 12 + 4 (120°).
    # Order: b (180°) is first listed in view 5 (150°), d in view 9 (270°); from d, c in view 3, a in view 5.
    assert [(c.viewpoint, c.view) for c in g.candidates("c")] == [("b", 18), ("d", 22)]
    assert [(c.viewpoint, c.view) for c in g.candidates("d")] == [("c", 16), ("a", 18)]
    assert g.candidates("i") == []
    # EnvDrop's order: by the first of views 0..35 that lists the neighbour (FOV ±40° about its heading)
    assert [c.viewpoint for c in g.candidates("a")] == ["d", "b", "e", "g"]
    assert g.candidates("a") == g.candidates("a") and g.candidates("a") is not g.candidates("a")  # cached, copied


def test_candidates_wrap_heading_and_elevation(conn):
    g = load_graph(conn / "wrap_connectivity.json")
    cands = g.candidates("o")
    # north at 350°: wrapped to −10° from view 12 (heading 0), not 20° from view 23 (330°)
    # east at 98°, 20° down: heading 90° (rel 8°), lower row (rel 10°) -> view 3
    # south at 200°, 10° up: heading 210° (rel −10°), horizon row -> view 12 + 7
    got = {c.viewpoint: c for c in cands}
    assert {vp: c.view for vp, c in got.items()} == {"north": 12, "east": 3, "south": 19}
    for vp, h, e in (("north", 350, 0), ("east", 98, -20), ("south", 200, 10)):
        assert got[vp].heading == pytest.approx(_deg(h)) and got[vp].elevation == pytest.approx(_deg(e), abs=1e-12)
        assert 0 <= got[vp].heading < 2 * math.pi
    # first listed in view 0 (north, 10° off), view 2 (east, 60°: 38° off), view 6 (south, 180°: 20° off)
    assert [c.viewpoint for c in cands] == ["north", "east", "south"]


def test_one_way_pair_is_rejected_as_officially(tmp_path):
    path = _write_scan(tmp_path, "oneway", LINE, LINE_EDGES[:2], one_way=[("p3", "p4")])
    with pytest.raises(ValueError, match="p3 -> p4 is unobstructed but not the way back"):
        load_graph(path)


def test_load_graphs(conn, tmp_path):
    graphs = load_graphs(conn)
    assert list(graphs) == ["line", "square", "wrap"] and all(isinstance(g, ScanGraph) for g in graphs.values())
    assert list(load_graphs(str(conn), ["wrap"])) == ["wrap"]
    with pytest.raises(ValueError, match=r"lacks 1 connectivity files \(nope_connectivity.json\)"):
        load_graphs(conn, ["wrap", "nope"])
    with pytest.raises(ValueError, match="has no \\*_connectivity.json files"):
        load_graphs(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x_connectivity.json").write_text('[{"image_id": "a"}]')
    with pytest.raises(ValueError, match="entry 0 lacks"):
        load_graphs(tmp_path / "bad")


def test_view_angles_and_angle_feature():
    assert view_angles(15) == (math.pi / 2, 0.0)
    assert view_angles(0) == (0.0, -math.pi / 6)
    h, e = view_angles(35)
    assert h == pytest.approx(_deg(330)) and e == pytest.approx(math.pi / 6)
    h, e = view_angles(np.arange(36))
    assert h.shape == e.shape == (36,) and np.allclose(h[12:24], np.arange(12) * _deg(30)) and np.allclose(e[::12], [-_deg(30), 0, _deg(30)])
    with pytest.raises(ValueError, match="0..35"):
        view_angles(36)

    f = angle_feature(math.pi / 2, 0.0)
    assert f.shape == (128,) and f.dtype == np.float32
    assert np.allclose(f, [1, 0, 0, 1] * 32, atol=1e-7)
    f = angle_feature(np.zeros((2, 3), np.float32), np.full((2, 3), -math.pi / 6), size=16)
    assert f.shape == (2, 3, 16) and np.allclose(f[1, 2], [0, 1, -0.5, math.cos(math.pi / 6)] * 4)
    f = angle_feature(np.array([0.0, math.pi]), 0.0, size=8)  # broadcasts
    assert f.shape == (2, 8) and np.allclose(f[1], [0, -1, 0, 1] * 2, atol=1e-7)
    with pytest.raises(ValueError, match="multiple of 4"):
        angle_feature(0.0, 0.0, size=10)


# ---------------------------------------------------------------------------------------------
# Metric
# ---------------------------------------------------------------------------------------------

LINE_SPLIT = [
    {"path_id": 1, "scan": "line", "path": ["p0", "p1", "p2", "p3"], "heading": 0.0, "instructions": ["go", "go on"], "distance": 6.0},
    {"path_id": 2, "scan": "line", "path": ["p5", "p4", "p3", "p2", "p1"], "heading": 1.0, "instructions": ["a", "b", "c"],
     "distance": 8.0},
]


def _results(trajs: dict[str, list[str]]):
    return [{"instr_id": i, "trajectory": [[vp, 0.0, 0.0] for vp in t]} for i, t in trajs.items()]


def _ids(split):
    return [(f"{it['path_id']}_{k}", it) for it in split for k in range(len(it["instructions"]))]


def test_shortest_path_agent_is_perfect_and_staying_put_fails(conn):
    graphs = load_graphs(conn)
    g = graphs["line"]
    best = evaluate(_results({i: g.path(it["path"][0], it["path"][-1]) for i, it in _ids(LINE_SPLIT)}), LINE_SPLIT, graphs)
    assert (best.success_rate, best.spl, best.nav_error, best.oracle_error, best.oracle_success_rate) == (1.0, 1.0, 0.0, 0.0, 1.0)
    assert best.episodes == 5 and best.length == pytest.approx((6 + 6 + 8 + 8 + 8) / 5) and best.steps == pytest.approx(18 / 5)
    stay = evaluate(_results({i: [it["path"][0]] for i, it in _ids(LINE_SPLIT)}), LINE_SPLIT, graphs)
    assert (stay.success_rate, stay.oracle_success_rate, stay.spl, stay.length, stay.steps) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert stay.nav_error == pytest.approx((6 + 6 + 8 + 8 + 8) / 5)


def test_hand_computed_mixed_case(conn, tmp_path):
    trajs = {
        "1_0": ["p0", "p1", "p2", "p3", "p4"],  # overshoots by 2 m: success, length 8, SPL 6/8
        "1_1": ["p0", "p1", "p1", "p0"],  # turns in place, goes back: NE 6, oracle 4 (≥ 3: no), length 4
        "2_0": ["p5", "p4", "p3", "p2"],  # stops 2 m short: success, length 6 < 8, SPL 1
        "2_1": ["p5", "p4", "p3", "p2", "p1", "p0"],  # 2 m past the goal: success, length 10, SPL 0.8
        "2_2": ["p5", "p4", "p3", "p2", "p1", "p2", "p3", "p4"],  # reaches the goal, walks away: oracle success only
        "99_0": ["p0"],  # not in the split: ignored, as officially
    }
    results = _results(trajs)
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "split.json").write_text(json.dumps(LINE_SPLIT))
    s = evaluate(tmp_path / "results.json", str(tmp_path / "split.json"), conn)  # files and a connectivity folder
    assert isinstance(s, NavScores) and s.episodes == 5 and list(s.per_episode) == ["1_0", "1_1", "2_0", "2_1", "2_2"]
    assert s.nav_error == pytest.approx(18 / 5) and s.oracle_error == pytest.approx(6 / 5)
    assert s.length == pytest.approx(42 / 5) and s.steps == pytest.approx(22 / 5)
    assert s.success_rate == pytest.approx(0.6) and s.oracle_success_rate == pytest.approx(0.8)
    assert s.spl == pytest.approx((0.75 + 0 + 1 + 0.8 + 0) / 5)
    assert s.per_episode["1_0"] == {"nav_error": 2.0, "oracle_error": 0.0, "length": 8.0, "shortest": 6.0, "steps": 4.0,
                                    "success": 1.0, "oracle_success": 1.0, "spl": 0.75}
    assert s.per_episode["1_1"]["oracle_error"] == 4.0 and s.per_episode["1_1"]["steps"] == 3.0
    assert s.to_json() == {"length": s.length, "nav_error": s.nav_error, "oracle_error": s.oracle_error,
                           "success_rate": 0.6, "oracle_success_rate": 0.8, "spl": s.spl, "steps": s.steps, "episodes": 5}
    json.dumps(s.to_json())
    table = format_scores(s)
    assert "5 instructions" in table and "success rate (%)       60.00" in table and "SPL (%)                51.00" in table
    assert evaluate(results, LINE_SPLIT, load_graphs(conn, ["line"])).to_json() == s.to_json()  # lists and graphs


def test_success_needs_error_below_three_metres(conn):
    assert ERROR_MARGIN == 3.0
    split = [{"path_id": 7, "scan": "square", "path": ["a", "b", "c"], "heading": 0.0, "instructions": ["x"]}]
    s = evaluate(_results({"7_0": ["a", "b"]}), split, conn)  # b is exactly 3 m from c
    assert s.nav_error == 3.0 and s.success_rate == 0.0 and s.oracle_success_rate == 0.0 and s.spl == 0.0


def test_input_errors(conn):
    graphs = load_graphs(conn)
    good = {i: it["path"] for i, it in _ids(LINE_SPLIT)}

    def check(trajs, match, split=LINE_SPLIT, results=None):
        with pytest.raises(ValueError, match=match):
            evaluate(results if results is not None else _results(trajs), split, graphs)

    check({k: v for k, v in good.items() if k != "2_1"}, r"results lack 1 of the split's 5 instructions \(e.g. '2_1'\)")
    check({**good, "1_0": ["p1", "p2", "p3"]}, "trajectory of 1_0 starts at p1, not at the episode's start p0")
    check({**good, "1_0": ["p0", "p2", "p3"]}, "moves from p0 to p2, which no edge of scan line joins")
    check({**good, "1_0": ["p0", "zz"]}, "'zz' is not an included viewpoint of scan line")
    check(None, "give one trajectory each", results=_results(good) + _results({"1_0": ["p0"]}))
    check(None, "empty trajectory", results=_results(good) + [{"instr_id": "1_9", "trajectory": []}])
    check(None, "trajectory step 5", results=[{"instr_id": "1_0", "trajectory": [5]}])
    check(None, "no string instr_id", results=[{"instr_id": 10, "trajectory": [["p0"]]}])
    test_split = [{"path_id": 3, "scan": "line", "path": ["p0"], "heading": 0.0, "instructions": ["x"]}]
    check({"3_0": ["p0"]}, "a test split cannot be scored", split=test_split)
    other = [{"path_id": 4, "scan": "mars", "path": ["p0", "p1"], "heading": 0.0, "instructions": ["x"]}]
    check({"4_0": ["p0"]}, r"no navigation graph for 1 scans of the split \(mars\)", split=other)
    with pytest.raises(ValueError, match="lacks 1 connectivity files"):
        evaluate(_results({"4_0": ["p0"]}), other, conn)


# ---------------------------------------------------------------------------------------------
# Real R2R data
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real():
    if not (R2R / "connectivity").is_dir():
        pytest.skip("../shared/data/r2r is absent")
    return load_graphs(R2R / "connectivity")


def _split(name):
    return json.loads((R2R / f"R2R_{name}.json").read_text())


def test_real_graphs_load(real):
    assert len(real) == 90
    assert sum(len(g) for g in real.values()) == 10567  # every included viewpoint
    assert sum(g.graph.number_of_edges() for g in real.values()) == 21468
    assert sum(1 for g in real.values() for vp in g.viewpoints if not g.neighbours(vp)) == 8  # no edge: not in the official graph
    assert sum(len(g.candidates(vp)) for g in real.values() for vp in g.viewpoints) == 2 * 21468  # every neighbour is a candidate
    # each candidate goes through the view nearest its direction: heading within 15°, nearest elevation row
    for g in list(real.values())[:10]:
        for vp in g.viewpoints:
            for c in g.candidates(vp):
                h, e = view_angles(c.view)
                assert abs(math.remainder(c.heading - h, 2 * math.pi)) <= _deg(15) + 1e-9
                assert c.view // 12 == int(np.argmin([abs(c.elevation - r) for r in (-_deg(30), 0.0, _deg(30))]))


def test_real_distances_match_official_construction(real):
    """R2R's load_nav_graphs rule, written out: an edge where unobstructed and both ends included,
    in file order, weighted by the distance of the pose translations summed x, y, z then rooted;
    networkx's Dijkstra on it gives the same distances and paths, to the bit."""
    for scan in ("2azQ1b91cZZ", "X7HyMhZNoso", "zsNo4HB9uLZ"):
        data = json.loads((R2R / "connectivity" / f"{scan}_connectivity.json").read_text())
        ref = nx.Graph()
        for item in data:
            for j, conn in enumerate(item["unobstructed"]):
                if item["included"] and conn and data[j]["included"]:
                    d = [item["pose"][k] - data[j]["pose"][k] for k in (3, 7, 11)]
                    ref.add_edge(item["image_id"], data[j]["image_id"], weight=(d[0] ** 2 + d[1] ** 2 + d[2] ** 2) ** 0.5)
        g = real[scan]
        assert set(map(frozenset, ref.edges)) == set(map(frozenset, g.graph.edges))
        for u, row in nx.all_pairs_dijkstra_path_length(ref):
            assert [g.dist[g.index[u], g.index[v]] for v in row] == list(row.values())
        u = next(iter(ref))
        assert all(g.path(u, v) == p for v, p in nx.single_source_dijkstra_path(ref, u).items())


def test_real_gt_paths_are_walks_and_oracles_score_perfectly(real):
    for name in ("val_seen", "val_unseen"):
        for it in _split(name):
            g = real[it["scan"]]
            assert all(g.graph.has_edge(a, b) for a, b in zip(it["path"][:-1], it["path"][1:])), it["path_id"]
    split = _split("val_unseen")
    ids = _ids(split)
    shortest = evaluate(_results({i: real[it["scan"]].path(it["path"][0], it["path"][-1]) for i, it in ids}), split, real)
    assert shortest.episodes == 2349
    assert (shortest.success_rate, shortest.spl, shortest.nav_error, shortest.oracle_success_rate) == (1.0, 1.0, 0.0, 1.0)
    # the ground-truth paths themselves: 8 of the 783 are longer than the shortest path on today's
    # graphs (scans QUCTc6BB5sX, X7HyMhZNoso), so their SPL is below 1
    gt = evaluate(_results({i: it["path"] for i, it in ids}), split, real)
    assert (gt.success_rate, gt.nav_error, gt.oracle_error) == (1.0, 0.0, 0.0)
    longer = {i for i, s in gt.per_episode.items() if s["spl"] < 1.0}
    assert len(longer) == 8 * 3 and gt.spl == pytest.approx(0.998436, abs=1e-6)
    # R2R paths are at least 5 m long, so nobody succeeds by staying at the start
    stay = evaluate(_results({i: [it["path"][0]] for i, it in ids}), split, real)
    assert stay.success_rate == 0.0 and stay.oracle_success_rate == 0.0 and stay.length == 0.0
    assert min(s["shortest"] for s in stay.per_episode.values()) > 5.0
