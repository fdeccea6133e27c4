"""The `DATASETS` registry: what the CLIs offer, how `scan` dispatches, and each adapter's
declared layout and options against what its scan function really does."""

from __future__ import annotations

import dataclasses
import inspect

import click
import pytest

from clipfeat.manifests import DATASETS, IMAGES, LAYOUTS, OPTIONS, SKYBOX, DatasetAdapter, ManifestError, scan
from clipfeat.manifests import synthetic
from clipfeat.manifests.cli import manifest_cmd
from clipfeat.pipeline.extract_cli import extract_cmd


def _choices(cmd: click.Command) -> list[str]:
    return list(next(p for p in cmd.params if p.name == "dataset").type.choices)


def test_cli_choices_come_from_the_registry():
    assert _choices(manifest_cmd) == _choices(extract_cmd) == sorted(DATASETS)
    assert {"coco", "vg", "r2r", "flickr30k"} <= set(DATASETS)
    help_text = next(p for p in extract_cmd.params if p.name == "dataset").help
    assert all(f"{a.name}: {a.description}" in help_text for a in DATASETS.values())


def test_adapters_are_frozen_and_declare_what_their_scan_takes():
    for name, a in DATASETS.items():
        assert isinstance(a, DatasetAdapter) and a.name == name and a.layout in LAYOUTS and a.options <= set(OPTIONS)
        with pytest.raises(dataclasses.FrozenInstanceError):
            a.layout = IMAGES
        params = inspect.signature(a.scan).parameters
        assert all(params[o].kind is inspect.Parameter.KEYWORD_ONLY for o in a.options), name
    assert DATASETS["r2r"].layout == SKYBOX and {DATASETS[n].layout for n in ("coco", "vg", "flickr30k")} == {IMAGES}


TINY = ((32, 24),)
MAKERS = {  # dataset -> (write a tiny root, its row count); every registered dataset needs one
    "coco": (lambda root: synthetic.make_coco(root, splits={"val2014": 2}, sizes=TINY), 2),
    "vg": (lambda root: synthetic.make_vg(root, count=2, sizes=TINY), 2),
    "r2r": (lambda root: synthetic.make_matterport(root, scans=1, viewpoints=1, face_size=8), 1),
    "flickr30k": (lambda root: synthetic.make_flickr30k(root, n_images=2, sizes=TINY), 2),
}


def test_the_declared_layout_is_the_manifests(tmp_path):
    assert set(MAKERS) == set(DATASETS), "give each registered dataset a tiny synthetic root in MAKERS"
    for name, a in DATASETS.items():
        make, count = MAKERS[name]
        make(tmp_path / name)
        m, _ = scan(name, str(tmp_path / name))
        assert m.dataset == name and m.layout == a.layout and len(m) == count


def test_options_a_dataset_does_not_take_are_refused_by_name(tmp_path):
    cases = [
        ("coco", {"scans": ["s"]}, "--scans and --connectivity are for --dataset r2r"),
        ("vg", {"connectivity": "c"}, "--scans and --connectivity are for --dataset r2r"),
        ("flickr30k", {"scans": ["s"], "splits": ["test"]}, "--scans and --connectivity are for --dataset r2r"),
        ("vg", {"splits": ["train"]}, "Visual Genome has no splits to choose; drop --splits"),
        ("r2r", {"splits": ["train"]}, "R2R has no splits to choose; choose scans with --scans"),
        ("nope", {}, "unknown dataset 'nope'; choose one of " + ", ".join(sorted(DATASETS))),
    ]
    for name, options, message in cases:
        with pytest.raises(ManifestError) as e:
            scan(name, str(tmp_path), **options)
        assert str(e.value) == message
