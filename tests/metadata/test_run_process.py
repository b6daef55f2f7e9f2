"""A run whose process is gone reads as failed, not "running" for ever: a real child process
records itself (metadata/run_process.py, as pipeline/local/run.py does), opens a TFX-shaped run
with a RUNNING execution in a real SQLite ML Metadata store, and is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from lineage import queries, render
from metadata import open_store
from metadata.run_process import RunProcess, checked_status, process_of
from tests.paths import PROJECT_ROOT

PIPELINE = "taxi_pipeline"
RUN_ID = "2026-12-06T10:00:00.000001"

# The child: what the local runner does before TFX (record its process), then what TFX records
# when a run starts (pipeline and run contexts, a RUNNING execution), then it keeps running.
CHILD = textwrap.dedent(
    """
    import sys, time
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb
    from metadata import run_process

    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = sys.argv[1]
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    record = run_process.record_start(config, sys.argv[2])
    store = metadata_store.MetadataStore(config)
    pipeline_type = store.put_context_type(pb.ContextType(name="pipeline"))
    run_type = store.put_context_type(pb.ContextType(name="pipeline_run"))
    node_type = store.put_context_type(pb.ContextType(name="node"))
    pipeline_id, run_id, node_id = store.put_contexts([
        pb.Context(type_id=pipeline_type, name=sys.argv[2]),
        pb.Context(type_id=run_type, name=sys.argv[3]),
        pb.Context(type_id=node_type, name=sys.argv[2] + ".Trainer"),
    ])
    store.put_parent_contexts([pb.ParentContext(child_id=run_id, parent_id=pipeline_id)])
    trainer = store.put_execution_type(pb.ExecutionType(name="tfx.components.Trainer"))
    execution = pb.Execution(type_id=trainer, last_known_state=pb.Execution.RUNNING)
    store.put_execution(execution, [], contexts=store.get_contexts_by_id(
        [pipeline_id, run_id, node_id]
    ))
    if sys.argv[4] == "finish":
        run_process.record_end(config, record)
        sys.exit(0)
    print("running", flush=True)
    time.sleep(600)
    """
)


def _start(tmp_path, how: str = "keep-running") -> tuple[str, subprocess.Popen]:
    db = str(tmp_path / "metadata.db")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, db, PIPELINE, RUN_ID, how],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    if how == "keep-running":
        assert child.stdout.readline().strip() == "running"
    else:
        assert child.wait(timeout=120) == 0
    return db, child


def test_a_killed_run_is_failed_in_the_store_and_lineage_runs(tmp_path):
    db, child = _start(tmp_path)
    try:
        run = open_store(db).run(RUN_ID)
        assert (run.status, run.status_reason) == ("running", "")
        [listed] = queries.list_runs(open_store(db))
        assert listed["status"] == "running"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    run = open_store(db).run(RUN_ID)
    assert run.status == "failed"
    assert f"pid {child.pid}" in run.status_reason
    assert [e.state for e in run.executions] == ["running"]  # MLMD itself still says running
    [listed] = queries.list_runs(open_store(db))
    assert listed["status"] == "failed" and listed["status_reason"] == run.status_reason
    assert "failed (process gone)" in render.runs([listed])


def test_the_web_app_shows_a_killed_run_as_failed_and_why(tmp_path):
    from apps.ui import data

    db, child = _start(tmp_path)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    table = data.runs_table.__wrapped__(db, PIPELINE)
    [row] = table.to_dict("records")
    assert row["status"] == "failed"
    assert row["decision"].startswith("not pushed: its process (pid ")


def test_a_process_that_recorded_its_end_leaves_no_running_run(tmp_path):
    db, _ = _start(tmp_path, "finish")  # e.g. Ctrl-C: the runner exits, TFX left RUNNING
    assert open_store(db).run(RUN_ID).status == "failed"


@pytest.mark.parametrize(
    "record, run_started_ms, expected",
    [
        # Another host, no end recorded: nobody here can tell, so it stays running.
        (RunProcess(PIPELINE, "elsewhere", 1, 1000, 0.0), 2000, "running"),
        # The record ended before this run started: not its process (e.g. Kubeflow's run).
        (RunProcess(PIPELINE, "elsewhere", 1, 1000, 0.0, ended_ms=1500), 2000, "running"),
        (RunProcess(PIPELINE, "elsewhere", 1, 1000, 0.0, ended_ms=2500), 2000, "failed"),
        # Another pipeline's process, or one started after the run: no match.
        (RunProcess("penguins_pipeline", "elsewhere", 1, 1000, 0.0, 2500), 2000, "running"),
        (RunProcess(PIPELINE, "elsewhere", 1, 3000, 0.0, ended_ms=3500), 2000, "running"),
    ],
)
def test_which_record_covers_a_run(record, run_started_ms, expected):
    assert checked_status("running", [record], PIPELINE, run_started_ms)[0] == expected
    assert checked_status("complete", [record], PIPELINE, run_started_ms)[0] == "complete"


def test_a_reused_pid_is_not_the_runner():
    me = os.getpid()
    younger = RunProcess(PIPELINE, os.uname().nodename, me, 0, process_started_s=1.0)
    assert younger.gone() is True  # this pid's process started long after 1970
    assert process_of([younger], PIPELINE, 10) is younger
