"""The metadata layer's typed queries against the real MLMD store of the shared small run."""

from __future__ import annotations

import dataclasses
import os

import pytest

from metadata import MetadataError, open_store
from metadata.evaluation import OVERALL, read_evaluation, read_failed_checks
from metadata.store import EVALUATOR, PUSHER

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(small_pipeline):
    assert small_pipeline.exit_code == 0, "the shared small pipeline run failed"
    return open_store(small_pipeline.metadata_path)


# Other tests re-run the shared small pipeline on the same store, so these look up the fixture's
# own run by id instead of assuming it is the only (or the latest) one.
def test_runs_with_state_duration_and_executions(store, small_pipeline):
    runs = store.runs(small_pipeline.config.pipeline_name)
    [run] = [r for r in runs if r.run_id == small_pipeline.report.run_id]
    assert run.pipeline == small_pipeline.config.pipeline_name and run.status == "complete"
    assert {e.node_id for e in run.executions} == {
        c.node_id for c in small_pipeline.report.components
    }
    assert all(e.state == "complete" and e.seconds >= 0 for e in run.executions)
    assert run.duration_s >= max(e.seconds for e in run.executions) - 1
    assert store.latest_run(small_pipeline.config.pipeline_name) == runs[0]
    assert [r.started_ms for r in runs] == sorted((r.started_ms for r in runs), reverse=True)
    assert store.runs("no-such-pipeline") == []
    trainer = run.execution("Trainer")
    assert trainer.properties["train_args"] == {"num_steps": small_pipeline.config.train_steps}
    assert trainer.id in [e.id for e in store.node_executions(run.pipeline, "Trainer")]
    json_ready = dataclasses.asdict(run)
    assert json_ready["executions"][0]["run_id"] == run.run_id


def test_inputs_and_outputs_per_key(store, small_pipeline):
    run = store.run(small_pipeline.report.run_id)
    evaluator = run.execution(EVALUATOR)
    inputs = store.inputs(evaluator.id)
    assert {"model", "examples"} <= set(inputs)
    assert inputs["model"][0].id == small_pipeline.report.candidate_model_id
    outputs = store.outputs(evaluator.id)
    assert {store.artifact_type(a) for a in outputs["evaluation"]} == {"ModelEvaluation"}
    assert store.run_outputs(run.run_id)[PUSHER]["pushed_model"][0].uri


def test_spans_with_gate_and_check_artifacts(store, small_pipeline):
    spans = store.spans(small_pipeline.config.pipeline_name)
    [span] = [s for s in spans if s.run_id == small_pipeline.report.run_id]
    assert span.span == small_pipeline.report.span == 1
    assert span.gate_passed is True and span.previous_span is None
    assert os.path.isfile(os.path.join(span.statistics_uri, "Split-train", "FeatureStats.pb"))
    assert os.path.isdir(span.anomalies_uri) and os.path.isdir(span.drift_uri)
    assert store.last_accepted_span(small_pipeline.config.pipeline_name).span == span.span
    assert store.latest_statistics_uri(small_pipeline.config.pipeline_name) == span.statistics_uri


def test_pushed_models_link_version_destination_run_and_model(store, small_pipeline):
    [pushed] = store.pushed_models(small_pipeline.config.pipeline_name)
    assert pushed.pushed and pushed.destination.rstrip("/") == small_pipeline.report.pushed_path
    assert pushed.version == os.path.basename(pushed.destination.rstrip("/"))
    assert pushed.run_id == small_pipeline.report.run_id
    assert pushed.model_id == small_pipeline.report.candidate_model_id


def test_evaluation_overall_and_per_slice(store, small_pipeline):
    run = store.run(small_pipeline.report.run_id)
    [evaluation_artifact] = store.outputs(run.execution(EVALUATOR).id)["evaluation"]
    evaluation = read_evaluation(evaluation_artifact.uri)
    assert evaluation.slices[0] == OVERALL
    hours = [s for s in evaluation.slices if s.startswith("trip_start_hour=")]
    assert len(hours) > 3
    overall = evaluation.candidate_metrics()
    assert overall == small_pipeline.report.metrics and "auc" in overall
    per_hour = [evaluation.candidate_metrics(s)["example_count"] for s in hours]
    assert all(n > 0 for n in per_hour) and sum(per_hour) <= overall["example_count"]
    assert set(evaluation.per_slice("auc")) <= set(evaluation.slices)
    assert read_failed_checks(evaluation_artifact.uri) == small_pipeline.report.failed_checks


def test_unknown_run_and_type_are_clear_errors(store):
    with pytest.raises(MetadataError, match="unknown run"):
        store.run("no-such-run")
    with pytest.raises(MetadataError, match="unknown artifact type"):
        store.artifacts_of_type("Nope")
