import json

from click.testing import CliRunner

from clipfeat.pipeline.cli import cli
from tests.conftest import build_store


def test_info_human_and_json(tmp_path):
    url = str(tmp_path / "s.zarr")
    build_store(url, failed={5: "zero-byte file"})
    r = CliRunner()
    res = r.invoke(cli, ["info", url])
    assert res.exit_code == 0, res.output
    assert "shards     5/5 done" in res.output and "row 5 (1035): zero-byte file" in res.output
    res = r.invoke(cli, ["info", "--json", url])
    info = json.loads(res.output)
    assert info["meta"]["encoder"]["model"] == "RN50"
    assert info["progress"] == {"shards_done": 5, "shards_total": 5, "rows_done": 70, "rows_total": 70}
    assert info["arrays"]["grid"]["shape"] == [70, 9, 4] and info["arrays"]["grid"]["stored_bytes"] > 0
    assert info["failures"]["count"] == 1


def test_info_shows_progress_of_a_partial_store(tmp_path):
    url = str(tmp_path / "s.zarr")
    w, _ = build_store(url, finalize=False, shards=[1])
    res = CliRunner().invoke(cli, ["info", url])
    assert res.exit_code == 0 and "shards     1/5 done" in res.output and "status writing" in res.output
    w.close()


def test_ls_catalog(tmp_path):
    build_store(tmp_path / "team" / "coco-RN50.zarr")
    build_store(tmp_path / "team" / "deep" / "vg-RN50x4.zarr", model="RN50x4", n=20)
    (tmp_path / "team" / "not-a-store.zarr").mkdir()
    res = CliRunner().invoke(cli, ["ls", "--json", str(tmp_path / "team")])
    rows = json.loads(res.output)
    assert sorted((r["model"], r["items"], r["status"]) for r in rows) == [("RN50", 70, "complete"), ("RN50x4", 20, "complete")]
    assert all(r["bytes"] > 0 for r in rows)
    res = CliRunner().invoke(cli, ["ls", str(tmp_path / "team")])
    assert "coco-RN50.zarr" in res.output and "RN50x4" in res.output


def test_user_errors_are_one_line_exit_2(tmp_path):
    r = CliRunner()
    for args in (["info", str(tmp_path / "missing.zarr")], ["verify", str(tmp_path)], ["ls", str(tmp_path / "nope")]):
        res = r.invoke(cli, args)
        assert res.exit_code == 2, (args, res.output)
        assert res.output.startswith("Error: ") and len(res.output.strip().splitlines()) == 1
    assert r.invoke(cli, ["export", "x", "y", "--format", "parquet"]).exit_code == 2
    assert r.invoke(cli, ["no-such-command"]).exit_code == 2


def test_version_and_help():
    r = CliRunner()
    assert r.invoke(cli, ["--version"]).output.startswith("clipfeat, version ")
    res = r.invoke(cli, ["-h"])
    assert res.exit_code == 0 and "verify" in res.output and "import" in res.output
