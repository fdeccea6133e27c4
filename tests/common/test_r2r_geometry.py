"""The simulator's 36 views, defined once in clipfeat.common and the same values everywhere."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clipfeat.common import (
    HEADING_COUNT, VFOV, VFOV_DEG, VIEW_ELEVATIONS, VIEW_HEADINGS, VIEW_HEIGHT, VIEW_WIDTH, VIEWS, view_angles,
)


def test_view_table():
    assert (VIEWS, HEADING_COUNT, VIEW_WIDTH, VIEW_HEIGHT, VFOV_DEG) == (36, 12, 640, 480, 60.0)
    assert VFOV == math.radians(60.0)
    assert len(VIEW_HEADINGS) == len(VIEW_ELEVATIONS) == VIEWS
    for ix in range(VIEWS):
        heading_deg, elevation_deg = 30 * (ix % 12), (-30, 0, 30)[ix // 12]  # 0..11 down, 12..23 level, 24..35 up
        # bit for bit: degrees first, one conversion (what panorama and the stores were built with)
        assert view_angles(ix) == (math.radians(float(heading_deg)), math.radians(float(elevation_deg))), ix
        assert (VIEW_HEADINGS[ix], VIEW_ELEVATIONS[ix]) == view_angles(ix)
    assert view_angles(0) == (0.0, -math.pi / 6) and view_angles(15) == (math.pi / 2, 0.0)
    assert view_angles(np.int64(27)) == view_angles(27)
    for bad in (-1, 36):
        with pytest.raises(ValueError, match="outside 0..35"):
            view_angles(bad)


def test_pipeline_and_trainers_share_it():
    from clipfeat.pipeline import panorama
    from clipfeat.trainers.nav import graphs

    assert panorama.view_angles is view_angles
    assert (panorama.VIEWS, panorama.HEADING_COUNT, panorama.VIEW_WIDTH, panorama.VIEW_HEIGHT, panorama.VFOV_DEG,
            panorama.VFOV) == (VIEWS, HEADING_COUNT, VIEW_WIDTH, VIEW_HEIGHT, VFOV_DEG, VFOV)
    h, e = graphs.view_angles(np.arange(VIEWS))
    assert h.dtype == e.dtype == np.float64 and h.tolist() == list(VIEW_HEADINGS) and e.tolist() == list(VIEW_ELEVATIONS)
    assert graphs.view_angles(5) == view_angles(5)
    # the trainers' float32 view tables are what they were with EnvDrop's k * radians(30) arithmetic
    # (which differs from radians(30 k) in the last float64 bit for k = 5, 7, 10)
    k, row = np.arange(VIEWS) % 12, np.arange(VIEWS) // 12 - 1
    assert (np.float32(VIEW_HEADINGS) == (k * math.radians(30)).astype(np.float32)).all()
    assert (np.float32(VIEW_ELEVATIONS) == (row * math.radians(30)).astype(np.float32)).all()


def test_render_info_string_is_unchanged():
    """A panorama store records how its views were made; the geometry's move keeps the spelling."""
    from types import SimpleNamespace

    from clipfeat.pipeline.job import _render_info

    manifest = SimpleNamespace(rows=[SimpleNamespace(fields={"layout": "skybox"})])
    assert _render_info(manifest) == "matterport-skybox bilinear 640x480 vfov60"
