"""Pipeline fixtures: synthetic datasets (tiny models and the session Ray live in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def synthetic_coco(tmp_path_factory):
    from clipfeat.manifests.synthetic import make_coco

    root = tmp_path_factory.mktemp("coco")
    make_coco(root, splits={"train2014": 24, "val2014": 12})
    return str(root)


@pytest.fixture(scope="session")
def synthetic_vg(tmp_path_factory):
    from clipfeat.manifests.synthetic import make_vg

    root = tmp_path_factory.mktemp("vg")
    make_vg(root, count=14)
    return str(root)
