"""Every command docs/upkeep.md shows, run: the `mlops gc|store` block on a synthetic history in
a real SQLite store, the pg_dump/pg_restore block against a real PostgreSQL server, and the
`make retrain GC=1` line through `make -n`."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

from click.testing import CliRunner
from ml_metadata.proto import metadata_store_pb2 as mlmd_pb2

from metadata import open_store
from mlops.cli import main as mlops_main
from tests.paths import PROJECT_ROOT
from tests.upkeep import mlmd_history as mh
from tests.upkeep.test_gc_plan import _build, _plan
from upkeep import gc as gc_lib

DOC = PROJECT_ROOT / "docs" / "upkeep.md"


def doc_block(name: str) -> list[str]:
    (block,) = re.findall(
        rf"^<!-- test: {name} -->\n```bash\n(.*?)\n```$", DOC.read_text(), re.M | re.S
    )
    return block.splitlines()


def test_documented_gc_and_store_commands(tmp_path):
    path = str(tmp_path / "metadata.db")
    history = _build(mh.sqlite_config(path), tmp_path)
    serving = str(tmp_path / "serving" / "synthetic")
    where = ["--metadata", path, "--pipeline-name", mh.PIPELINE, "--pipeline-root", history.root]
    backups = tmp_path / "backups"
    history.serving = serving
    planned = len(_plan(open_store(path), history, keep_last=2).deleted)
    assert planned > 0
    outputs = []
    for command in doc_block("upkeep"):
        argv = shlex.split(command)
        assert argv[0] == "mlops"
        argv = [str(backups / "metadata.db") if a == "backups/metadata.db" else a for a in argv[1:]]
        if argv[0] == "gc":
            argv += [*where, "--serving-dir", serving, "--model-name", "synthetic"]
        elif argv[:2] == ["store", "check"]:
            argv += where
        else:
            argv += ["--metadata", path]
        result = CliRunner().invoke(mlops_main, argv)
        assert result.exit_code == 0, (command, result.output)
        outputs.append(result.output)
    gc_default, gc_kept, gc_apply, check, repair, backup, restore = outputs
    assert "Would delete 0 artifact(s)" in gc_default  # 5 young runs: the spec keeps 10 / 14 days
    assert f"Would delete {planned} artifact(s)" in gc_kept and "lineage of served" in gc_kept
    assert f"Deleted {planned} artifact(s)" in gc_apply
    assert "0 artifact(s) with missing files" in check and "0 artifact(s)" in repair
    assert "Backed up" in backup and "Restored" in restore


def test_documented_postgresql_backup_round_trips(tmp_path, monkeypatch):
    from metadata.connection import connection_config_from_url
    from tests.pg_fixture import find_pg_bin, postgres_server

    with postgres_server() as server:
        monkeypatch.setenv("MLMD_DB_PASSWORD", server.password)
        url = server.url()
        history = _build(connection_config_from_url(url), tmp_path)
        history.serving = str(tmp_path / "serving" / "synthetic")
        before = sorted((a.id, a.state) for a in open_store(url).all_artifacts())
        dump, restore = doc_block("pg-backup")
        env = {
            **os.environ,
            "PGPASSWORD": server.password,
            "PATH": f"{find_pg_bin()}:{os.environ['PATH']}",
        }

        def run(command: str) -> None:
            argv = shlex.split(command.replace("DB_HOST", server.host))
            argv = [str(server.port) if a == "DB_PORT" else a for a in argv]
            done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
            assert done.returncode == 0, (command, done.stderr)

        run(dump)
        assert (tmp_path / "metadata.dump").stat().st_size > 0
        store = open_store(url, writable=True)
        gc_lib.apply(store, _plan(store, history), "tester")
        assert sorted((a.id, a.state) for a in open_store(url).all_artifacts()) != before
        run(restore)
        after = open_store(url)
        assert sorted((a.id, a.state) for a in after.all_artifacts()) == before
        assert {a.state for a in after.all_artifacts()} == {mlmd_pb2.Artifact.LIVE}


def test_make_retrain_gc_runs_gc_after_the_run():
    assert "`make retrain GC=1`" in DOC.read_text()
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    out = subprocess.run(
        ["make", "-n", "retrain", "GC=1", "GC_ARGS=--keep-last 5"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-2].startswith(".venv/bin/python runners/local_runner.py")
    assert lines[-1] == ".venv/bin/mlops gc --apply --keep-last 5"
