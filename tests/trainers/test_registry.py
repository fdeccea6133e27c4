"""The task registry, recipes and the config machinery every task runs through."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from clipfeat.pipeline.cli import cli
from clipfeat.trainers.config import RUN_KEYS, ConfigError, TrainConfig, apply_overrides, config_keys, parse_args
from clipfeat.trainers.task import TASKS, Task, get_task, load_recipes


def test_tasks_come_from_the_entry_points_and_the_cli_lists_them():
    assert set(TASKS) == {"vqa", "caption", "nav", "gqa"}
    for name, task in TASKS.items():
        assert isinstance(task, Task) and task.name == name and task.default_recipe in task.recipes()
    r = CliRunner().invoke(cli, ["train", "--help"])
    assert r.exit_code == 0 and all(f"  {name} " in r.output for name in TASKS)
    r = CliRunner().invoke(cli, ["eval", "--help"])
    assert r.exit_code == 0 and all(f"  {name} " in r.output for name in TASKS)
    with pytest.raises(Exception, match="unknown task 'lxmert'"):
        get_task("lxmert")


def test_listing_the_tasks_imports_no_torch():
    """`clipfeat train --help` reads the registry only: no trainer module, no torch."""
    code = ("import sys; from clipfeat.pipeline.cli import cli; from clipfeat.trainers.task import TASKS; "
            "list(TASKS.values()); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("name", ["vqa", "caption", "nav", "gqa"])
def test_every_recipe_is_a_full_config_with_a_source(name):
    """A recipe sets every key that changes a number (all but where a run is and how it is
    watched), with a source; it parses into the task's config without error."""
    task = TASKS[name]
    cls = task.config_class()
    recipes = task.recipes()
    assert recipes and task.default_recipe in recipes
    for recipe in recipes.values():
        assert recipe.source.strip() and recipe.description.strip()
        cfg = apply_overrides(cls(), recipe.config)
        flat = {k for k in config_keys(cls) if k.split(".")[0] not in RUN_KEYS}
        # the model sections a recipe does not use may be left out (VQA/GQA: butd.* or mcan.*)
        used = {k for k in flat if "." not in k or k.split(".")[0] == getattr(cfg, "model", k.split(".")[0])}
        given = set(config_keys_of(recipe.config))
        assert used <= given, f"{name}/{recipe.name} leaves {sorted(used - given)} to the defaults"


def config_keys_of(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        out += config_keys_of(v, f"{prefix}{k}.") if isinstance(v, dict) else [prefix + k]
    return out


def test_recipe_files_are_checked(tmp_path, monkeypatch):
    pkg = tmp_path / "fake_task"
    (pkg / "recipes").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "recipes" / "a.json").write_text(json.dumps({"name": "b", "description": "", "source": "", "config": {}}))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(Exception, match="name the file b.json"):
        load_recipes("fake_task")
    (pkg / "recipes" / "a.json").write_text(json.dumps({"name": "a"}))
    with pytest.raises(Exception, match="is not .name, description, source, config. JSON"):
        load_recipes("fake_task")


def test_config_sections_and_overrides():
    from clipfeat.trainers.vqa.train import VQAConfig

    cfg = apply_overrides(VQAConfig(), {"butd.hidden": "64", "mcan": {"layers": 2}, "epochs": "3", "amp": "false",
                                        "train_splits": "train2014,val2014"})
    assert (cfg.butd.hidden, cfg.mcan.layers, cfg.epochs, cfg.amp, cfg.train_splits) == (64, 2, 3, False, ("train2014", "val2014"))
    assert VQAConfig().butd.hidden == 1024  # sections are copies, not shared defaults
    with pytest.raises(ConfigError, match="did you mean butd.hidden"):
        apply_overrides(VQAConfig(), {"hidden": "64"})
    with pytest.raises(ConfigError, match="did you mean epochs"):
        apply_overrides(VQAConfig(), {"epoch": "3"})
    with pytest.raises(ConfigError, match="unknown config key 'butd.layers'"):
        apply_overrides(VQAConfig(), {"butd.layers": "3"})
    with pytest.raises(ConfigError, match="is a section"):
        apply_overrides(VQAConfig(), {"butd": "3"})
    with pytest.raises(ConfigError, match="not a valid int"):
        apply_overrides(TrainConfig(), {"epochs": "three"})
    # BUTD's and MCAN's fields live in their own sections, not side by side at the top
    top = {f.name for f in dataclasses.fields(VQAConfig)}
    assert not top & {"hidden", "d_model", "layers", "heads", "ff_dim", "classifier_dropout"}


def test_precedence_recipe_config_flags_set(tmp_path):
    task = TASKS["vqa"]
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"epochs": 2, "mcan": {"layers": 3}}))
    args = parse_args(["--features", "s.zarr", "--data", "d", "--recipe", "mcan-clipfeat", "--config", str(f),
                       "--set", "epochs=5"], task)
    cfg = args.config
    assert (cfg.recipe, cfg.model, cfg.lr, cfg.mcan.layers, cfg.epochs, cfg.features) == ("mcan-clipfeat", "mcan", 1e-4, 3, 5, "s.zarr")
    assert parse_args(["--features", "s", "--data", "d"], task).config.recipe == "butd-clipfeat"  # the default recipe
    with pytest.raises(ConfigError, match="--features is required"):
        parse_args(["--data", "d"], task)
    with pytest.raises(ConfigError, match="no such vqa recipe; choose one of butd, butd-clipfeat, mcan-clipfeat, mcan-small"):
        parse_args(["--features", "s", "--data", "d", "--recipe", "lxmert"], task)
    with pytest.raises(ConfigError, match="drop --recipe"):
        parse_args(["--resume", str(tmp_path), "--recipe", "mcan-small"], task)


def test_list_recipes_prints_names_and_sources():
    r = CliRunner().invoke(cli, ["train", "vqa", "--list-recipes"])
    assert r.exit_code == 0, r.output
    assert "butd-clipfeat (default)" in r.output and "mcan-small" in r.output and "source: " in r.output
    for name in TASKS:
        r = CliRunner().invoke(cli, ["train", name, "--list-recipes"])
        assert r.exit_code == 0 and "(default)" in r.output


def test_run_folder_records_the_recipe_and_every_resolved_value(coco_data, tmp_path):
    from clipfeat.trainers.vqa import main

    store, data = coco_data
    out = tmp_path / "run"
    main(["--features", store, "--data", data, "--out", str(out), "--recipe", "mcan-clipfeat", "--set", "progress=false",
          "epochs=1", "mcan.d_model=32", "mcan.layers=1", "mcan.heads=2", "mcan.ff_dim=64", "mcan.word_dim=16",
          "batch_size=128", "min_answer_count=1", "warmup_steps=2"])
    saved = json.loads((out / "config.json").read_text())
    assert saved["recipe"] == "mcan-clipfeat" and saved["model"] == "mcan" and saved["lr"] == 1e-4
    assert saved["mcan"]["d_model"] == 32 and set(config_keys_of(saved)) == set(config_keys(TASKS["vqa"].config_class()))
    lrs = [json.loads(line)["lr"] for line in (out / "metrics.jsonl").read_text().splitlines()
           if json.loads(line)["kind"] == "train"]
    assert lrs and max(lrs) <= 1e-4 + 1e-12
