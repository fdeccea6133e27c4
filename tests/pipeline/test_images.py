"""Decoding: every mode real datasets contain becomes upright RGB; bad files become reasons."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from clipfeat.pipeline.images import ImageError, Preprocessor, decode_image, load_image


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(img, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, **kw)
    return buf.getvalue()


def test_modes_become_rgb():
    rgb = Image.new("RGB", (40, 30), (200, 30, 60))
    grey16 = Image.fromarray(np.full((30, 40), 65535 // 2, dtype=np.uint16))  # I;16
    rgba = Image.new("RGBA", (40, 30), (10, 20, 30, 0))  # fully transparent -> white
    palette = rgb.convert("P")
    cases = {
        "L jpeg": _jpeg(rgb.convert("L")),
        "CMYK jpeg": _jpeg(rgb.convert("CMYK")),
        "P png": _png(palette),
        "I;16 png": _png(grey16),
        "RGBA png": _png(rgba),
        "LA png": _png(rgb.convert("LA")),
        "1 png": _png(rgb.convert("1")),
    }
    for name, data in cases.items():
        img = decode_image(data)
        assert img.mode == "RGB" and img.size == (40, 30), name
    assert np.asarray(decode_image(cases["RGBA png"]))[0, 0].tolist() == [255, 255, 255]
    assert abs(int(np.asarray(decode_image(cases["I;16 png"]))[0, 0, 0]) - 128) <= 1  # 16-bit scaled, not clipped
    cmyk = np.asarray(decode_image(cases["CMYK jpeg"]), dtype=int)[15, 20]
    assert np.abs(cmyk - [200, 30, 60]).max() < 12  # colours survive the CMYK round trip


def test_exif_orientation_applied():
    upright = Image.new("RGB", (60, 20), (255, 255, 255))
    upright.paste((255, 0, 0), (0, 0, 10, 20))  # red band on the left when displayed
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs 90 degrees clockwise
    data = _jpeg(upright.transpose(Image.Transpose.ROTATE_90), exif=exif)
    img = decode_image(data)
    assert img.size == (60, 20)
    px = np.asarray(img, dtype=int)
    assert px[10, 2, 0] > 200 and px[10, 2, 1] < 60 and px[10, 50].min() > 200


def test_bad_files_become_reasons(tmp_path):
    good = _jpeg(Image.new("RGB", (64, 48), (10, 200, 10)))
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "trunc.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.jpg").write_text("not an image at all\n")
    Image.new("1", (9000, 9000)).save(tmp_path / "bomb.png")  # 81 Mpx, a few KB on disk
    reasons = {}
    for name in ("missing.jpg", "empty.jpg", "trunc.jpg", "text.jpg", "bomb.png"):
        with pytest.raises(ImageError) as e:
            load_image(str(tmp_path / name))
        reasons[name] = str(e.value)
    assert reasons["missing.jpg"] == "file not found"
    assert "0 bytes" in reasons["empty.jpg"]
    assert "corrupt" in reasons["trunc.jpg"] or "truncated" in reasons["trunc.jpg"]
    assert "not an image" in reasons["text.jpg"]
    assert "decompression-bomb" in reasons["bomb.png"]


def test_fixed_preprocessing_matches_open_clip():
    """uint8 resize/crop here + normalize on the device == open_clip's eval transform, exactly."""
    import open_clip
    import torch

    from clipfeat.pipeline.encoder import Encoder

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (97, 131, 3), dtype=np.uint8))
    ref = open_clip.image_transform(64, is_train=False)(img)[None]  # [1, 3, 64, 64]

    class _Visual(torch.nn.Module):
        pass

    class _Model(torch.nn.Module):
        visual = _Visual()

    enc = Encoder(_Model(), kind="resnet", device="cpu", mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD)
    ours = enc.normalize(Preprocessor(mode="fixed", size=64)(img)[None])
    assert ours.shape == ref.shape
    assert torch.equal(ours, ref)


def test_aspect_sizes():
    pre = Preprocessor(mode="aspect", shorter_side=600, max_side=1000)
    assert pre.output_size(640, 480) == (600, 800)
    assert pre.output_size(480, 640) == (800, 600)
    assert pre.output_size(1000, 300) == (300, 1000)  # longer side capped
    out = pre(Image.new("RGB", (64, 48)))
    assert out.shape == (600, 800, 3) and out.dtype == np.uint8


def test_gpu_decodable_routes_only_plain_complete_jpegs():
    from clipfeat.pipeline.images import gpu_decodable

    rgb = Image.new("RGB", (40, 30), (200, 30, 60))
    exif = Image.Exif()
    exif[0x0112] = 6
    assert gpu_decodable(_jpeg(rgb)) == (40, 30)
    assert gpu_decodable(_jpeg(rgb.convert("L"))) == (40, 30)
    whole = _jpeg(rgb)
    for other in (_jpeg(rgb.convert("CMYK")), _jpeg(rgb, exif=exif), whole[: len(whole) - 40], _png(rgb), b"", b"<html>"):
        assert gpu_decodable(other) is None  # the CPU path decodes these, or names what is wrong
