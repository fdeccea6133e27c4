"""Image reading, decoding and preprocessing (the CPU side of the worker).

`load_image` turns a file into an RGB PIL image the way a dataset's viewer would show it
(EXIF orientation applied; greyscale, CMYK, palette, 16-bit and alpha images converted to
RGB), or raises `ImageError` with a one-line reason that the job records as a failed row.
`Preprocessor` resizes it for the model and returns uint8 HWC pixels; scaling to [0, 1] and
mean/std normalisation happen batched on the model's device (see `encoder.normalize`).

Every preprocessing mode resizes with PIL, as the sources do: `fixed` reproduces open_clip's
eval preprocessing bit for bit (bicubic), `squash` CLIP-ViL's detectron2 resizes (bilinear).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np

from clipfeat.common import ClipfeatError

__all__ = ["ImageError", "MAX_PIXELS", "Preprocessor", "load_image", "decode_image", "gpu_decodable", "gpu_preprocess", "tensor_preprocess"]

# Decompression-bomb limit: larger than any V&L dataset image (VG's largest is ~1280x1280),
# far below what would exhaust a worker's memory.
MAX_PIXELS = 64_000_000


class ImageError(ClipfeatError):
    """An item that cannot become an image; its message is recorded as the row's failure reason
    (the worker catches it per item: a bad image fails its row, not the job)."""


def read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except IsADirectoryError:
        raise ImageError("is a directory, not an image") from None
    except OSError as e:
        raise ImageError(f"cannot read: {e.strerror or e}") from None
    if not data:
        raise ImageError("empty file (0 bytes)")
    return data


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS):
    """Bytes -> RGB PIL image, upright (EXIF applied). Raises ImageError."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(f"{w}x{h} pixels exceeds the decompression-bomb limit of {max_pixels}")
            img.load()  # decode now: truncated data must fail here, not later
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image (unknown format)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"decompression bomb refused ({e})") from None
    except (OSError, ValueError, SyntaxError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"corrupt image: {msg}") from None


def _to_rgb(img):
    """Any PIL mode -> RGB. Transparent pixels are composited on white, as viewers show them."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit greyscale: scale to 8 bits
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        return Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, img).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV, F


def load_image(path: str, *, max_pixels: int = MAX_PIXELS):
    """Read and decode one file: (RGB PIL image, seconds reading, seconds decoding)."""
    t0 = time.perf_counter()
    data = read_file(path)
    t1 = time.perf_counter()
    img = decode_image(data, max_pixels=max_pixels)
    return img, t1 - t0, time.perf_counter() - t1


@dataclass(frozen=True)
class Preprocessor:
    """Resize for the model; output uint8 [H, W, 3].

    fixed:  open_clip's eval transform minus its ToTensor/Normalize: resize the shorter side
            to `size` + centre crop (or a square squash for models whose open_clip config
            says resize_mode="squash").
    aspect: scale so the shorter side is `shorter_side` unless the longer side would exceed
            `max_side`; no crop, so H and W vary (clipfeat's own mode: CLIP-ViL's VQA grids
            are `squash`, not this).
    squash: detectron2's test-time ResizeShortestEdge(shorter_side, max_side) (sizes rounded
            int(x + 0.5)), then a second resize to exactly `height` x `width` whatever the
            aspect ratio: CLIP-ViL's VQA grid preprocessing (the `clip-vil-vqa` preset), two
            PIL resizes on uint8 as detectron2's transforms do them.

    mean/std: normalisation other than the model's own (a preset's), or None.
    """

    mode: str = "fixed"
    size: int = 224
    shorter_side: int = 600
    max_side: int = 1000
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    height: int = 600  # squash: final input height
    width: int = 1000  # squash: final input width
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(H, W) of the model input for an image of width x height."""
        if self.mode == "fixed":
            return self.size, self.size
        if self.mode == "squash":
            return self.height, self.width
        scale = min(self.shorter_side / min(width, height), self.max_side / max(width, height))
        return max(1, round(height * scale)), max(1, round(width * scale))

    def shortest_edge(self, width: int, height: int) -> tuple[int, int]:
        """(W, H) after detectron2's ResizeShortestEdge(shorter_side, max_side) at test time:
        scale the shorter side to `shorter_side`; if the longer side then exceeds `max_side`,
        scale both down so it equals `max_side`; round each side as int(x + 0.5)."""
        scale = self.shorter_side / min(width, height)
        new_h, new_w = (self.shorter_side, scale * width) if height < width else (scale * height, self.shorter_side)
        if max(new_h, new_w) > self.max_side:
            down = self.max_side / max(new_h, new_w)
            new_h, new_w = new_h * down, new_w * down
        return int(new_w + 0.5), int(new_h + 0.5)

    def resizes(self, width: int, height: int) -> list[tuple[int, int]]:
        """The (W, H) of each resize applied, in order (squash: two; otherwise one)."""
        if self.mode == "squash":
            return [self.shortest_edge(width, height), (self.width, self.height)]
        return [self.plan(width, height)[0]]

    def plan(self, width: int, height: int) -> tuple[tuple[int, int], tuple[int, int, int, int] | None]:
        """((final resize W, H), crop box (left, top, right, bottom) or None) for one image.

        fixed: torchvision's Resize(size) + CenterCrop(size) arithmetic (open_clip's eval
        transform), or a square squash for models whose config says resize_mode="squash".
        """
        if self.mode != "fixed":
            out_h, out_w = self.output_size(width, height)
            return (out_w, out_h), None
        if self.resize_mode == "squash":
            new_w = new_h = self.size
        elif self.resize_mode == "shortest":
            short, long_ = min(width, height), max(width, height)
            new_short, new_long = self.size, int(self.size * long_ / short)
            new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        else:
            raise ValueError(f"open_clip resize_mode {self.resize_mode!r} is not supported; use --preprocess aspect")
        top, left = int(round((new_h - self.size) / 2.0)), int(round((new_w - self.size) / 2.0))
        return (new_w, new_h), (left, top, left + self.size, top + self.size)

    def __call__(self, img) -> np.ndarray:
        """RGB PIL image -> uint8 [H, W, 3], resized with PIL (as open_clip's transform and
        detectron2's ResizeTransform do; the test suite checks fixed mode against open_clip
        bit for bit, squash against CLIP-ViL's steps). PIL only, so decode processes need
        not import torch."""
        from PIL import Image

        resample = getattr(Image.Resampling, self.interpolation.upper())
        for new_w, new_h in self.resizes(*img.size):
            if (new_w, new_h) != img.size:  # PIL returns a copy at the same size: skipping it is exact
                img = img.resize((new_w, new_h), resample)
        crop = self.plan(*img.size)[1] if self.mode == "fixed" else None
        if crop is not None:
            img = img.crop(crop)
        return np.array(img, dtype=np.uint8)  # writable copy (torch refuses read-only arrays)


def gpu_decodable(data: bytes, *, max_pixels: int = MAX_PIXELS) -> tuple[int, int] | None:
    """(width, height) when nvjpeg can decode `data` to what the CPU path would give: a
    complete RGB or greyscale JPEG, upright (no EXIF rotation), under the pixel limit.
    Anything else (CMYK, rotated, truncated, not a JPEG) goes the CPU way, which also
    records the reason when the file is bad. Reads the header only."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "JPEG" or img.mode not in ("RGB", "L") or img.getexif().get(0x0112, 1) != 1:
                return None
            w, h = img.size
    except Exception:  # noqa: BLE001 - any header problem: let the CPU path name it
        return None
    if w * h > max_pixels or not data.rstrip(b"\0").endswith(b"\xff\xd9"):  # no EOI: truncated
        return None
    return w, h


def gpu_preprocess(images: list, pre: Preprocessor):
    """uint8 [3, h, w] CUDA tensors (decoded, any sizes) -> uint8 [B, H, W, 3] model input.

    The same geometry as `Preprocessor.plan`, resized by torchvision on the GPU (bicubic,
    antialiased). Its pixels differ from PIL's by rounding, so stores made this way record
    interpolation "<mode>/torchvision-gpu" and get their own store_id.
    """
    import torch

    return torch.cat([tensor_preprocess(img[None], pre) for img in images])


def tensor_preprocess(batch, pre: Preprocessor):
    """uint8 [N, 3, h, w] tensor (images of one size, any device) -> uint8 [N, H, W, 3].

    `Preprocessor.plan`'s geometry with torchvision's antialiased resize, one call for the
    batch, on the batch's device (R2R's 36 views of a viewpoint go through here together).
    """
    from torchvision.transforms.v2 import functional as TF

    crop = pre.plan(batch.shape[-1], batch.shape[-2])[1]
    for new_w, new_h in pre.resizes(batch.shape[-1], batch.shape[-2]):
        if (new_w, new_h) != (batch.shape[-1], batch.shape[-2]):
            batch = TF.resize(batch, [new_h, new_w], interpolation=TF.InterpolationMode(pre.interpolation), antialias=True)
    if crop is not None:
        left, top, right, bottom = crop
        batch = batch[..., top:bottom, left:right]
    return batch.permute(0, 2, 3, 1)  # NCHW -> NHWC (a view)
