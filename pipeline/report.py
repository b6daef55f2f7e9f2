"""What a pipeline run did, read back from ML Metadata: the runner's end-of-run summary.

Reading MLMD rather than in-process state means the report is also right for components
that were skipped because their results were cached.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow_model_analysis as tfma
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.components import Evaluator
from tfx.types import artifact_utils

from pipeline.anomalies import Anomaly, load_anomalies
from pipeline.drift import DRIFT_VALIDATOR, PREVIOUS_SPAN_PROPERTY, Measurement, load_measurements

_STATES = metadata_store_pb2.Execution.State


@dataclasses.dataclass
class ComponentRun:
    node_id: str
    state: str
    seconds: float
    execution_id: int


@dataclasses.dataclass
class MetricCheck:
    """A threshold the candidate failed (TFMA records only the failures)."""

    slice: str
    metric: str
    value: float
    threshold: str


@dataclasses.dataclass
class RunReport:
    run_id: str
    components: list[ComponentRun]
    anomalies: list[Anomaly]
    metrics: dict[str, float]
    failed_checks: list[MetricCheck]
    blessed: bool | None
    pushed_path: str | None
    metadata: str
    candidate_model_id: int | None = None
    baseline_model_id: int | None = None
    # The span ExampleGen ingested, the span its statistics were compared with (None: no
    # earlier span), and every drift measurement (feature, comparator, distance, threshold).
    span: int | None = None
    previous_span: int | None = None
    drift: list[Measurement] = dataclasses.field(default_factory=list)

    @property
    def drifted(self) -> list[Measurement]:
        """Drift measurements beyond their thresholds (what makes the data gate stop)."""
        return [m for m in self.drift if m.exceeded]

    @property
    def push_decision(self) -> str:
        """Why the run did or did not push a model, in one line."""
        if self.pushed_path:
            return f"pushed {self.pushed_path}"
        if self.blessed is None:
            if self.anomalies or self.drifted:
                what = " and ".join(
                    w for w, found in (("anomalies", self.anomalies), ("drift", self.drifted)) if found
                )
                return f"not pushed: the data gate stopped the run on {what} (nothing trained)"
            return "not pushed: the run stopped before the Evaluator"
        if self.candidate_model_id is not None and (
            self.candidate_model_id == self.baseline_model_id
        ):
            return "not pushed: the candidate is the served (baseline) model itself; nothing changed"
        if not self.blessed:
            failed = ", ".join(f"{c.metric} on {c.slice}" for c in self.failed_checks)
            return f"not pushed: not blessed ({failed or 'thresholds not met'})"
        return "not pushed: blessed, but the Pusher did not run"


def _node_id(store: metadata_store.MetadataStore, execution_id: int, pipeline_name: str) -> str:
    for context in store.get_contexts_by_execution(execution_id):
        if context.type == "node":
            return context.name.removeprefix(f"{pipeline_name}.")
    return "?"


def _outputs(store, execution_id: int) -> list[metadata_store_pb2.Artifact]:
    events = store.get_events_by_execution_ids([execution_id])
    ids = [e.artifact_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT]
    return store.get_artifacts_by_id(ids) if ids else []


def _custom(artifact: metadata_store_pb2.Artifact, key: str):
    if key not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[key]
    return getattr(value, value.WhichOneof("value"))


def latest_run_report(
    connection_config: metadata_store_pb2.ConnectionConfig, pipeline_name: str, metadata: str
) -> RunReport | None:
    """Report on the newest run of `pipeline_name` in the store (None if it never ran)."""
    store = metadata_store.MetadataStore(connection_config)
    runs = [
        c
        for c in store.get_contexts_by_type("pipeline_run")
        if any(
            p.name == pipeline_name
            for p in store.get_parent_contexts_by_context(c.id)
        )
    ] or store.get_contexts_by_type("pipeline_run")
    if not runs:
        return None
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    executions = sorted(
        store.get_executions_by_context(run.id), key=lambda e: (e.create_time_since_epoch, e.id)
    )
    report = RunReport(run.name, [], [], {}, [], None, None, metadata)
    for execution in executions:
        node_id = _node_id(store, execution.id, pipeline_name)
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1e3
        report.components.append(
            ComponentRun(node_id, _STATES.Name(execution.last_known_state), seconds, execution.id)
        )
        for artifact in _outputs(store, execution.id):
            _read_artifact(store, artifact, report, node_id)
        if node_id == Evaluator.__name__:
            inputs = _inputs_by_key(store, execution.id)
            report.candidate_model_id = next(iter(inputs.get("model", [])), None)
            report.baseline_model_id = next(iter(inputs.get("baseline_model", [])), None)
    return report


def _inputs_by_key(store, execution_id: int) -> dict[str, list[int]]:
    """Input artifact ids per input key. One event can carry several keys: MLMD records an
    artifact once per execution, e.g. when the candidate is also the baseline model."""
    by_key: dict[str, list[int]] = {}
    for event in store.get_events_by_execution_ids([execution_id]):
        if event.type != metadata_store_pb2.Event.INPUT:
            continue
        for step in event.path.steps:
            if step.HasField("key"):
                by_key.setdefault(step.key, []).append(event.artifact_id)
    return by_key


def _read_artifact(
    store, artifact: metadata_store_pb2.Artifact, report: RunReport, node_id: str = ""
) -> None:
    type_name = store.get_artifact_types_by_id([artifact.type_id])[0].name
    if type_name == "ExampleAnomalies":
        splits = artifact_utils.decode_split_names(
            artifact.properties["split_names"].string_value
        )
        if node_id == DRIFT_VALIDATOR:
            report.drift = load_measurements(artifact.uri, splits)
            previous = _custom(artifact, PREVIOUS_SPAN_PROPERTY)
            report.previous_span = previous if previous is not None and previous >= 0 else None
        else:
            report.anomalies = load_anomalies(artifact.uri, splits)
    elif type_name == "Examples" and node_id == "CsvExampleGen":
        span = _custom(artifact, "span")
        report.span = span if span is not None else artifact.properties["span"].int_value
    elif type_name == "ModelEvaluation":
        _read_evaluation(artifact.uri, report)
    elif type_name == "ModelBlessing":
        report.blessed = bool(_custom(artifact, "blessed"))
    elif type_name == "PushedModel" and _custom(artifact, "pushed"):
        report.pushed_path = _custom(artifact, "pushed_destination")


def _slice_name(slice_key) -> str:
    parts = []
    for key in slice_key.single_slice_keys:
        value = getattr(key, key.WhichOneof("kind"))
        parts.append(f"{key.column}={value.decode() if isinstance(value, bytes) else value}")
    return ",".join(parts) or "overall"


def _read_evaluation(uri: str, report: RunReport) -> None:
    """Overall-slice TFMA metrics (not the Keras-compiled duplicates) and failed thresholds."""
    if not os.path.exists(uri):
        return
    for slice_metrics in tfma.load_metrics(uri):
        if slice_metrics.slice_key.single_slice_keys:
            continue
        for item in slice_metrics.metric_keys_and_values:
            if not item.key.HasField("example_weighted"):
                continue  # Keras-compiled metrics that TFMA also reports; TFMA's own win.
            if item.value.HasField("double_value"):
                name = item.key.name + (" (change vs baseline)" if item.key.is_diff else "")
                if item.key.model_name == "baseline" and not item.key.is_diff:
                    continue  # the candidate's value and its change say it all
                report.metrics[name] = item.value.double_value.value
    validation = tfma.load_validation_result(uri)
    for per_slice in validation.metric_validations_per_slice:
        for failure in per_slice.failures:
            report.failed_checks.append(
                MetricCheck(
                    _slice_name(per_slice.slice_key),
                    failure.metric_key.name + (" (change)" if failure.metric_key.is_diff else ""),
                    failure.metric_value.double_value.value,
                    " ".join(str(failure.metric_threshold).split()),
                )
            )
