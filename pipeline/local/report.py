"""What a pipeline run did, read back from ML Metadata: the runner's end-of-run summary.

Reading MLMD rather than in-process state means the report is also right for components
that were skipped because their results were cached.
"""

from __future__ import annotations

import dataclasses

from ml_metadata.proto import metadata_store_pb2
from tfx.types import artifact_utils

from data_stats.anomalies import Anomaly, load_anomalies
from data_stats.compare import Measurement, load_measurements
from metadata.evaluation import MetricCheck, read_evaluation, read_failed_checks
from metadata.node_ids import DATA_GATE, EVALUATOR, is_example_gen
from metadata.store import (
    MetadataStore,
    open_store,
    properties_of,
    span_of,
)
from modules.baselines import read_comparison
from pipeline.validation.drift import DRIFT_VALIDATOR, PREVIOUS_SPAN_PROPERTY
from pipeline.validation.quarantine import (
    MAX_QUARANTINE_FRACTION,
    QUARANTINE_TYPE,
    ROW_CLEANER,
    CleaningSummary,
)

__all__ = ["ComponentRun", "MetricCheck", "RunReport", "latest_run_report"]


@dataclasses.dataclass
class ComponentRun:
    """One component's execution in the run: state as MLMD names it (COMPLETE, CACHED, ...)."""

    node_id: str
    state: str
    seconds: float
    execution_id: int


@dataclasses.dataclass
class RunReport:
    """One run as the runner summarizes it: components, data checks, evaluation, push."""

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
    # The spans Transform read, so the model learnt from (the newest alone, or the training
    # window of `--train-spans N`); [] when nothing was trained.
    training_spans: list[int] = dataclasses.field(default_factory=list)
    # What the RowCleaner did (rows in, duplicates, quarantined by reason, where), and the
    # DataGate's threshold on the quarantined share (None: no cleaning / no gate ran).
    cleaning: CleaningSummary | None = None
    max_quarantine_fraction: float | None = None
    # The Trainer's comparison of candidate and baselines (modules/baselines.py), as the
    # Evaluator copied it, and the previously blessed model's value of its headline metric.
    comparison: dict | None = None
    previous_metric: float | None = None

    @property
    def model_comparison(self) -> list[str]:
        """Candidate vs baselines vs the previous model, the margin and the decision: lines."""
        c = self.comparison
        if not c:
            return []
        name, scores = c["metric"], c["scores"]
        better = "higher" if c["higher_is_better"] else "lower"
        lines = [f"{name} on {c['eval_rows']} eval rows ({better} is better):"]
        seconds = c.get("train_seconds", {})
        for model in ("candidate", "linear", "constant"):
            took = f"  ({seconds[model]:.1f} s to train)" if model in seconds else ""
            family = f" [{c['candidate_family']}]" if model == "candidate" else ""
            lines.append(f"  {model}{family}: {scores[model]:.4g}{took}")
        previous = (
            "none blessed yet" if self.previous_metric is None else f"{self.previous_metric:.4g}"
        )
        lines.append(f"  previous blessed model: {previous}")
        lines.append(
            f"  margin over linear: {c['gain_over_linear']:+.4g} "
            f"(needed > {c['required_gain']:.4g}, {c['margin_source']})"
        )
        lines.append(f"  exported: {c['exported']} model")
        lines.append(f"  decision: {c['decision']}")
        return lines

    @property
    def quarantine_exceeded(self) -> bool:
        """Whether the quarantined share is above the gate's threshold (a data-gate stop)."""
        return (
            self.cleaning is not None
            and self.max_quarantine_fraction is not None
            and self.cleaning.exceeds(self.max_quarantine_fraction)
        )

    @property
    def data_stops(self) -> list[str]:
        """What the data gate stops on that this run has: anomalies, drift, quarantine."""
        return [
            what
            for what, found in (
                ("anomalies", self.anomalies),
                ("drift", self.drifted),
                ("too many quarantined rows", self.quarantine_exceeded),
            )
            if found
        ]

    @property
    def drift_baseline(self) -> str | None:
        """Which span the drift check compared with, and why, in one line (None: no check ran)."""
        if not any(c.node_id == DRIFT_VALIDATOR for c in self.components):
            return None
        if self.previous_span is None:
            return "no earlier span passed the data gate: nothing to compare with"
        return f"compared with span {self.previous_span}: the last span that passed the data gate"

    @property
    def drifted(self) -> list[Measurement]:
        """Drift measurements beyond their thresholds (what makes the data gate stop)."""
        return [m for m in self.drift if m.exceeded]

    @property
    def push_decision(self) -> str:
        """Why the run did or did not push a model, in one line."""
        if self.pushed_path:
            if self.comparison and self.comparison["exported"] != "candidate":
                model = self.comparison["exported"]
                return f"pushed the {model} baseline (it beat the candidate): {self.pushed_path}"
            return f"pushed {self.pushed_path}"
        if self.blessed is None:
            if self.data_stops:
                what = " and ".join(self.data_stops)
                return f"not pushed: the data gate stopped the run on {what} (nothing trained)"
            return "not pushed: the run stopped before the Evaluator"
        if self.candidate_model_id is not None and (
            self.candidate_model_id == self.baseline_model_id
        ):
            return (
                "not pushed: the candidate is the served (baseline) model itself; nothing changed"
            )
        if not self.blessed:
            failed = ", ".join(f"{c.metric} on {c.slice}" for c in self.failed_checks)
            if self.comparison and not self.comparison["blessable"]:
                why = self.comparison["decision"].removeprefix("not blessed: ")
                failed = ", ".join(filter(None, [why, failed]))
            return f"not pushed: not blessed ({failed or 'thresholds not met'})"
        return "not pushed: blessed, but the Pusher did not run"


def latest_run_report(
    metadata: str | metadata_store_pb2.ConnectionConfig, pipeline_name: str
) -> RunReport | None:
    """Report on the newest run of `pipeline_name` in the store (None if it never ran)."""
    store = open_store(metadata)
    run = store.latest_run(pipeline_name)
    if run is None:
        return None
    report = RunReport(run.run_id, [], [], {}, [], None, None, store.where)
    report.training_spans = store.training_spans(run)
    for execution in run.executions:
        report.components.append(
            ComponentRun(
                execution.node_id, execution.state.upper(), execution.seconds, execution.id
            )
        )
        for artifacts in store.outputs(execution.id).values():
            for artifact in artifacts:
                read_artifact(store, artifact, report, execution.node_id)
        if execution.node_id == DATA_GATE:
            threshold = execution.properties.get(MAX_QUARANTINE_FRACTION)
            if isinstance(threshold, int | float):
                report.max_quarantine_fraction = float(threshold)
        if execution.node_id == EVALUATOR:
            inputs = store.inputs(execution.id)
            report.candidate_model_id = next((a.id for a in inputs.get("model", [])), None)
            report.baseline_model_id = next((a.id for a in inputs.get("baseline_model", [])), None)
    return report


def _custom(artifact: metadata_store_pb2.Artifact, key: str):
    if key not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[key]
    return getattr(value, value.WhichOneof("value"))


def read_artifact(
    store: MetadataStore, artifact: metadata_store_pb2.Artifact, report: RunReport, node_id: str
) -> None:
    """Fold what one output artifact of `node_id` says into `report` (span, anomalies, drift,
    metrics, blessing, push)."""
    type_name = store.artifact_type(artifact)
    if type_name == "ExampleAnomalies":
        splits = artifact_utils.decode_split_names(artifact.properties["split_names"].string_value)
        if node_id == DRIFT_VALIDATOR:
            report.drift = load_measurements(artifact.uri, splits)
            previous = _custom(artifact, PREVIOUS_SPAN_PROPERTY)
            report.previous_span = previous if previous is not None and previous >= 0 else None
        else:
            report.anomalies = load_anomalies(artifact.uri, splits)
    elif type_name == QUARANTINE_TYPE and node_id == ROW_CLEANER:
        report.cleaning = CleaningSummary.from_properties(properties_of(artifact), artifact.uri)
    elif type_name == "Examples" and is_example_gen(node_id):
        report.span = span_of(artifact)
    elif type_name == "ModelEvaluation":
        evaluation = read_evaluation(artifact.uri)
        report.metrics.update(evaluation.candidate_metrics())
        report.failed_checks.extend(read_failed_checks(artifact.uri))
        report.comparison = read_comparison(artifact.uri)
        if report.comparison:
            previous = evaluation.metrics().get(f"baseline:{report.comparison['metric']}")
            report.previous_metric = previous
    elif type_name == "ModelBlessing" and node_id == EVALUATOR:
        # Only the Evaluator's: LatestBlessedModelResolver re-publishes the baseline's blessing.
        report.blessed = bool(_custom(artifact, "blessed"))
    elif type_name == "PushedModel" and _custom(artifact, "pushed"):
        report.pushed_path = _custom(artifact, "pushed_destination")
