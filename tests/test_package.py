"""The package installs as four subpackages of `clipfeat`, and the CLI starts fast."""

import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBPACKAGES = ["clipfeat.apps", "clipfeat.common", "clipfeat.features", "clipfeat.manifests", "clipfeat.pipeline",
               "clipfeat.trainers"]


def test_subpackages_import_from_the_installed_package():
    for name in SUBPACKAGES:
        mod = __import__(name, fromlist=["_"])
        assert mod.__file__.startswith(ROOT)  # editable install maps them to the top-level folders


def test_help_is_fast_and_imports_neither_torch_nor_ray():
    code = (
        "import sys, time; t=time.perf_counter(); from clipfeat.pipeline.cli import cli\n"
        "try:\n    cli(['--help'], standalone_mode=False)\nexcept SystemExit: pass\n"
        "print(time.perf_counter()-t, 'torch' in sys.modules, 'ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/").stdout
    seconds, torch_loaded, ray_loaded = out.split()[-3:]
    assert torch_loaded == "False" and ray_loaded == "False"
    assert float(seconds) < 1.0
    t = time.perf_counter()
    exe = os.path.join(os.path.dirname(sys.executable), "clipfeat")
    subprocess.run([exe, "--help"], capture_output=True, check=True)
    assert time.perf_counter() - t < 2.0  # whole process, interpreter start included


@pytest.mark.slow
def test_regular_wheel_install_exposes_all_four(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target), ROOT],
        check=True,
        capture_output=True,
    )
    assert not (target / "clipfeat" / "__init__.py").exists()  # implicit namespace package
    code = "import " + ", ".join(SUBPACKAGES) + "; import clipfeat.features as f; print(f.__file__)"
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"], capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(target))
    # the registries' JSON files ship as package data: presets and every task's recipes
    code = ("from clipfeat.pipeline.presets import PRESETS; from clipfeat.trainers.task import load_recipes; "
            "print(sorted(PRESETS), sorted(load_recipes('clipfeat.trainers.vqa')))")
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
                         capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "clip-vil-vqa" in out.stdout and "mcan-small" in out.stdout, out.stdout
