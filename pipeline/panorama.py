"""Matterport skyboxes -> the Matterport3D simulator's 36 discretised views, without the simulator.

R2R-style navigation features are CLIP features of 36 views per viewpoint as MatterSim renders
them: 640x480, 60 degree vertical field of view, view `ix` at heading (ix % 12) * 30 degrees and
elevation (ix // 12 - 1) * 30 degrees. Building the simulator (OpenGL, OSMesa/EGL, OpenCV) just
to resample six JPEGs is a heavy dependency, so this module reproduces its cube-map lookup in
torch: one batched bilinear `grid_sample` for many viewpoints x 36 views, on the faces' device.

    faces = load_skybox(".../matterport_skybox_images", viewpoint)     # [6, S, S, 3] uint8 RGB
    views = render_views(torch.from_numpy(faces).permute(0, 3, 1, 2)[None], pose[None])
    # views: [1, 36, 3, 480, 640] uint8 RGB (the simulator returns BGR; this returns RGB)

Conventions, as read from peteanderson80/Matterport3DSimulator (master):

* Face order (src/lib/NavGraph.cpp, `Location::loadCubemapImages`, `loadCubemapTextures`):
  `{vp}_skybox_small.jpg` is the six faces side by side, strip position i = skybox i (the
  older per-face loader read `{vp}_skybox{i}_sami.jpg` into the same targets). They are
  uploaded with `glTexImage2D` as GL_TEXTURE_CUBE_MAP_ +X <- skybox2, -X <- skybox4,
  +Y <- skybox0, -Y <- skybox5, +Z <- skybox1, -Z <- skybox3, image rows top first, no flips,
  GL_LINEAR filtering and GL_CLAMP_TO_EDGE (seamless cube maps are not enabled).
* Face lookup (OpenGL 4.2 spec, section 3.10.10, table 3.23): the major axis of the
  direction r picks the face; (s, t) = ((sc / |ma| + 1) / 2, (tc / |ma| + 1) / 2) with
  +X: sc=-rz tc=-ry; -X: sc=rz tc=-ry; +Y: sc=rx tc=rz; -Y: sc=rx tc=-rz; +Z: sc=rx tc=-ry;
  -Z: sc=-rx tc=-ry. s runs along an image row (column = s * S), t down the rows (row = t * S,
  row 0 = the JPEG's top row, the first row uploaded).
* Pose (NavGraph.cpp, `Location::Location`): the connectivity JSON's `pose` is row-major 4x4
  camera-to-world (z up, metres); the simulator keeps its rotation R (translation removed) and
  uses no other axis conversion. In the connectivity files R's second column is close to
  (0, 0, -1) (Matterport cameras: x right, y down, z forward), so by the formula below skybox0
  (+Y) shows -R (0, 1, 0), which is up: the ceiling, and skybox5 the floor.
* Rendering (src/lib/MatterSim.cpp, `Simulator::renderScene`; shaders src/lib/vertex.sh and
  fragment.sh): the cube's own vertex coordinates are the texture coordinates (texCoord =
  vertex); ModelView = View * R * Scale with View = Rx(-pi/2 + elevation) * Rz(pi + heading)
  (glm::rotate post-multiplies); glm::perspective(vfov, width / height); and `glReadPixels`
  copies the framebuffer bottom row first into the returned image, with no flip afterwards.
  Composing those: the output pixel (row r from the top, column c) of a view at heading h,
  elevation e samples the cube map at

      d = -R^T w,   w = f + x * right - y * up,
      x = ((2c + 1) / W - 1) * tan(vfov / 2) * W / H,   y = ((2r + 1) / H - 1) * tan(vfov / 2),
      f = (sin h cos e, cos h cos e, sin e),  right = (cos h, -sin h, 0),
      up = (-sin h sin e, -cos h sin e, cos e)

  i.e. w is the world direction a pinhole camera looking at heading h (clockwise from world +y,
  as `populateNavigable` measures it: heading 90 degrees looks along +x) and elevation e sees
  at that pixel, upright and unmirrored, and a skybox texel at cube direction d shows the world
  direction -R d. The minus sign is the cube map's left-handed face layout and the bottom-up
  read-back together: each horizontal face is then an ordinary upright photo seen from inside,
  faces 1 -> 2 -> 3 -> 4 turn clockwise (heading +90 degrees each), and skybox1's top edge meets
  skybox0. (An earlier version rotated R by 180 degrees about x and flipped the read-back with
  cv::flip; composed the same way that shows world R Rx(pi) d at texel d, the mirror image of the
  above. The repository's issue #1 "Images are mirrored" is presumably that; this module follows
  the current code.)

Edges: each face is sampled on its own with its coordinates clamped to the centres of its outer
texels, which is exactly GL_CLAMP_TO_EDGE on a non-seamless cube map, what the simulator does;
real faces agree along shared edges, so no seam shows (the tests check a smooth field). Pixels
are 8-bit: the bilinear result is rounded half up (GL's own rounding may differ by one level).

`render_skybox` is the inverse, for tests and synthetic data: it paints faces from a function of
world directions under the same convention.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from clipfeat.common import (
    HEADING_COUNT, VFOV, VFOV_DEG, VIEW_ELEVATIONS, VIEW_HEADINGS, VIEW_HEIGHT, VIEW_WIDTH, VIEWS, ClipfeatError,
    ConnectivityError, read_connectivity, view_angles,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "VIEWS", "HEADING_COUNT", "VIEW_WIDTH", "VIEW_HEIGHT", "VFOV_DEG", "VFOV", "SKYBOX_OF_GL_FACE", "PanoramaError",
    "view_angles", "load_skybox", "skybox_faces", "load_pose", "view_rays", "render_views", "render_skybox",
]

# VIEWS, HEADING_COUNT, VIEW_WIDTH, VIEW_HEIGHT, VFOV_DEG, VFOV and view_angles: the simulator's
# view geometry, defined once in clipfeat.common (the trainers navigate with the same views).

# Skybox index uploaded to GL_TEXTURE_CUBE_MAP_{+X, -X, +Y, -Y, +Z, -Z} (NavGraph.cpp). The
# permutation is its own inverse: it also gives the GL face of skybox 0..5.
SKYBOX_OF_GL_FACE = (2, 4, 0, 5, 1, 3)

_GRID_CACHE_BYTES = 256 << 20  # sampling grids kept per (pose, size, device): 88 MiB each at 640x480


class PanoramaError(ClipfeatError):
    """Skybox files or a pose that cannot be used (missing, unreadable, wrong shape)."""


# --- files -----------------------------------------------------------------------------------


def _read_rgb(path: str) -> np.ndarray:
    from .images import ImageError, load_image

    try:
        img, _, _ = load_image(path)
    except ImageError as e:
        raise PanoramaError(f"{path}: {e}") from None
    return np.asarray(img, dtype=np.uint8)


def load_skybox(folder: str | os.PathLike, viewpoint: str) -> np.ndarray:
    """The six faces of a viewpoint -> uint8 [6, S, S, 3] RGB, in skybox order 0..5.

    Reads `{viewpoint}_skybox{0..5}_sami.jpg` (Matterport's 1024 px faces), else the
    simulator's downsized `{viewpoint}_skybox_small.jpg` (the six faces side by side).
    """
    folder = os.fspath(folder)
    names = [f"{viewpoint}_skybox{i}_sami.jpg" for i in range(6)]
    paths = [os.path.join(folder, n) for n in names]
    present = [os.path.isfile(p) for p in paths]
    if all(present):
        return skybox_faces([_read_rgb(p) for p in paths], f"{viewpoint} in {folder}")
    small = os.path.join(folder, f"{viewpoint}_skybox_small.jpg")
    if os.path.isfile(small):
        return skybox_faces([_read_rgb(small)], small)
    missing = "".join(str(i) for i, p in enumerate(present) if not p)
    which = f"{viewpoint}_skybox{missing}_sami.jpg" if len(missing) == 1 else f"{viewpoint}_skybox{{{','.join(missing)}}}_sami.jpg"
    raise PanoramaError(f"no skybox for viewpoint {viewpoint} in {folder}: missing {which} and {viewpoint}_skybox_small.jpg "
                        "(unzip the scan's matterport_skybox_images.zip there)")


def skybox_faces(images: Sequence[np.ndarray], where: str) -> np.ndarray:
    """Decoded skybox images -> uint8 [6, S, S, 3]: six square faces of one size (skybox order),
    or one strip of the six side by side (the simulator's `_skybox_small.jpg`)."""
    if len(images) == 1:
        strip = images[0]
        h, w = strip.shape[:2]
        if w != 6 * h:
            raise PanoramaError(f"{where}: {w}x{h} is not a skybox strip (six square faces side by side, width = 6 x height)")
        return np.ascontiguousarray(strip.reshape(h, 6, h, 3).transpose(1, 0, 2, 3))  # [S, 6S, 3] -> [6, S, S, 3]
    sizes = {f.shape[:2] for f in images}
    if len(images) != 6 or len(sizes) != 1 or images[0].shape[0] != images[0].shape[1]:
        shown = ", ".join(f"{f.shape[1]}x{f.shape[0]}" for f in images)
        raise PanoramaError(f"{where}: skybox faces must be six squares of one size; got {shown}")
    return np.stack(images)


def load_pose(connectivity: str | os.PathLike, viewpoint: str) -> np.ndarray:
    """A viewpoint's camera-to-world pose, float64 [4, 4], from `{scan}_connectivity.json`
    (its `pose` is 16 numbers, row-major; the file is read by `clipfeat.common.read_connectivity`)."""
    path = os.fspath(connectivity)
    try:
        entries = read_connectivity(path)
    except FileNotFoundError:
        raise PanoramaError(f"connectivity file {path} not found; pass the folder that holds {{scan}}_connectivity.json") from None
    except ConnectivityError as e:
        raise PanoramaError(str(e)) from None
    for vp in entries:
        if vp.id == viewpoint:
            return np.asarray(vp.pose, dtype=np.float64).reshape(4, 4)
    raise PanoramaError(f"viewpoint {viewpoint} is not in {path}; check --viewpoint (an image_id of that scan)")


# --- geometry --------------------------------------------------------------------------------


def _rotation(pose) -> np.ndarray:
    """[4, 4] or [3, 3] pose (or None = identity) -> float64 [3, 3] rotation."""
    if pose is None:
        return np.eye(3)
    m = np.asarray(pose.detach().cpu() if hasattr(pose, "detach") else pose, dtype=np.float64)
    if m.shape not in ((4, 4), (3, 3)) or not np.isfinite(m).all():
        raise PanoramaError(f"a pose must be a finite 4x4 (or 3x3) camera-to-world matrix; got shape {m.shape}")
    rot = m[:3, :3]
    if np.abs(rot @ rot.T - np.eye(3)).max() > 1e-2:
        raise PanoramaError("a pose's 3x3 block must be a rotation (orthonormal); pass the connectivity `pose` as reshape(4, 4)")
    return rot


def _view_bases(headings: Sequence[float], elevations: Sequence[float]):
    """World forward, right and up of each view: float64 [V, 3] each (z up, heading clockwise from +y)."""
    h, e = np.asarray(headings, dtype=np.float64), np.asarray(elevations, dtype=np.float64)
    if h.shape != e.shape or h.ndim != 1:
        raise ValueError("headings and elevations must be 1-D sequences of the same length")
    fwd = np.stack([np.sin(h) * np.cos(e), np.cos(h) * np.cos(e), np.sin(e)], -1)
    right = np.stack([np.cos(h), -np.sin(h), np.zeros_like(h)], -1)
    up = np.stack([-np.sin(h) * np.sin(e), -np.cos(h) * np.sin(e), np.cos(e)], -1)
    return fwd, right, up


def _pixel_planes(width: int, height: int, vfov_deg: float):
    """Image-plane offsets at unit focal length: x [W] to the right, y [H] downwards (pixel centres)."""
    tan_y = math.tan(math.radians(vfov_deg) / 2)
    x = ((2 * np.arange(width) + 1) / width - 1) * tan_y * width / height
    y = ((2 * np.arange(height) + 1) / height - 1) * tan_y
    return x, y


def _ray_terms(rot: np.ndarray | None, headings, elevations, width: int, height: int, vfov_deg: float):
    """Per-view row and column terms whose broadcast sum is each pixel's direction:
    dir[v, r, c, k] = row[k][v, c] + col[k][v, r]  (float64; row [V, W], col [V, H] per axis k).
    rot=None: world directions w; else cube-frame lookup directions d = -rot^T w."""
    fwd, right, up = _view_bases(headings, elevations)
    if rot is not None:  # (-R^T v) for each row vector v is -(v @ R)
        fwd, right, up = -(fwd @ rot), -(right @ rot), -(up @ rot)
    x, y = _pixel_planes(width, height, vfov_deg)
    row = [fwd[:, k, None] + right[:, k, None] * x[None, :] for k in range(3)]
    col = [-up[:, k, None] * y[None, :] for k in range(3)]
    return row, col


def view_rays(pose=None, *, width: int = VIEW_WIDTH, height: int = VIEW_HEIGHT, vfov_deg: float = VFOV_DEG,
              headings: Sequence[float] | None = None, elevations: Sequence[float] | None = None,
              frame: str = "cube", device=None) -> "torch.Tensor":
    """Unit directions of every pixel of every view: float32 [V, H, W, 3] (V = 36 by default).

    frame="cube" (default): the cube-map lookup direction d = -R^T w that the simulator samples,
    with R the pose's rotation (pose None = identity). frame="world": the world direction w the
    pixel shows (z up), which does not depend on the pose. headings/elevations: radians; the
    36 discretised views by default.
    """
    import torch

    if frame not in ("cube", "world"):
        raise ValueError(f"frame must be 'cube' or 'world', not {frame!r}")
    if headings is None and elevations is None:
        headings, elevations = VIEW_HEADINGS, VIEW_ELEVATIONS
    elif headings is None or elevations is None:
        raise ValueError("pass both headings and elevations, or neither")
    row, col = _ray_terms(_rotation(pose) if frame == "cube" else None, headings, elevations, width, height, vfov_deg)
    d = np.stack([row[k][:, None, :] + col[k][:, :, None] for k in range(3)], -1)  # [V, H, W, 3]
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return torch.from_numpy(d.astype(np.float32)).to(device or "cpu")


class _Scratch:
    """Temporaries of one `_Lookup.fill` call for v views of H x W pixels, reused chunk after
    chunk: on CPU fresh multi-megabyte allocations page-fault on every use, which costs more
    than the arithmetic itself."""

    def __init__(self, v: int, height: int, width: int, device) -> None:
        import torch

        f32 = dict(dtype=torch.float32, device=device)
        self.shape = (v, height, width)
        self.d = torch.empty(3, v, height, width, **f32)  # cube direction (x, y, z)
        self.a = torch.empty(3, v, height, width, **f32)  # its absolute value
        self.m, self.am, self.num, self.den = (torch.empty(v, height, width, **f32) for _ in range(4))
        self.xm, self.ym, self.b = (torch.empty(v, height, width, dtype=torch.bool, device=device) for _ in range(3))
        self.k = torch.empty(v, height, width, dtype=torch.uint8, device=device)


class _Lookup:
    """The simulator's cube-map lookup for one pose, as grid_sample coordinates into the atlas
    (the six faces stacked vertically in GL order +X, -X, +Y, -Y, +Z, -Z; align_corners=False)."""

    def __init__(self, rot: np.ndarray, width: int, height: int, vfov_deg: float, face_size: int, device) -> None:
        import torch

        row, col = _ray_terms(rot, VIEW_HEADINGS, VIEW_ELEVATIONS, width, height, vfov_deg)
        self.row = torch.from_numpy(np.stack(row).astype(np.float32)).to(device)  # [3, V, W]
        self.col = torch.from_numpy(np.stack(col).astype(np.float32)).to(device)  # [3, V, H]
        self.lim = 1.0 - 1.0 / face_size  # GL_CLAMP_TO_EDGE: face-local coordinate of the outer texel centres

    def fill(self, out: "torch.Tensor", v0: int, s: _Scratch) -> None:
        """Write views v0 .. v0 + v - 1 into out [v, H, W, 2] (v, H, W: the scratch's shape)."""
        import torch

        v1, lim = v0 + s.shape[0], self.lim
        d, a, m, am, num, den, xm, ym, b, k = s.d, s.a, s.m, s.am, s.num, s.den, s.xm, s.ym, s.b, s.k
        torch.add(self.row[:, v0:v1, None, :], self.col[:, v0:v1, :, None], out=d)  # [3, v, H, W]
        torch.abs(d, out=a)
        (dx, dy, dz), (ax, ay, az) = d, a
        torch.ge(ax, ay, out=xm)
        torch.ge(ax, az, out=b)
        xm.logical_and_(b)  # major axis x
        torch.ge(ay, az, out=ym)
        torch.gt(ym, xm, out=ym)  # major axis y (and not x); else z
        torch.where(xm, dx, torch.where(ym, dy, dz, out=m), out=m)  # signed major component
        torch.abs(m, out=am)
        # face-local (s, t) in [-1, 1] from the GL table, the major component's sign folded into m:
        # x-major (-dz / m, -dy / am); y-major (dx / am, dz / m); z-major (dx / m, -dy / am)
        torch.where(xm, torch.neg(dz, out=num), dx, out=num)
        torch.div(num, torch.where(ym, am, m, out=den), out=out[..., 0]).clamp_(-lim, lim)
        torch.where(ym, dz, torch.neg(dy, out=num), out=num)
        num.div_(torch.where(ym, m, am, out=den)).clamp_(-lim, lim)
        # atlas row of GL face k = 2 * axis + (m < 0): (t + 2k + 1) / 6 - 1 = (t + 4 axis + 2 (m < 0) - 5) / 6
        u8 = torch.uint8
        torch.logical_or(xm, ym, out=b).logical_not_()  # major axis z
        torch.add(ym.view(u8), b.view(u8), alpha=2, out=k)  # axis: 0 x, 1 y, 2 z
        torch.add(torch.lt(m, 0, out=b).view(u8), k, alpha=2, out=k)  # GL face 2 * axis + (m < 0)
        torch.div(num.add_(k, alpha=2.0).sub_(5.0), 6.0, out=out[..., 1])


class _GridCache:
    """Full sampling grids [36 * H, W, 2] of poses met again (the same viewpoint rendered twice,
    data without poses), least recently used dropped first. A pose met once is computed view by
    view, fused with the sampling, and never stored: a pipeline renders each viewpoint once."""

    def __init__(self, max_bytes: int, remember: int = 64) -> None:
        self.max_bytes = max_bytes
        self.grids: OrderedDict = OrderedDict()
        self.seen: OrderedDict = OrderedDict()  # keys of recent poses, to spot a second use
        self.remember = remember
        self.lock = threading.Lock()  # render_views may run in several threads (grids are read-only)

    def get(self, key, lookup: Callable[[], _Lookup], *, shape: tuple[int, int, int], keep: set):
        """The stored grid of `key`; else a new stored one if the pose was met before and fits
        without dropping the grids of `keep` (this call's poses); else the lookup itself."""
        import torch

        v, h, w = shape
        size = v * h * w * 2 * 4
        with self.lock:
            grid = self.grids.get(key)
            if grid is not None:
                self.grids.move_to_end(key)
                return grid
            again = key in self.seen
            self.seen[key] = None
            self.seen.move_to_end(key)
            while len(self.seen) > self.remember:
                self.seen.popitem(last=False)
            droppable = sum(g.numel() * 4 for k, g in self.grids.items() if k not in keep)
            used = sum(g.numel() * 4 for g in self.grids.values())
            store = again and used - droppable + size <= self.max_bytes
        lk = lookup()
        if not store:
            return lk
        dev = lk.row.device
        grid = torch.empty(v * h, w, 2, dtype=torch.float32, device=dev)
        n = _views_per_step(1, w, h, dev)
        scratch = _Scratch(n, h, w, dev)
        for v0 in range(0, v, n):
            lk.fill(grid[v0 * h:(v0 + n) * h].view(n, h, w, 2), v0, scratch)
        with self.lock:
            self.grids[key] = grid
            for k in [k for k in self.grids if k not in keep]:  # oldest first
                if sum(g.numel() * 4 for g in self.grids.values()) <= self.max_bytes:
                    break
                del self.grids[k]
        return grid


_grids = _GridCache(_GRID_CACHE_BYTES)
_local = threading.local()  # per-thread CPU buffers, see _workspace


def _views_per_step(batch: int, width: int, height: int, device) -> int:
    """Views sampled per grid_sample call: a divisor of 36. On CPU a few at a time, so that the
    grid and output chunks stay small (cache-resident, reused allocations); on a GPU all 36."""
    budget = 1 << (27 if device.type == "cuda" else 20)  # output pixels per call
    return max([n for n in (1, 2, 3, 4, 6, 9, 12, 18, 36) if batch * n * width * height <= budget] or [1])


def _workspace(name: str, shape: tuple[int, ...], device) -> "torch.Tensor":
    """A float32 buffer reused by this thread's later calls on CPU (up to 1 GiB each): a fresh
    allocation of hundreds of megabytes page-faults in on every call. A GPU's caching
    allocator already reuses memory, so there it is a plain allocation."""
    import torch

    if device.type != "cpu":
        return torch.empty(shape, dtype=torch.float32, device=device)
    bufs = _local.__dict__.setdefault("bufs", {})
    buf = bufs.get(name)
    if buf is None or tuple(buf.shape) != tuple(shape):
        buf = torch.empty(shape, dtype=torch.float32)
        bufs[name] = buf if buf.numel() * 4 <= 1 << 30 else None
    return buf


def render_views(faces: "torch.Tensor", poses=None, *, width: int = VIEW_WIDTH, height: int = VIEW_HEIGHT,
                 vfov_deg: float = VFOV_DEG) -> "torch.Tensor":
    """Skyboxes -> the 36 discretised views of each: uint8 [B, 36, 3, H, W] RGB, on faces' device.

    faces: [B, 6, 3, S, S] in skybox order 0..5, uint8 or float on the 0-255 scale (RGB in, RGB out).
    poses: [B, 4, 4] camera-to-world (numpy or torch; only the rotation matters), or None for
    identity. View ix has heading (ix % 12) * 30 and elevation (ix // 12 - 1) * 30 degrees.
    The cube lookup and the bilinear sampling run batched on the faces' device, a few views at a
    time on CPU. Identical poses in a batch share one sampling grid; the grid of a pose met again
    in a later call (the same viewpoint, or `poses=None`) is kept, up to 256 MiB of grids. On CPU
    the float atlas (B x 72 MiB for 1024 px faces) stays allocated for the thread's next call.
    """
    import torch
    import torch.nn.functional as F

    if not isinstance(faces, torch.Tensor):
        faces = torch.as_tensor(faces)
    if faces.ndim != 5 or faces.shape[1:3] != (6, 3) or faces.shape[3] != faces.shape[4]:
        raise ValueError(f"faces must be [B, 6, 3, S, S] (six square RGB faces per viewpoint); got {tuple(faces.shape)}")
    b, s, dev = faces.shape[0], faces.shape[-1], faces.device
    if poses is None:
        rots = [np.eye(3)] * b
    else:
        if len(poses) != b:
            raise ValueError(f"{len(poses)} poses for {b} skyboxes; pass one [4, 4] pose per viewpoint (or None)")
        rots = [_rotation(p) for p in poses]
    keys = [(r.tobytes(), width, height, float(vfov_deg), s, str(dev)) for r in rots]
    first = {}  # each distinct pose's first row in the batch: its grid is computed once per call
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    sources = {key: _grids.get(key, lambda rot=rots[i]: _Lookup(rot, width, height, vfov_deg, s, dev),
                               shape=(VIEWS, height, width), keep=set(first)) for key, i in first.items()}
    n = _views_per_step(b, width, height, dev)
    scratch = _Scratch(n, height, width, dev) if any(isinstance(x, _Lookup) for x in sources.values()) else None
    with torch.inference_mode():
        # atlas [B, 3, 6S, S]: faces in GL order stacked vertically, float, +0.5 so that the
        # truncating uint8 cast below rounds half up (bilinear weights sum to one)
        atlas = _workspace("atlas", (b, 3, 6, s, s), dev)
        for g, k in enumerate(SKYBOX_OF_GL_FACE):
            atlas[:, :, g].copy_(faces[:, k])
        if faces.is_floating_point():
            atlas.clamp_(0.0, 255.0)
        atlas = atlas.add_(0.5).view(b, 3, 6 * s, s)
        views = torch.empty(b, VIEWS, 3, height, width, dtype=torch.uint8, device=dev)
        grid = _workspace("grid", (b, n * height, width, 2), dev)
        for v0 in range(0, VIEWS, n):
            for key, i in first.items():
                src = sources[key]
                if isinstance(src, _Lookup):
                    src.fill(grid[i].view(n, height, width, 2), v0, scratch)
                else:
                    grid[i].copy_(src[v0 * height:(v0 + n) * height])
            for i, key in enumerate(keys):
                if first[key] != i:
                    grid[i].copy_(grid[first[key]])
            out = F.grid_sample(atlas, grid, mode="bilinear", padding_mode="border", align_corners=False)  # [B, 3, nH, W]
            views[:, v0:v0 + n].copy_(out.view(b, 3, n, height, width).transpose(1, 2))  # truncates [0.5, 255.5)
    return views


def render_skybox(colour_fn: Callable[[np.ndarray], np.ndarray], pose=None, size: int = 1024) -> np.ndarray:
    """Paint six faces from a scene: uint8 [6, size, size, 3] RGB in skybox order 0..5.

    colour_fn gets the unit world direction (z up) each texel shows, float64 [6, size, size, 3],
    and returns uint8 [..., 3]. Same convention as `render_views`: the texel at cube direction d
    shows world direction -R d (R: the pose's rotation; None = identity).
    """
    rot = _rotation(pose)
    c = (2 * np.arange(size) + 1) / size - 1  # texel centres in [-1, 1]
    s, t = np.meshgrid(c, c)  # s along a row (columns), t down the rows; [size, size]
    one = np.ones_like(s)
    by_gl_face = [  # cube direction of each texel: the GL table solved for r with |ma| = 1
        (one, -t, -s), (-one, -t, s),  # +X, -X
        (s, one, t), (s, -one, -t),  # +Y, -Y
        (s, -t, one), (-s, -t, -one),  # +Z, -Z
    ]
    d = np.stack([np.stack(by_gl_face[SKYBOX_OF_GL_FACE[k]], -1) for k in range(6)])  # [6, size, size, 3]
    w = -(d @ rot.T)  # world direction -R d for each row vector d
    w /= np.linalg.norm(w, axis=-1, keepdims=True)
    rgb = np.asarray(colour_fn(w))
    if rgb.shape != (6, size, size, 3):
        raise ValueError(f"colour_fn must return [..., 3] colours for [..., 3] directions; got {rgb.shape}")
    return rgb.astype(np.uint8)
