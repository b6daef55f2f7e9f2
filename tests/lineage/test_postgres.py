"""Shared metadata on a real PostgreSQL 15 server: the pipeline writes there, lineage reads there.

The throwaway server comes from tests/pg_fixture.py. The small pipeline runs twice against it,
the second time with one more training step, which is also how the cached-components and
changed-hyperparameter behaviours are tested (no extra pipeline runs elsewhere).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from cli_support import Exit
from tests.pg_fixture import postgres_server

# Runs the pipeline against a real PostgreSQL server.
pytestmark = pytest.mark.slow

MLOPS = os.path.join(os.path.dirname(sys.executable), "mlops")


@pytest.fixture(scope="module")
def pg_pipeline(small_pipeline, tmp_path_factory):
    """Two runs of the small pipeline against PostgreSQL; yields (url, password, configs, out).

    Tuning is skipped here (the Importer brings the committed best hyperparameters) to keep the
    two extra runs cheap; the shared SQLite fixture covers the Tuner's lineage.
    """
    from pipeline.local.run import run_pipeline

    out = tmp_path_factory.mktemp("pg_pipeline")
    with postgres_server() as server:
        url = server.url("taxi_metadata")
        old = os.environ.get("MLMD_DB_PASSWORD")
        os.environ["MLMD_DB_PASSWORD"] = server.password
        try:
            base = dataclasses.replace(
                small_pipeline.config,
                output_dir=str(out / "output"),
                serving_model_dir=str(out / "serving_model" / "taxi"),
                metadata=url,
                skip_tuning=True,
            )
            # One more training step: a hyperparameter change to diff. Whether 31 steps beat 30 on
            # 80 eval rows is chance, so the second run tolerates any AUC change and is pushed.
            tolerant = dataclasses.replace(base.thresholds, min_auc_gain=-1.0)
            configs = [
                base,
                dataclasses.replace(base, train_steps=base.train_steps + 1, thresholds=tolerant),
            ]
            for config in configs:
                exit_code, _report = run_pipeline(config)
                assert exit_code == 0, "small pipeline run against PostgreSQL failed"
            yield url, server.password, configs, out
        finally:
            if old is None:
                os.environ.pop("MLMD_DB_PASSWORD", None)
            else:
                os.environ["MLMD_DB_PASSWORD"] = old


def _mlops(url: str, password: str, *args: str) -> subprocess.CompletedProcess:
    """The real console script, as a user on the team would run it (password via env only)."""
    env = dict(os.environ, MLMD_DB_PASSWORD=password)
    return subprocess.run(
        [MLOPS, "lineage", "--metadata", url, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_runs_on_postgres_show_cached_components_on_second_run(pg_pipeline):
    url, password, configs, _ = pg_pipeline
    result = _mlops(url, password, "runs", "--json")
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    assert len(runs) == 2
    newest, oldest = runs
    assert newest["start"] >= oldest["start"]
    states_new = {c["component"]: c["state"] for c in newest["components"]}
    states_old = {c["component"]: c["state"] for c in oldest["components"]}
    assert states_old["CsvExampleGen"] == "complete"
    # Same data and code: everything before the Trainer is reused from the first run.
    assert states_new["CsvExampleGen"] == "cached"
    assert states_new["Transform"] == "cached"
    assert states_new["Trainer"] == "complete"
    assert newest["pushed"] and oldest["pushed"]
    assert newest["pushed_version"] != oldest["pushed_version"]
    text = _mlops(url, password, "runs")
    assert "cached: " in text.stdout and "CsvExampleGen" in text.stdout
    assert password not in text.stdout + text.stderr


def test_diff_on_postgres_shows_changed_hyperparameter(pg_pipeline):
    url, password, configs, _ = pg_pipeline
    result = _mlops(url, password, "diff", "previous", "latest", "--json")
    assert result.returncode == 0, result.stderr
    diff = json.loads(result.stdout)
    changed = {c["key"]: (c["a"], c["b"]) for c in diff["sections"]["hyperparameters"]["changed"]}
    assert changed["Trainer.train_args.num_steps"] == (
        configs[0].train_steps,
        configs[1].train_steps,
    )
    assert diff["sections"]["input"]["changed"] == []
    assert diff["sections"]["schema"]["changed"] == []
    text = _mlops(url, password, "diff", "previous", "latest")
    assert (
        f"Trainer.train_args.num_steps: {configs[0].train_steps} -> {configs[1].train_steps}"
        in text.stdout
    )


def test_trace_on_postgres_reaches_input_csv(pg_pipeline):
    url, password, configs, _ = pg_pipeline
    result = _mlops(url, password, "trace", "latest", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]
    files = [f for item in summary["inputs"] for f in item["files"]]
    assert any(f.startswith(configs[1].data_root) and f.endswith(".csv") for f in files), files
    assert summary["pushed"]["destination"].startswith(configs[1].model_serving_dir)
    # The second run's Evaluator compared against the first run's blessed model.
    assert summary["evaluation"][0]["baseline_model"] is not None


def test_wrong_password_is_a_clear_error_without_the_password(pg_pipeline):
    url, password, _, _ = pg_pipeline
    result = _mlops(url, "wrong-" + password, "runs")
    assert result.returncode == Exit.FAILED
    assert "cannot read metadata store postgresql://" in result.stderr
    assert "Traceback" not in result.stderr
    assert "wrong-" + password not in result.stdout + result.stderr


def test_password_never_written_to_pipeline_logs_or_outputs(pg_pipeline):
    """The runner's logs capture everything TFX and Beam print; none of it may hold the secret."""
    _, password, _, out = pg_pipeline
    scanned = 0
    for dirpath, _dirs, files in os.walk(out):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.getsize(path) > 20_000_000:
                continue
            with open(path, "rb") as f:
                assert password.encode() not in f.read(), path
            scanned += 1
    assert scanned > 10
