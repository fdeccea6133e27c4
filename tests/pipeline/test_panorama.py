"""Skybox -> 36 simulator views: geometry against scenes derived by hand, the analytic scenes
of `render_skybox`, no seams, the downsized-strip fallback, outputs, errors and the CLI.

The pose used throughout is Matterport-like and not the identity: a camera frame with x right,
y down, z forward (R maps camera y to world -z), turned 37 degrees about world z and moved.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from clipfeat.pipeline.panorama import (
    VFOV_DEG, VIEW_HEIGHT, VIEW_WIDTH, VIEWS, PanoramaError, load_pose, load_skybox, render_skybox, render_views,
    view_angles, view_rays,
)

CAMERA = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # camera axes (x right, y down, z forward) in the world


def _pose(deg: float = 37.0, t=(3.2, -1.5, 1.6)) -> np.ndarray:
    a = math.radians(deg)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rz @ CAMERA, t
    return pose


def _render(faces: np.ndarray, pose, width: int, height: int) -> np.ndarray:
    """[6, S, S, 3] uint8 faces -> [36, H, W, 3] int views."""
    t = torch.from_numpy(faces).permute(0, 3, 1, 2)[None]
    out = render_views(t, None if pose is None else pose[None], width=width, height=height)
    return out[0].permute(0, 2, 3, 1).numpy().astype(int)


def _ray(heading: float, elevation: float, row: float, col: float, width: int, height: int) -> np.ndarray:
    """World direction (z up) a pinhole camera at (heading clockwise from +y, elevation) sees at a
    pixel (row 0 on top), from first principles."""
    fwd = np.array([math.sin(heading) * math.cos(elevation), math.cos(heading) * math.cos(elevation), math.sin(elevation)])
    right = np.array([math.cos(heading), -math.sin(heading), 0.0])
    up = np.cross(right, fwd)
    tan_y = math.tan(math.radians(VFOV_DEG) / 2)
    x = ((2 * col + 1) / width - 1) * tan_y * width / height
    y = ((2 * row + 1) / height - 1) * tan_y
    w = fwd + x * right - y * up
    return w / np.linalg.norm(w)


def _pixel_of(heading: float, elevation: float, view: int, width: int, height: int) -> tuple[float, float]:
    """(row, col) where the world direction (heading, elevation) lands in view `view`."""
    h, e = view_angles(view)
    d = np.array([math.sin(heading) * math.cos(elevation), math.cos(heading) * math.cos(elevation), math.sin(elevation)])
    fwd = np.array([math.sin(h) * math.cos(e), math.cos(h) * math.cos(e), math.sin(e)])
    right = np.array([math.cos(h), -math.sin(h), 0.0])
    up = np.cross(right, fwd)
    tan_y = math.tan(math.radians(VFOV_DEG) / 2)
    x, y = d @ right / (d @ fwd), -(d @ up) / (d @ fwd)
    return (y / tan_y + 1) * height / 2 - 0.5, (x / (tan_y * width / height) + 1) * width / 2 - 0.5


def _marker_scene(markers: dict[tuple[float, float], tuple[int, int, int]], radius_deg: float = 4.0):
    """colour_fn: a grey background with coloured discs at (heading, elevation) in degrees."""
    centres = np.array([[math.sin(math.radians(h)) * math.cos(math.radians(e)), math.cos(math.radians(h)) * math.cos(math.radians(e)),
                         math.sin(math.radians(e))] for h, e in markers])
    colours = np.array(list(markers.values()), dtype=np.uint8)

    def colour(w: np.ndarray) -> np.ndarray:
        out = np.full(w.shape, 90, dtype=np.uint8)
        for c, rgb in zip(centres, colours):
            out[(w @ c) > math.cos(math.radians(radius_deg))] = rgb
        return out

    return colour


def _smooth(w: np.ndarray) -> np.ndarray:
    return np.clip(127.5 + 120.0 * w, 0, 255).astype(np.uint8)


def _centroid(view: np.ndarray, rgb) -> tuple[float, float] | None:
    rows, cols = np.nonzero((np.abs(view - np.array(rgb)) <= 40).all(-1))
    return (rows.mean(), cols.mean()) if rows.size else None


def test_view_numbering():
    assert VIEWS == 36 and (VIEW_WIDTH, VIEW_HEIGHT, VFOV_DEG) == (640, 480, 60.0)
    assert view_angles(0) == (0.0, math.radians(-30))
    assert view_angles(12) == (0.0, 0.0)
    h, e = view_angles(35)
    assert math.isclose(h, math.radians(330)) and math.isclose(e, math.radians(30))
    with pytest.raises(ValueError):
        view_angles(36)


@pytest.mark.parametrize("deg", [0.0, 37.0])
def test_hand_painted_faces(deg):
    """Expectations worked out by hand from the simulator's conventions, not by render_skybox.
    With camera x right, y down, z forward and the camera looking at heading -deg: skybox0 is the
    ceiling, 5 the floor, 3 is ahead (heading -deg), 4 to the camera's right (90 - deg), 1 behind
    (180 - deg), 2 to its left (270 - deg); each side face is an upright, unmirrored photo as seen
    from inside the cube. So at deg = 0 heading 0 looks at world +y (face 3), 90 at +x (face 4)."""
    s, w, h = 64, 160, 120
    flat = np.array([[250, 250, 250], [200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40], [10, 10, 10]], np.uint8)
    faces = np.broadcast_to(flat[:, None, None, :], (6, s, s, 3)).copy()
    pose = _pose(deg)
    views = _render(faces, pose, w, h)
    side = {(-deg) % 360: 3, (90 - deg) % 360: 4, (180 - deg) % 360: 1, (270 - deg) % 360: 2}
    for j in range(12):  # level views: the centre pixel shows the side face nearest in heading
        heading = 30.0 * j
        nearest = min(side, key=lambda c: abs((heading - c + 180) % 360 - 180))
        centre = views[12 + j, h // 2, w // 2]
        assert np.abs(centre - flat[side[nearest]]).max() <= 1, (heading, centre)
        # 30 degrees up, the top of the view shows the ceiling; 30 down, the bottom the floor
        assert np.abs(views[24 + j, 0, w // 2] - flat[0]).max() <= 1
        assert np.abs(views[j, h - 1, w // 2] - flat[5]).max() <= 1
        assert np.abs(views[24 + j, h - 1, w // 2] - flat[0]).max() > 100  # ... and not at the bottom
    # orientation within a face: paint face 3's quadrants; look 7 degrees right of its centre
    quad = faces.copy()
    quad[3, : s // 2, : s // 2], quad[3, : s // 2, s // 2:] = (255, 0, 0), (0, 255, 0)  # top-left red, top-right green
    quad[3, s // 2:, : s // 2], quad[3, s // 2:, s // 2:] = (0, 0, 255), (255, 255, 0)  # bottom-left blue, bottom-right yellow
    ahead = (-deg) % 360  # heading of face 3's centre
    view = 12 + round((ahead + 7) / 30) % 12  # a level view looking 0-15 degrees right of it
    v = _render(quad, pose, w, h)[view]
    for dh, de, rgb in ((-10, 12, [255, 0, 0]), (10, 12, [0, 255, 0]), (-10, -12, [0, 0, 255]), (10, -12, [255, 255, 0])):
        row, col = _pixel_of(math.radians(ahead + dh), math.radians(de), view, w, h)
        assert v[round(row), round(col)].tolist() == rgb, (dh, de)


def test_markers_land_where_the_view_looks():
    """Analytic scene (render_skybox): a disc at every view's (heading, elevation) shows at that
    view's centre; discs 12 degrees right of / above a view's centre show right of / above it."""
    w, h = 160, 120
    markers = {(30.0 * (i % 12), 30.0 * (i // 12 - 1)): (20 + 6 * i, 255 - 6 * i, (97 * i) % 256) for i in range(VIEWS)}
    views = _render(render_skybox(_marker_scene(markers), _pose(), 256), _pose(), w, h)
    for i, rgb in enumerate(markers.values()):
        assert np.abs(views[i, h // 2, w // 2] - rgb).max() <= 2, i
    side = {(42.0, 0.0): (255, 0, 0), (30.0, 12.0): (0, 255, 0), (120.0, -42.0): (0, 0, 255)}
    views = _render(render_skybox(_marker_scene(side), _pose(), 256), _pose(), w, h)
    for (hd, el), rgb, view in zip(side, side.values(), (13, 13, 4)):  # views at (30, 0), (30, 0), (120, -30)
        row, col = _centroid(views[view], rgb)
        want_row, want_col = _pixel_of(math.radians(hd), math.radians(el), view, w, h)
        assert abs(row - want_row) < 1.5 and abs(col - want_col) < 1.5, (view, row, col, want_row, want_col)
    assert _centroid(views[13], (255, 0, 0))[1] > w / 2 + 10  # right of centre: not mirrored
    assert _centroid(views[13], (0, 255, 0))[0] < h / 2 - 10  # above centre: not upside down
    assert _centroid(views[4], (0, 0, 255))[0] > h / 2 + 10  # 12 below a view looking 30 down


def test_headings_wrap_from_330_to_0():
    """A disc at heading 345 (15 degrees from both) shows in views 11 and 0 (30 down) and 23 and 12
    (level), mirror-placed about the centre; the horizontal field of view (75 degrees) overlaps."""
    w, h = 160, 120
    scene = {(345.0, -30.0): (255, 0, 0), (345.0, 0.0): (0, 255, 0)}
    views = _render(render_skybox(_marker_scene(scene), _pose(), 256), _pose(), w, h)
    for (a, b), ((hd, el), rgb) in zip(((11, 0), (23, 12)), scene.items()):
        (ra, ca), (rb, cb) = _centroid(views[a], rgb), _centroid(views[b], rgb)
        assert ca > w / 2 + 10 and cb < w / 2 - 10  # right part of the earlier view, left part of the later one
        assert abs((ca - (w / 2 - 0.5)) + (cb - (w / 2 - 0.5))) < 1.0 and abs(ra - rb) < 1.0
        assert abs(ca - _pixel_of(math.radians(hd), math.radians(el), a, w, h)[1]) < 1.5


def test_smooth_scene_matches_and_has_no_seams():
    """A smooth colour field of the world direction renders as that field at every pixel (the
    rays computed here from first principles) and smoothly across face edges; a face flipped
    the wrong way round shows up as a seam, so the check can fail."""
    w, h, s = 128, 96, 192
    faces = render_skybox(_smooth, _pose(), s)
    views = _render(faces, _pose(), w, h)
    for i in range(VIEWS):
        hd, el = view_angles(i)
        for row, col in ((0, 0), (h - 1, w - 1), (h // 3, 2 * w // 3), (h - 1, 0), (0, w - 1)):
            assert np.abs(views[i, row, col] - _smooth(_ray(hd, el, row, col, w, h))).max() <= 2, (i, row, col)
    assert np.abs(np.diff(views, axis=1)).max() <= 3 and np.abs(np.diff(views, axis=2)).max() <= 3
    flipped = faces.copy()
    flipped[3] = flipped[3][:, ::-1]
    bad = _render(flipped, _pose(), w, h)
    assert max(np.abs(np.diff(bad, axis=1)).max(), np.abs(np.diff(bad, axis=2)).max()) > 20


def test_view_rays():
    w, h = 65, 49  # odd: a pixel sits exactly on the optical axis
    pose = _pose()
    world = view_rays(None, width=w, height=h, frame="world").numpy()
    cube = view_rays(pose, width=w, height=h).numpy()
    assert world.shape == cube.shape == (VIEWS, h, w, 3) and world.dtype == np.float32
    assert np.allclose(np.linalg.norm(cube, axis=-1), 1, atol=1e-6)
    for i in (0, 17, 35):
        hd, el = view_angles(i)
        assert np.allclose(world[i, h // 2, w // 2], [math.sin(hd) * math.cos(el), math.cos(hd) * math.cos(el), math.sin(el)], atol=1e-6)
        assert np.allclose(world[i, 5, 60], _ray(hd, el, 5, 60, w, h), atol=1e-6)
    assert np.allclose(cube, -(world @ pose[:3, :3]), atol=1e-5)  # d = -R^T w
    one = view_rays(None, width=8, height=6, headings=[0.5], elevations=[0.1], frame="world")
    assert one.shape == (1, 6, 8, 3)


def test_outputs_rgb_uint8_batched_and_cached():
    s = 32
    red = np.zeros((6, s, s, 3), np.uint8)
    red[..., 0] = 255
    out = render_views(torch.from_numpy(red).permute(0, 3, 1, 2)[None], None)
    assert out.shape == (1, VIEWS, 3, VIEW_HEIGHT, VIEW_WIDTH) and out.dtype == torch.uint8
    assert (out[:, :, 0] == 255).all() and (out[:, :, 1:] == 0).all()  # RGB, not the simulator's BGR
    faces = np.stack([render_skybox(_smooth, _pose(deg), 48) for deg in (37.0, -80.0)])  # [2, 6, S, S, 3]
    poses = np.stack([_pose(37.0), _pose(-80.0)])
    t = torch.from_numpy(faces).permute(0, 1, 4, 2, 3)
    both = render_views(t, poses, width=64, height=48)
    assert both.shape == (2, VIEWS, 3, 48, 64)
    for i in range(2):
        one = render_views(t[i:i + 1], poses[i:i + 1], width=64, height=48)  # pose met again: the cached grid
        assert torch.equal(one[0], both[i])
    assert torch.equal(render_views(t.float(), torch.from_numpy(poses), width=64, height=48), both)  # float faces, torch poses
    three = render_views(t[:1].expand(3, -1, -1, -1, -1), None, width=64, height=48)  # one grid for three identical poses
    assert torch.equal(three[0], three[2]) and torch.equal(three[0], render_views(t[:1], None, width=64, height=48)[0])
    with pytest.raises(ValueError, match="one"):
        render_views(t, poses[:1], width=64, height=48)
    with pytest.raises(PanoramaError, match="rotation"):
        render_views(t[:1], [np.diag([2.0, 1, 1, 1])], width=64, height=48)


def _write_faces(folder, vp: str, faces: np.ndarray, *, sami: bool = True, small: int | None = None) -> None:
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    if sami:
        for i, f in enumerate(faces):
            Image.fromarray(f).save(os.path.join(folder, f"{vp}_skybox{i}_sami.jpg"), quality=95)
    if small:
        strip = Image.new("RGB", (6 * small, small))
        for i, f in enumerate(faces):
            strip.paste(Image.fromarray(f).resize((small, small), Image.Resampling.BILINEAR, reducing_gap=2.0), (i * small, 0))
        strip.save(os.path.join(folder, f"{vp}_skybox_small.jpg"), quality=95)


def test_small_strip_gives_the_same_views(tmp_path):
    scene = _marker_scene({(30.0, 0.0): (255, 0, 0), (200.0, -30.0): (0, 0, 255)}, radius_deg=10)
    faces = render_skybox(lambda w: (_smooth(w).astype(int) // 2 + scene(w) // 2).astype(np.uint8), _pose(), 256)
    _write_faces(tmp_path / "a", "vp", faces, small=128)
    _write_faces(tmp_path / "b", "vp", faces, sami=False, small=128)
    big, small = load_skybox(tmp_path / "a", "vp"), load_skybox(tmp_path / "b", "vp")
    assert big.shape == (6, 256, 256, 3) and small.shape == (6, 128, 128, 3) and big.dtype == np.uint8  # _sami first
    a, b = _render(big, _pose(), 160, 120), _render(small, _pose(), 160, 120)
    assert np.abs(a - b).mean() < 1.5 and np.percentile(np.abs(a - b), 99) < 20


def test_missing_and_bad_skyboxes(tmp_path):
    with pytest.raises(PanoramaError, match=r"missing vp_skybox\{0,1,2,3,4,5\}_sami.jpg and vp_skybox_small.jpg"):
        load_skybox(tmp_path, "vp")
    faces = np.zeros((6, 16, 16, 3), np.uint8)
    _write_faces(tmp_path, "vp", faces)
    os.remove(tmp_path / "vp_skybox2_sami.jpg")
    with pytest.raises(PanoramaError, match="missing vp_skybox2_sami.jpg and"):
        load_skybox(tmp_path, "vp")
    (tmp_path / "vp_skybox_small.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(PanoramaError, match="vp_skybox_small.jpg: not an image"):
        load_skybox(tmp_path, "vp")


def _matterport_root(root, scan: str, vp: str, pose: np.ndarray, face: int = 32) -> None:
    import json

    faces = render_skybox(_marker_scene({(0.0, 0.0): (255, 0, 0)}, radius_deg=10), pose, face)
    _write_faces(root / "v1" / "scans" / scan / "matterport_skybox_images", vp, faces)
    os.makedirs(root / "connectivity", exist_ok=True)
    nodes = [{"image_id": vp, "pose": pose.reshape(-1).tolist(), "included": True, "unobstructed": [False]}]
    (root / "connectivity" / f"{scan}_connectivity.json").write_text(json.dumps(nodes))


def test_load_pose(tmp_path):
    _matterport_root(tmp_path, "scanA", "vp1", _pose())
    path = tmp_path / "connectivity" / "scanA_connectivity.json"
    assert np.allclose(load_pose(path, "vp1"), _pose())
    with pytest.raises(PanoramaError, match="viewpoint vp9 is not in"):
        load_pose(path, "vp9")
    with pytest.raises(PanoramaError, match="not found"):
        load_pose(tmp_path / "nope.json", "vp1")


def test_cli_render_views(tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from clipfeat.pipeline.cli import cli

    _matterport_root(tmp_path / "mp", "scanA", "vp1", _pose())
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["render-views", "--root", str(tmp_path / "mp"), "--scan", "scanA", "--viewpoint", "vp1",
                                   "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    names = sorted(os.listdir(out))
    assert names == sorted([f"scanA_vp1_{i:02d}.jpg" for i in range(VIEWS)] + ["scanA_vp1_sheet.png"])
    with Image.open(out / "scanA_vp1_12.jpg") as im:
        assert im.size == (640, 480) and im.mode == "RGB"
        assert np.abs(np.asarray(im, dtype=int)[240, 320] - [255, 0, 0]).max() < 30  # heading 0, level: the red disc
    with Image.open(out / "scanA_vp1_sheet.png") as sheet:
        assert sheet.size == (12 * 160, 3 * 120)
        assert np.abs(np.asarray(sheet, dtype=int)[180, 80] - [255, 0, 0]).max() < 40  # middle row, first column
    for args, needle in (
        (["--viewpoint", "vp9"], "viewpoint vp9 is not in"),
        (["--scan", "scanB"], "no skybox folder"),
        (["--connectivity", str(tmp_path)], "no connectivity file"),
    ):
        base = {"--root": str(tmp_path / "mp"), "--scan": "scanA", "--viewpoint": "vp1", "--out": str(out)}
        base.update(dict(zip(args[::2], args[1::2])))
        res = CliRunner().invoke(cli, ["render-views", *[x for kv in base.items() for x in kv]])
        assert res.exit_code == 2 and needle in res.output, res.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    faces = render_skybox(_smooth, _pose(), 256)
    t = torch.from_numpy(faces).permute(0, 3, 1, 2)[None]
    cpu = render_views(t, _pose()[None], width=160, height=120)
    gpu = render_views(t.cuda(), _pose()[None], width=160, height=120)
    assert gpu.device.type == "cuda" and (gpu.cpu().int() - cpu.int()).abs().max() <= 1
