"""The gc plan and its application on a synthetic TFX history in a real MLMD store (no pipeline
run): what is kept and why, what is deleted, the audit record, store check/repair, backup/restore,
and the same plan on a real PostgreSQL store.

History (tests/upkeep/mlmd_history.py): five runs over spans 1-5. Run 1 pushed version 100, still
served; run 2 pushed version 200, archived but labelled 'stable'; run 4 blessed and pushed 400,
which is neither served nor labelled (only "most recently blessed" protects its model); runs 3
and 5 were not blessed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ml_metadata.proto import metadata_store_pb2 as mlmd_pb2

from cli_support import Exit
from metadata import open_store
from mlops.cli import main as mlops_main
from modules import dataset_spec
from modules.dataset_spec import Retention
from tests.upkeep import mlmd_history as mh
from upkeep import gc as gc_lib
from upkeep import store_check

DAY_MS = 86_400_000
MISSING = Exit.INPUT_MISSING


def _build(config, tmp_path) -> mh.History:
    history = mh.History(config, str(tmp_path / "root"), str(tmp_path / "imported_hp"))
    history.add_run(1, blessed=True, pushed_version="100")
    history.add_run(2, blessed=True, pushed_version="200")
    history.add_run(3)
    history.add_run(4, blessed=True, pushed_version="400")
    history.add_run(5)
    serving = tmp_path / "serving" / "synthetic"
    (serving / "100").mkdir(parents=True)
    (serving.parent / "models.config").write_text(
        f'model_config_list {{ config {{ name: "synthetic" base_path: "{serving}" '
        'model_platform: "tensorflow" version_labels { key: "stable" value: 200 } } }'
    )
    return history


@pytest.fixture
def sqlite_history(tmp_path):
    path = str(tmp_path / "metadata.db")
    history = _build(mh.sqlite_config(path), tmp_path)
    history.path = path
    history.serving = str(tmp_path / "serving" / "synthetic")
    return history


def _plan(store, history, keep_last=1, keep_days=0.0, now_ms=None) -> gc_lib.Plan:
    return gc_lib.plan(
        store,
        pipeline_name=mh.PIPELINE,
        pipeline_root=history.root,
        serving_dir=history.serving,
        model_name="synthetic",
        policy=Retention(keep_last=keep_last, keep_days=keep_days),
        now_ms=now_ms,
    )


def _expected_deleted(history: mh.History) -> set[int]:
    _, _, r3, r4, _ = (run.artifacts for run in history.runs)
    # An unblessed run outside keep-last 1, in nobody's lineage; and a push no longer served
    # nor labelled.
    return {*r3.values(), r4["pushed_model"]}


def test_plan_keeps_lineage_of_served_labelled_blessed_and_the_drift_baseline(sqlite_history):
    h = sqlite_history
    store = open_store(h.path)
    plan = _plan(store, h)
    deleted = {i.artifact_id for i in plan.deleted}
    assert deleted == _expected_deleted(h)
    kept = {i.artifact_id: i.reason for i in plan.kept}
    r1, r2, _, r4, r5 = (run.artifacts for run in h.runs)
    assert kept[r1["pushed_model"]] == "lineage of served version 100"
    assert kept[r1["examples"]] == "lineage of served version 100"
    assert kept[r2["model"]] == "lineage of version 200 labelled 'stable'"
    # A sibling output of a step in the lineage stays with it (the evaluation beside a blessing).
    assert kept[r1["evaluation"]] == "lineage of served version 100"
    assert kept[r4["model"]] == "lineage of the most recently blessed model"
    assert kept[r5["accepted_statistics"]] == "drift baseline: accepted statistics of span 5"
    assert kept[r5["pushed_model"]].endswith("one of the last 1 runs")
    assert kept[h.hyperparameters].startswith("lineage of")  # and outside the root: never deleted
    assert plan.bytes_freed == len(deleted) * mh.PAYLOAD_BYTES
    # The data checks of a kept lineage's examples stay with it (a trace shows them, the skew
    # monitor reads the statistics).
    assert kept[r1["statistics"]] == "lineage of served version 100"
    assert kept[r1["drift"]] == kept[r1["accepted_statistics"]] == kept[r1["statistics"]]
    # The baseline inputs are not followed: run 5's drift check read runs 1-4's accepted
    # statistics as `history`, yet run 3's are deleted.
    assert h.runs[2].artifacts["accepted_statistics"] in deleted


def test_keep_days_and_keep_last_keep_everything_young_or_recent(sqlite_history):
    h = sqlite_history
    store = open_store(h.path)
    now = int(time.time() * 1000)
    assert _plan(store, h, keep_last=1, keep_days=1, now_ms=now).deleted == []
    assert _plan(store, h, keep_last=5).deleted == []
    # A day later, the age rule no longer protects anything.
    assert _plan(store, h, keep_days=1, now_ms=now + 2 * DAY_MS).deleted != []


def test_apply_deletes_payloads_marks_deleted_and_audits(sqlite_history):
    h = sqlite_history
    store = open_store(h.path, writable=True)
    plan = _plan(store, h)
    result = gc_lib.apply(store, plan, "tester@ci")
    assert sorted(result.deleted_ids) == sorted(i.artifact_id for i in plan.deleted)
    assert result.bytes_freed == plan.bytes_freed
    for item in plan.deleted:
        assert not os.path.exists(item.uri)
    for item in plan.kept:
        assert os.path.exists(item.uri), item
    states = open_store(h.path).artifacts_by_id(result.deleted_ids)
    assert {a.state for a in states.values()} == {mlmd_pb2.Artifact.DELETED}
    [audit] = open_store(h.path).actions(gc_lib.ACTION_TYPE)
    assert audit.execution_id == result.audit_execution_id
    assert sorted(audit.artifact_ids) == sorted(result.deleted_ids)
    assert audit.properties["who"] == "tester@ci" and audit.properties["action"] == "gc"
    assert not os.listdir(os.path.join(h.root, gc_lib.TRASH_DIR))
    # Deleted artifacts keep their metadata and lineage: their producers are still recorded.
    assert set(open_store(h.path).producers(result.deleted_ids)) == set(result.deleted_ids)
    # Idempotent: nothing left to delete under the same policy.
    assert _plan(open_store(h.path), h).deleted == []


def test_a_failed_mlmd_write_puts_the_files_back(sqlite_history, monkeypatch):
    h = sqlite_history
    store = open_store(h.path, writable=True)
    plan = _plan(store, h)
    victim = plan.deleted[0]

    def refuse(ids):
        raise RuntimeError("store went away")

    monkeypatch.setattr(store, "mark_deleted", refuse)
    with pytest.raises(RuntimeError, match="went away"):
        gc_lib.apply(store, plan, "tester")
    assert os.path.isfile(os.path.join(victim.uri, "payload"))
    assert open_store(h.path).actions(gc_lib.ACTION_TYPE) == []


def _cli(*args: str):
    return CliRunner().invoke(mlops_main, list(args))


def _where(h) -> list[str]:
    return ["--metadata", h.path, "--pipeline-name", mh.PIPELINE, "--pipeline-root", h.root]


def test_gc_cli_dry_run_then_apply(sqlite_history):
    h = sqlite_history
    gc_args = ["gc", *_where(h), "--serving-dir", h.serving, "--model-name", "synthetic"]
    gc_args += ["--keep-last", "1", "--keep-days", "0"]
    dry = _cli(*gc_args)
    assert dry.exit_code == 0, dry.output
    assert f"Would delete {len(_expected_deleted(h))} artifact(s)" in dry.output
    assert "Dry run: nothing deleted" in dry.output
    assert all(os.path.exists(a) for a in (h.root,))
    applied = _cli(*gc_args, "--apply", "--show-kept")
    assert applied.exit_code == 0, applied.output
    assert "Marked DELETED" in applied.output and "audit record: execution" in applied.output
    assert "lineage of served version 100" in applied.output
    again = json.loads(_cli(*gc_args, "--json").output)
    assert again["deleted"] == [] and again["bytes_freed"] == 0


@pytest.mark.parametrize(
    "args, message, status",
    [
        (["--keep-last", "0"], "0 is not in the range x>=1", Exit.FAILED),
        (
            ["--metadata", "/nonexistent/metadata.db"],
            "Error: metadata store not found",
            Exit.INPUT_MISSING,
        ),
        (["--dataset", "no_such_dataset"], "Error: ", Exit.FAILED),
        (["--pipeline-name", "nope"], "pipelines there: synthetic_pipeline", Exit.INPUT_MISSING),
    ],
)
@pytest.mark.parametrize("command", [["gc"], ["store", "check"]])
def test_upkeep_cli_bad_input_is_one_line(sqlite_history, command, args, message, status):
    if command != ["gc"] and args[0] == "--keep-last":
        message = "No such option '--keep-last'"
    result = _cli(*command, "--metadata", sqlite_history.path, *args)
    assert result.exit_code == status
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_store_check_finds_hand_deleted_and_unnamed_files_and_repairs(sqlite_history):
    h = sqlite_history
    check = ["store", "check", *_where(h)]
    clean = _cli(*check)
    assert clean.exit_code == 0, clean.output
    victim = h.runs[4].artifacts["model"]
    uri = open_store(h.path).artifacts_by_id([victim])[victim].uri
    for name in os.listdir(uri):
        os.unlink(os.path.join(uri, name))
    os.rmdir(uri)
    orphan = os.path.join(h.root, "Trainer", "model", "99999")
    os.makedirs(orphan)
    found = _cli(*check, "--json")
    assert found.exit_code == 1
    report = json.loads(found.output)
    assert [m["artifact_id"] for m in report["missing"]] == [victim]
    assert report["unnamed"] == [orphan]
    repaired = _cli(*check, "--repair")
    assert f"missing  #{victim} Model" in repaired.output
    assert "Marked 1 DELETED" in repaired.output
    store = open_store(h.path)
    assert store.artifacts_by_id([victim])[victim].state == mlmd_pb2.Artifact.DELETED
    [audit] = store.actions(gc_lib.ACTION_TYPE)
    assert audit.properties["action"] == "store-check-repair" and audit.artifact_ids == [victim]
    assert store_check.check(store, pipeline_name=mh.PIPELINE, pipeline_root=h.root).missing == []


def test_backup_restore_round_trips_the_store(sqlite_history, tmp_path):
    h = sqlite_history
    backup = str(tmp_path / "backups" / "metadata-1.db")
    made = _cli("store", "backup", backup, "--metadata", h.path)
    assert made.exit_code == 0, made.output
    assert _cli("store", "backup", backup, "--metadata", h.path).exit_code == Exit.REJECTED
    before = sorted((a.id, a.state) for a in open_store(h.path).all_artifacts())
    assert sorted((a.id, a.state) for a in open_store(backup).all_artifacts()) == before
    # The store changes (a gc), then the backup is restored: the old state is back.
    gc = _cli("gc", *_where(h), "--keep-last", "1", "--keep-days", "0", "--apply")
    assert gc.exit_code == 0, gc.output
    assert sorted((a.id, a.state) for a in open_store(h.path).all_artifacts()) != before
    restored = _cli("store", "restore", backup, "--metadata", h.path)
    assert restored.exit_code == 0, restored.output
    assert sorted((a.id, a.state) for a in open_store(h.path).all_artifacts()) == before
    assert sqlite3.connect(h.path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_backup_while_another_connection_writes_is_consistent(sqlite_history, tmp_path):
    h = sqlite_history
    writer = sqlite3.connect(h.path)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("CREATE TABLE scratch (x)")  # an open write transaction, not committed
    backup = str(tmp_path / "during.db")
    done = _cli("store", "backup", backup, "--metadata", h.path)
    writer.rollback()
    writer.close()
    assert done.exit_code == 0, done.output
    tables = {r[0] for r in sqlite3.connect(backup).execute("SELECT name FROM sqlite_master")}
    assert "scratch" not in tables and "Artifact" in tables


@pytest.mark.parametrize(
    "args, message, status",
    [
        (["backup", "x.db", "--metadata", "postgresql://u@h:5432/db"], "pg_dump -Fc", Exit.FAILED),
        (
            ["restore", "/nonexistent.db", "--metadata", "m.db"],
            "backup not found",
            Exit.INPUT_MISSING,
        ),
    ],
)
def test_store_commands_refuse_clearly(args, message, status):
    result = _cli("store", *args)
    assert result.exit_code == status and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_restore_refuses_a_file_that_is_not_a_store(sqlite_history, tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    result = _cli("store", "restore", str(junk), "--metadata", sqlite_history.path)
    assert result.exit_code == 2 and "cannot read metadata store" in result.output
    assert open_store(sqlite_history.path).all_artifacts()  # untouched


def test_plan_and_apply_on_postgresql(tmp_path, monkeypatch):
    from metadata.connection import connection_config_from_url
    from tests.pg_fixture import postgres_server

    with postgres_server() as server:
        monkeypatch.setenv("MLMD_DB_PASSWORD", server.password)
        url = server.url()
        h = _build(connection_config_from_url(url), tmp_path)
        h.serving = str(tmp_path / "serving" / "synthetic")
        store = open_store(url, writable=True)
        plan = _plan(store, h)
        assert {i.artifact_id for i in plan.deleted} == _expected_deleted(h)
        result = gc_lib.apply(store, plan, "tester")
        reread = open_store(url)
        states = reread.artifacts_by_id(result.deleted_ids)
        assert {a.state for a in states.values()} == {mlmd_pb2.Artifact.DELETED}
        [audit] = reread.actions(gc_lib.ACTION_TYPE)
        assert sorted(audit.artifact_ids) == sorted(result.deleted_ids)


# ---- the retention block of the dataset spec ------------------------------------------------
def test_retention_defaults_and_the_taxi_spec():
    assert dataset_spec.load("taxi").retention == Retention(keep_last=10, keep_days=14)
    assert dataset_spec.load("penguins").retention == Retention()
    # Not an executor's business: editing it must not invalidate TFX's cache.
    assert "retention" not in dataset_spec.load("taxi").to_config()


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["keep_last", "keep_days", "keep", "days"]),
        st.one_of(st.integers(-5, 50), st.floats(allow_nan=True), st.text(max_size=3), st.none()),
    )
)
def test_retention_block_parses_or_fails_in_one_line(block):
    try:
        retention = dataset_spec._retention("spec.yaml", block)  # noqa: SLF001
    except dataset_spec.SpecError as e:
        assert str(e).startswith("spec.yaml: retention") and "\n" not in str(e)
    else:
        assert retention.keep_last >= 1 and retention.keep_days >= 0
