"""clipfeat.common is a leaf every layer may import: one error base, and no heavy imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from clipfeat.common import ClipfeatError, ConnectivityError


def test_every_layer_raises_clipfeat_errors():
    from clipfeat.features import errors as store_errors
    from clipfeat.manifests import ManifestError
    from clipfeat.pipeline.images import ImageError
    from clipfeat.pipeline.panorama import PanoramaError

    assert store_errors.ClipfeatError is ClipfeatError  # the old import path still names the same class
    for cls in (ManifestError, ImageError, PanoramaError, ConnectivityError, store_errors.NotAStoreError):
        assert issubclass(cls, ClipfeatError), cls
    assert issubclass(ConnectivityError, ValueError)  # a malformed file, as the graphs loader has always said
    with pytest.raises(ClipfeatError, match="bad"):
        raise ManifestError("bad root")


def test_image_errors_stay_row_failures():
    """A bad image is a ClipfeatError now, but the decoder still raises the ImageError that the
    worker records as the row's failure reason."""
    from clipfeat.pipeline.images import ImageError, decode_image

    with pytest.raises(ImageError) as info:
        decode_image(b"not an image")
    assert isinstance(info.value, ClipfeatError) and "\n" not in str(info.value)


def test_import_is_light():
    code = (
        "import sys; import clipfeat.common\n"
        "print(sorted(m for m in sys.modules if m.startswith('clipfeat')))\n"
        "print([m for m in ('torch', 'ray', 'numpy', 'zarr', 'click') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/").stdout.splitlines()
    assert out[0] == "['clipfeat', 'clipfeat.common', 'clipfeat.common.errors', 'clipfeat.common.r2r']"  # nothing else of clipfeat
    assert out[1] == "[]"
