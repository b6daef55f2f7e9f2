"""`mlops gc` on a real multi-run history: the pipeline runs over four changing spans (the first
model served and labelled, later candidates held to thresholds they cannot meet, so nothing else
is pushed), then `mlops gc --apply --keep-last 2`. Bytes on disk drop by what the plan said; the
served, labelled model's lineage and the drift baseline keep their files (`mlops lineage trace`
still reaches the data); MLMD lists every deleted artifact as DELETED with an audit record; and a
re-run that needs a deleted artifact re-executes it instead of cache-hitting on missing files.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from ml_metadata.proto import metadata_store_pb2 as mlmd_pb2

from cli_support import Exit
from metadata import open_store
from metadata.store import DATA_GATE, EXAMPLE_GEN, properties_of
from mlops.cli import main as mlops_main
from pipeline.config import EvalThresholds
from pipeline.ingest import spans
from pipeline.local.run import run_pipeline
from pipeline.testing.samples import small_config, write_sample
from tests import drift_samples as ds
from tests.paths import PROJECT_ROOT
from upkeep import gc as gc_lib

pytestmark = pytest.mark.slow

SCHEMA = str(PROJECT_ROOT / "schema" / "schema.pbtxt")
SPANS = 4
KEEP_LAST = 2
# Later candidates cannot be blessed: the first model stays the one served and labelled.
UNREACHABLE = EvalThresholds(min_auc=0.999, min_accuracy=0.999)


def _pipeline_bytes(root: str) -> int:
    return gc_lib.size_of(root)


def _gc_args(config, *extra: str) -> list[str]:
    return [
        "gc",
        "--metadata",
        config.metadata_connection,
        "--pipeline-name",
        config.pipeline_name,
        "--pipeline-root",
        config.pipeline_root,
        "--serving-dir",
        config.model_serving_dir,
        *extra,
    ]


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    root = tmp_path_factory.mktemp("gc_history")
    data = write_sample(root / "data")
    first = small_config(root, data, skip_tuning=True)
    status, _ = run_pipeline(first)
    assert status == Exit.OK
    versions = sorted(p.name for p in Path(first.model_serving_dir).iterdir() if p.name.isdigit())
    assert len(versions) == 1
    served = versions[0]
    promoted = CliRunner().invoke(
        mlops_main,
        [
            "models",
            "--base-path",
            first.model_serving_dir,
            "--metadata",
            first.metadata_connection,
            "--server",
            "",
            "promote",
            served,
            "--label",
            "stable",
            "--reason",
            "first model",
        ],
    )
    assert promoted.exit_code == 0, promoted.output

    later = small_config(root, data, skip_tuning=True, thresholds=UNREACHABLE)
    for span in range(2, SPANS + 1):
        csv = ds.write_csv(root / f"span{span}.csv", ds.same_distribution_rows(start=span))
        spans.add_span(csv, data, SCHEMA)
        status, _ = run_pipeline(later)
        assert status == Exit.OK, f"run on span {span} failed"
    assert sorted(p.name for p in Path(first.model_serving_dir).iterdir() if p.name.isdigit()) == [
        served
    ]

    before = _pipeline_bytes(later.pipeline_root)
    dry = CliRunner().invoke(
        mlops_main, _gc_args(later, "--keep-last", "2", "--keep-days", "0", "--json")
    )
    assert dry.exit_code == 0, dry.output
    assert _pipeline_bytes(later.pipeline_root) == before  # a dry run deletes nothing
    started = time.monotonic()
    applied = CliRunner().invoke(
        mlops_main,
        _gc_args(later, "--keep-last", str(KEEP_LAST), "--keep-days", "0", "--apply", "--json"),
    )
    seconds = time.monotonic() - started
    assert applied.exit_code == 0, applied.output
    after = _pipeline_bytes(later.pipeline_root)
    print(
        f"\ngc figures: {SPANS} runs, before {before} B, after {after} B, "
        f"freed {before - after} B, gc --apply {seconds:.2f} s"
    )
    return {
        "config": later,
        "data": data,
        "served": served,
        "before": before,
        "after": after,
        "dry": json.loads(dry.output),
        "applied": json.loads(applied.output),
    }


def test_gc_frees_what_the_dry_run_planned(history):
    dry, applied = history["dry"], history["applied"]
    assert [i["artifact_id"] for i in dry["deleted"]] == [
        i["artifact_id"] for i in applied["deleted"]
    ]
    assert applied["deleted"], "a 4-run history kept to 2 runs must free something"
    assert history["before"] - history["after"] == applied["bytes_freed"] > 0
    for item in applied["deleted"]:
        assert not os.path.exists(item["uri"])
    assert not os.path.exists(os.path.join(history["config"].pipeline_root, gc_lib.TRASH_DIR)) or (
        not os.listdir(os.path.join(history["config"].pipeline_root, gc_lib.TRASH_DIR))
    )


def test_mlmd_lists_deleted_artifacts_with_an_audit_record(history):
    store = open_store(history["config"].metadata_connection)
    deleted_ids = {i["artifact_id"] for i in history["applied"]["deleted"]}
    states = store.artifacts_by_id(deleted_ids)
    assert {a.state for a in states.values()} == {mlmd_pb2.Artifact.DELETED}
    audit = store.actions(gc_lib.ACTION_TYPE)
    assert len(audit) == 1
    assert set(audit[0].artifact_ids) == deleted_ids
    assert audit[0].properties["action"] == "gc"
    assert audit[0].properties["bytes_freed"] == str(history["applied"]["bytes_freed"])
    assert "keep_last=2" in audit[0].properties["reason"]
    assert audit[0].execution_id == history["applied"]["applied"]["audit_execution_id"]


def test_served_and_labelled_model_lineage_still_reaches_the_data(history):
    config = history["config"]
    traced = CliRunner().invoke(
        mlops_main,
        ["lineage", "--metadata", config.metadata_connection, "trace", history["served"], "--json"],
    )
    assert traced.exit_code == 0, traced.output
    trace = json.loads(traced.output)
    inputs = trace["summary"]["inputs"]
    assert inputs and all(os.path.isfile(f) for i in inputs for f in i["files"])
    store = open_store(config.metadata_connection)
    lineage = store.artifacts_by_id(a["id"] for a in trace["artifacts"])
    in_root = [a for a in lineage.values() if gc_lib.under(a.uri, config.pipeline_root)]
    assert {store.artifact_type(a) for a in in_root} >= {"Examples", "Model", "PushedModel"}
    for artifact in in_root:
        assert artifact.state == mlmd_pb2.Artifact.LIVE, artifact
        assert os.path.exists(artifact.uri), artifact.uri
    kept = {i["artifact_id"]: i["reason"] for i in history["applied"]["kept"]}
    reasons = {kept[a.id] for a in in_root if a.id in kept}
    assert any("served version" in r and "labelled 'stable'" in r for r in reasons)


def test_drift_baseline_is_intact(history):
    config = history["config"]
    store = open_store(config.metadata_connection)
    accepted = store.node_artifacts(config.pipeline_name, DATA_GATE, "ExampleStatistics")
    newest = max(accepted, key=lambda a: properties_of(a).get("span", -1))
    assert properties_of(newest)["span"] == SPANS
    assert os.path.isdir(newest.uri) and os.listdir(newest.uri)


def test_a_rerun_needing_a_deleted_artifact_re_executes_it(history):
    config, data = history["config"], history["data"]
    store = open_store(config.metadata_connection)
    deleted = [
        a
        for a in store.artifacts_by_id(
            i["artifact_id"] for i in history["applied"]["deleted"]
        ).values()
        if store.artifact_type(a) == "Examples" and properties_of(a).get("span") == 2
    ]
    assert deleted, "span 2's examples were deleted (run 2 is outside keep-last 2)"
    # The data root as it was for run 2: ExampleGen's cache key matches run 2's execution, whose
    # output is now DELETED, so TFX must run it again instead of handing on missing files.
    aside = data.parent / "aside"
    aside.mkdir()
    for span in range(3, SPANS + 1):
        shutil.move(str(data / f"span-{span}"), str(aside / f"span-{span}"))
    try:
        status, report = run_pipeline(config)
    finally:
        for span in range(3, SPANS + 1):
            shutil.move(str(aside / f"span-{span}"), str(data / f"span-{span}"))
    assert status == Exit.OK
    store = open_store(config.metadata_connection)
    run = store.latest_run(config.pipeline_name)
    example_gen = run.execution(EXAMPLE_GEN)
    assert example_gen.state == "complete"  # executed, not cached
    examples = store.outputs(example_gen.id)["examples"]
    assert [properties_of(a).get("span") for a in examples] == [2]
    assert examples[0].state == mlmd_pb2.Artifact.LIVE and os.path.isdir(examples[0].uri)
    assert examples[0].id != deleted[0].id


def test_store_check_agrees_after_gc(history):
    config = history["config"]
    result = CliRunner().invoke(
        mlops_main,
        [
            "store",
            "check",
            "--metadata",
            config.metadata_connection,
            "--pipeline-name",
            config.pipeline_name,
            "--pipeline-root",
            config.pipeline_root,
            "--json",
        ],
    )
    report = json.loads(result.output)
    assert report["missing"] == [], report
    assert result.exit_code in (0, 1)
