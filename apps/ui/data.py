"""Everything the web app reads from ML Metadata and the artifacts it points to.

The one place the app touches MLMD: pages get plain dataclasses, dicts and DataFrames, never MLMD or
TFX protos. It wraps the project's readers: metadata/ and lineage.queries for runs, traces and
diffs, pipeline.local.report's artifact reader for anomalies, drift, metrics and the push decision,
data_stats for statistics files.

Reads are cached with Streamlit's st.cache_data for `CACHE_TTL` seconds, keyed on the store
URL (and the other arguments), so a page re-render on a store with many runs costs one lookup,
while a new pipeline run shows up within the TTL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re

import pandas as pd
import streamlit as st

from modules import features

CACHE_TTL = int(os.environ.get("MLOPS_UI_CACHE_TTL", "30"))
_cache = st.cache_data(ttl=CACHE_TTL, show_spinner=False)


class DataUnavailable(Exception):
    """The store (or an artifact it names) cannot answer; the message is shown to the user."""


# ---- plain records -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Component:
    name: str
    state: str
    start: dt.datetime
    end: dt.datetime
    seconds: float
    execution_id: int


@dataclasses.dataclass(frozen=True)
class Threshold:
    metric: str
    kind: str  # "value >= bound" or "change vs baseline"
    bound: float
    direction: str  # "higher is better" / "lower is better"

    @property
    def key(self) -> str:
        """TFMA metric key of a Keras class (AUC -> auc, BinaryAccuracy -> binary_accuracy)."""
        return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", self.metric).lower()


@dataclasses.dataclass
class RunDetail:
    run_id: str
    pipeline: str
    start: dt.datetime | None
    duration_s: float
    status: str
    span: int | None
    previous_span: int | None
    blessed: bool | None
    pushed_path: str | None
    pushed_version: str | None
    decision: str
    components: list[Component]
    anomalies: pd.DataFrame  # split, feature, kind, description
    drift: pd.DataFrame  # split, feature, comparator, distance, threshold, exceeded
    metrics: dict[str, float]  # candidate overall metrics and "(change vs baseline)" entries
    failed_checks: pd.DataFrame  # slice, metric, value, threshold
    thresholds: list[Threshold]
    evaluation_uri: str | None
    statistics_uri: str | None
    statistics_splits: list[str]
    transform_uri: str | None
    candidate_model_id: int | None
    baseline_model_id: int | None
    # The Trainer's comparison with the run's baselines (modules/baselines.py) and the previous
    # blessed model's value of its metric; the exported model's permutation importance
    # (modules/importance.py). None: the run has no evaluation, or predates them.
    comparison: dict | None = None
    previous_metric: float | None = None
    importance: dict | None = None

    @property
    def pushed(self) -> bool:
        return bool(self.pushed_path)


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One input of the predict form: bounds from training statistics, choices from Transform."""

    name: str
    kind: str  # "float" | "int" | "choice"
    dtype: str  # modules.features.raw_dtype: int64 | float | bytes
    minimum: float | None = None
    maximum: float | None = None
    default: object = None
    choices: tuple[str, ...] = ()

    @property
    def initial(self) -> object:
        """What the form shows before anyone edits it: the default, or for a choice without
        vocabulary the empty string, for a number without statistics 0."""
        if self.kind == "choice":
            return self.default if self.default is not None else ""
        if self.default is None:
            return 0 if self.kind == "int" else 0.0
        return float(self.default) if self.kind == "float" else self.default


@dataclasses.dataclass(frozen=True)
class FeatureStatistics:
    name: str
    kind: str  # "numeric" | "categorical"
    count: int  # examples with a value
    missing: int  # examples without one: absent or blank (data_stats/missing.py)
    summary: dict[str, float]
    chart: pd.DataFrame  # numeric: low, high, count; categorical: value, frequency


# ---- opening the store ---------------------------------------------------------------------
def _store(metadata: str):
    from metadata import MetadataError, open_store

    try:
        return open_store(metadata)
    except MetadataError as e:
        raise DataUnavailable(str(e)) from None


def _runs_of(ls, pipeline: str) -> list:
    runs = [r for r in ls.run_contexts if not pipeline or ls.pipeline_of_run(r) in (pipeline, "")]
    if not runs:
        raise DataUnavailable(
            f"no runs of pipeline {pipeline!r} in this metadata store yet: run the pipeline "
            "first (`make run`)"
        )
    return runs


def _time(millis: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(millis / 1000)


# ---- runs ----------------------------------------------------------------------------------
@_cache
def run_ids(metadata: str, pipeline: str) -> list[str]:
    """Run ids of `pipeline`, newest first."""
    return [r.name for r in _runs_of(_store(metadata), pipeline)]


@_cache
def run_detail(metadata: str, pipeline: str, run_id: str) -> RunDetail:
    """One run as the run report sees it (state, span, checks, evaluation, push decision)."""
    ls = _store(metadata)
    run = next((r for r in _runs_of(ls, pipeline) if r.name == run_id), None)
    if run is None:
        raise DataUnavailable(f"unknown run {run_id!r}")
    return _detail(ls, run, metadata)


@_cache
def runs_table(metadata: str, pipeline: str) -> pd.DataFrame:
    """One row per run, newest first: state, duration, span, pushed and why."""
    ls = _store(metadata)
    rows = []
    for run in _runs_of(ls, pipeline):
        d = _detail(ls, run, metadata)
        rows.append(
            {
                "run": d.run_id,
                "started": d.start,
                "status": d.status,
                "duration_s": d.duration_s,
                "span": d.span,
                "blessed": d.blessed,
                "pushed": d.pushed,
                "version": d.pushed_version,
                "decision": d.decision,
            }
        )
    return pd.DataFrame(rows)


def _detail(ls, run, metadata: str) -> RunDetail:
    from ml_metadata.proto import metadata_store_pb2 as mlmd_pb2

    from metadata.store import is_output, properties_of, state_name
    from pipeline.local import report as run_report

    executions = ls.run_executions(run)
    report = run_report.RunReport(run.name, [], [], {}, [], None, None, metadata)
    components: list[Component] = []
    evaluation_uri = statistics_uri = transform_uri = None
    statistics_splits: list[str] = []
    thresholds: list[Threshold] = []
    outputs_by_execution: dict[int, list] = {}
    events = ls.events_of_executions([e.id for e in executions])
    artifacts = ls.artifacts_by_id(ev.artifact_id for ev in events if is_output(ev))
    for ev in events:
        if ev.type == mlmd_pb2.Event.OUTPUT and ev.artifact_id in artifacts:
            outputs_by_execution.setdefault(ev.execution_id, []).append(artifacts[ev.artifact_id])
    for e in sorted(executions, key=lambda e: (e.create_time_since_epoch, e.id)):
        name = ls.component_name(e)
        start, end = e.create_time_since_epoch, e.last_update_time_since_epoch
        components.append(
            Component(name, state_name(e), _time(start), _time(end), (end - start) / 1e3, e.id)
        )
        for artifact in outputs_by_execution.get(e.id, []):
            try:
                run_report.read_artifact(ls, artifact, report, name)
            except Exception as exc:  # a deleted or unreadable artifact payload
                raise DataUnavailable(
                    f"cannot read {ls.artifact_type(artifact)} at {artifact.uri}: {exc}"
                ) from None
            kind = ls.artifact_type(artifact)
            if kind == "ModelEvaluation":
                evaluation_uri = artifact.uri
            elif kind == "ExampleStatistics" and name == "StatisticsGen":
                statistics_uri = artifact.uri
                statistics_splits = list(
                    _decode_splits(properties_of(artifact).get("split_names", "[]"))
                )
            elif kind == "TransformGraph":
                transform_uri = artifact.uri
            elif kind == "PushedModel" and properties_of(artifact).get("pushed") == 1:
                report.pushed_path = str(properties_of(artifact).get("pushed_destination"))
        if name == "Evaluator":
            thresholds = _thresholds(properties_of(e).get("eval_config"))
            by_key = ls.inputs(e.id)
            report.candidate_model_id = next((a.id for a in by_key.get("model", [])), None)
            report.baseline_model_id = next((a.id for a in by_key.get("baseline_model", [])), None)
    pipeline = ls.pipeline_of_run(run)
    status, why = ls.checked_status(
        [c.state for c in components], pipeline, run.create_time_since_epoch
    )
    starts = [c.start for c in components]
    ends = [c.end for c in components]
    pushed_version = (
        os.path.basename(report.pushed_path.rstrip("/")) if report.pushed_path else None
    )
    return RunDetail(
        run_id=run.name,
        pipeline=pipeline,
        start=min(starts) if starts else None,
        duration_s=round((max(ends) - min(starts)).total_seconds(), 1) if starts else 0.0,
        status=status,
        span=report.span,
        previous_span=report.previous_span,
        blessed=report.blessed,
        pushed_path=report.pushed_path,
        pushed_version=pushed_version,
        decision=report.push_decision
        if status != "failed" or report.pushed_path
        else ("not pushed: " + (why or _failure(report, components))),
        components=components,
        anomalies=pd.DataFrame(
            [dataclasses.asdict(a) for a in report.anomalies],
            columns=["split", "feature", "kind", "description"],
        ),
        drift=pd.DataFrame(
            [dataclasses.asdict(m) | {"exceeded": m.exceeded} for m in report.drift],
            columns=["split", "feature", "comparator", "distance", "threshold", "kind", "exceeded"],
        ),
        metrics=dict(report.metrics),
        failed_checks=pd.DataFrame(
            [dataclasses.asdict(c) for c in report.failed_checks],
            columns=["slice", "metric", "value", "threshold"],
        ),
        thresholds=thresholds,
        evaluation_uri=evaluation_uri,
        statistics_uri=statistics_uri,
        statistics_splits=statistics_splits,
        transform_uri=transform_uri,
        candidate_model_id=report.candidate_model_id,
        baseline_model_id=report.baseline_model_id,
        comparison=report.comparison,
        previous_metric=report.previous_metric,
        importance=_importance(evaluation_uri),
    )


def _importance(evaluation_uri: str | None) -> dict | None:
    from modules.importance import read_importance

    return read_importance(evaluation_uri) if evaluation_uri else None


# The models the Runs page sets side by side, in this order (modules/baselines.py's names).
PREVIOUS_MODEL = "previous blessed model"


def model_comparison(detail: RunDetail) -> pd.DataFrame:
    """Candidate vs the run's baselines vs the previous blessed model on the headline metric
    (columns model, value, train seconds, exported), from the comparison the Trainer wrote; the
    previous model's value is the Evaluator's (empty when none was blessed before)."""
    from modules import baselines

    columns = ["model", "value", "train seconds", "exported"]
    c = detail.comparison
    if not c:
        return pd.DataFrame([], columns=columns)
    seconds = c.get("train_seconds", {})
    rows = [
        [
            f"{name} ({c['candidate_family']})" if name == baselines.CANDIDATE else name,
            c["scores"].get(name),
            seconds.get(name),
            c["exported"] == name,
        ]
        for name in (baselines.CANDIDATE, baselines.LINEAR, baselines.CONSTANT)
    ]
    rows.append([PREVIOUS_MODEL, detail.previous_metric, None, False])
    return pd.DataFrame(rows, columns=columns)


def feature_importance(detail: RunDetail) -> pd.DataFrame:
    """The exported model's permutation importance, most important first (columns feature,
    drop, std: the headline metric's drop when the feature is shuffled)."""
    rows = (detail.importance or {}).get("features", [])
    return pd.DataFrame(
        [[r["feature"], r["importance"], r["std"]] for r in rows],
        columns=["feature", "drop", "std"],
    )


def _failure(report, components: list[Component]) -> str:
    failed = [c.name for c in components if c.state == "failed"]
    if report.anomalies or report.drifted:
        return report.push_decision.removeprefix("not pushed: ")
    return f"the run failed in {', '.join(failed)}"


def _decode_splits(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    from tfx.types import artifact_utils

    return artifact_utils.decode_split_names(str(value))


def _thresholds(eval_config: object) -> list[Threshold]:
    """The Evaluator's thresholds as recorded in its execution (what this run was held to)."""
    if isinstance(eval_config, str):
        import json

        try:
            eval_config = json.loads(eval_config)
        except ValueError:
            return []
    if not isinstance(eval_config, dict):
        return []
    out: list[Threshold] = []

    def add(metric: str, threshold: dict) -> None:
        value = threshold.get("value_threshold") or threshold.get("valueThreshold") or {}
        for key, label in (
            ("lower_bound", ">="),
            ("lowerBound", ">="),
            ("upper_bound", "<="),
            ("upperBound", "<="),
        ):
            if key in value:
                bound = value[key]
                bound = bound.get("value", bound) if isinstance(bound, dict) else bound
                out.append(Threshold(metric, f"value {label}", float(bound), ""))
        change = threshold.get("change_threshold") or threshold.get("changeThreshold") or {}
        if change:
            absolute = change.get("absolute", {})
            absolute = absolute.get("value", absolute) if isinstance(absolute, dict) else absolute
            direction = str(change.get("direction", "")).lower().replace("_", " ")
            out.append(Threshold(metric, "change vs baseline", float(absolute or 0.0), direction))

    for spec in eval_config.get("metrics_specs", eval_config.get("metricsSpecs", [])):
        for metric in spec.get("metrics", []):
            name = metric.get("class_name") or metric.get("className") or ""
            if "threshold" in metric:
                add(name, metric["threshold"])
            for per_slice in metric.get(
                "per_slice_thresholds", metric.get("perSliceThresholds", [])
            ):
                add(name, per_slice.get("threshold", {}))
    return out


@_cache
def slice_metrics(evaluation_uri: str) -> pd.DataFrame:
    """Every TFMA metric per slice: slice, feature, value (of the slice), metric, model, diff."""
    import tensorflow_model_analysis as tfma

    rows = []
    if not evaluation_uri or not os.path.exists(evaluation_uri):
        raise DataUnavailable(f"evaluation not found at {evaluation_uri}")
    for per_slice in tfma.load_metrics(evaluation_uri):
        keys = per_slice.slice_key.single_slice_keys
        feature = ",".join(k.column for k in keys) or "overall"
        value = ",".join(_slice_value(k) for k in keys) or "overall"
        for item in per_slice.metric_keys_and_values:
            if not item.key.HasField("example_weighted") or not item.value.HasField("double_value"):
                continue
            rows.append(
                {
                    "feature": feature,
                    "slice": value,
                    "metric": item.key.name,
                    "model": item.key.model_name or "candidate",
                    "is_diff": bool(item.key.is_diff),
                    "value": item.value.double_value.value,
                }
            )
    return pd.DataFrame(rows, columns=["feature", "slice", "metric", "model", "is_diff", "value"])


def _slice_value(key) -> str:
    value = getattr(key, key.WhichOneof("kind"))
    return value.decode() if isinstance(value, bytes) else str(value)


def comparison_defaults(runs: pd.DataFrame) -> tuple[str, str]:
    """(run A, run B) the comparison opens with: the two newest completed runs, older first
    (a failed or killed run has no evaluation or push to compare); the two newest runs when
    fewer than two completed. `runs` is runs_table's frame, newest first."""
    complete = list(runs.loc[runs["status"] == "complete", "run"])
    pair = complete[:2] if len(complete) >= 2 else list(runs["run"])[:2]
    return pair[1], pair[0]


@_cache
def run_comparison(metadata: str, run_a: str, run_b: str) -> dict[str, pd.DataFrame]:
    """Two runs side by side per section (input data, schema, hyperparameters, metrics, ...)."""
    from lineage.queries import DIFF_SECTIONS, run_facts
    from metadata import MetadataError

    ls = _store(metadata)
    try:
        a, b = run_facts(ls, run_a), run_facts(ls, run_b)
    except MetadataError as e:
        raise DataUnavailable(str(e)) from None
    out = {}
    for section in DIFF_SECTIONS:
        left, right = a[section], b[section]
        keys = sorted(set(left) | set(right))
        out[section] = pd.DataFrame(
            {
                "key": keys,
                "run A": [_cell(left.get(k)) for k in keys],
                "run B": [_cell(right.get(k)) for k in keys],
                "changed": [left.get(k) != right.get(k) for k in keys],
            }
        )
    return out


def _cell(value: object) -> str:
    return "" if value is None else str(value)


# ---- data ----------------------------------------------------------------------------------
@_cache
def spans(metadata: str, pipeline: str) -> dict[int, str]:
    """Span -> the newest run that ingested it."""
    ls = _store(metadata)
    out: dict[int, str] = {}
    for run in _runs_of(ls, pipeline):  # newest first
        d = _detail(ls, run, metadata)
        if d.span is not None and d.statistics_uri and d.span not in out:
            out[d.span] = d.run_id
    if not out:
        raise DataUnavailable("no run has computed statistics yet")
    return dict(sorted(out.items()))


@_cache
def feature_statistics(statistics_uri: str, split: str) -> list[FeatureStatistics]:
    """The StatisticsGen statistics of one split, per feature, ready to chart."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    from data_stats.compare import load_statistics_file
    from data_stats.missing import presence

    path = os.path.join(statistics_uri, f"Split-{split}", "FeatureStats.pb")
    if not os.path.exists(path):
        raise DataUnavailable(f"statistics not found: {path}")
    proto = load_statistics_file(path)
    out = []
    for dataset in proto.datasets[:1]:
        for feature in dataset.features:
            name = ".".join(feature.path.step) or feature.name
            if feature.HasField("num_stats"):
                ns = feature.num_stats
                common = ns.common_stats
                hist = next(
                    (h for h in ns.histograms if h.type == statistics_pb2.Histogram.STANDARD), None
                )
                chart = pd.DataFrame(
                    [
                        (b.low_value, b.high_value, b.sample_count)
                        for b in (hist.buckets if hist else [])
                    ],
                    columns=["low", "high", "count"],
                )
                summary = {
                    "min": ns.min,
                    "max": ns.max,
                    "mean": ns.mean,
                    "median": ns.median,
                    "std_dev": ns.std_dev,
                    "zeros": ns.num_zeros,
                }
                seen = presence(common)
                out.append(
                    FeatureStatistics(name, "numeric", seen.present, seen.missing, summary, chart)
                )
            elif feature.HasField("string_stats"):
                ss = feature.string_stats
                common = ss.common_stats
                values = [(v.value, v.frequency) for v in ss.top_values] or [
                    (b.label, b.sample_count) for b in ss.rank_histogram.buckets
                ]
                chart = pd.DataFrame(values, columns=["value", "frequency"])
                seen = presence(common)
                out.append(
                    FeatureStatistics(
                        name,
                        "categorical",
                        seen.present,
                        seen.missing,
                        {"unique": ss.unique},
                        chart,
                    )
                )
    return sorted(out, key=lambda f: f.name)


# ---- the predict form ----------------------------------------------------------------------
@_cache
def form_fields(metadata: str, pipeline: str, dataset: str = "") -> list[FieldSpec]:
    """The predict form's fields, from the newest run with both statistics and a Transform:
    numeric bounds from the train split's statistics, categorical choices from the Transform
    vocabularies, identity categoricals from the dataset spec (default: the active one)."""
    from modules import dataset_spec

    spec = dataset_spec.load(dataset) if dataset else features.SPEC
    ls = _store(metadata)
    detail = None
    for run in _runs_of(ls, pipeline):
        d = _detail(ls, run, metadata)
        if d.statistics_uri and d.transform_uri:
            detail = d
            break
    if detail is None:
        raise DataUnavailable("no run has both statistics and a Transform graph yet")
    split = "train" if "train" in detail.statistics_splits else detail.statistics_splits[0]
    stats = {f.name: f for f in feature_statistics(detail.statistics_uri, split)}
    fields: list[FieldSpec] = []
    for key in spec.raw_feature_keys:
        dtype = spec.raw_dtype(key)
        if key in spec.vocabulary:
            choices = _vocabulary(detail.transform_uri, key)
            fields.append(
                FieldSpec(
                    key,
                    "choice",
                    dtype,
                    choices=tuple(choices),
                    default=choices[0] if choices else None,
                )
            )
        elif key in spec.categorical:
            ids = spec.categorical[key]
            s = stats.get(key)
            default = int(round(s.summary["median"])) if s else 0
            fields.append(FieldSpec(key, "int", dtype, 0, ids - 1, min(max(default, 0), ids - 1)))
        else:
            s = stats.get(key)
            lo, hi = (s.summary["min"], s.summary["max"]) if s else (None, None)
            median = s.summary["median"] if s else 0.0
            kind = "int" if dtype == "int64" else "float"
            if kind == "int":
                lo, hi, median = (
                    int(lo) if lo is not None else None,
                    int(hi) if hi is not None else None,
                    int(round(median)),
                )
            fields.append(FieldSpec(key, kind, dtype, lo, hi, median))
    return fields


def baseline_row(fields: list[FieldSpec]) -> dict[str, object]:
    """The row attributions are measured from: the form's initial values, each feature's typical
    training value (numeric: the train split's median; categorical: the most frequent value,
    first in Transform's vocabulary; identity categoricals: the median id)."""
    return {f.name: f.initial for f in fields}


def _vocabulary(transform_uri: str, key: str) -> list[str]:
    """Transform's vocabulary file for `key` (most frequent first), as written by
    tft.compute_and_apply_vocabulary(vocab_filename=key)."""
    path = os.path.join(transform_uri, "transform_fn", "assets", key)
    if not os.path.exists(path):
        raise DataUnavailable(f"Transform vocabulary for {key} not found at {path}")
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


# ---- models --------------------------------------------------------------------------------
def versions_on_disk(serving_dir: str) -> pd.DataFrame:
    """Numeric version directories holding a SavedModel (TF Serving's model base path layout)."""
    rows = []
    if os.path.isdir(serving_dir):
        for name in os.listdir(serving_dir):
            path = os.path.join(serving_dir, name)
            if name.isdigit() and os.path.isfile(os.path.join(path, "saved_model.pb")):
                rows.append(
                    {
                        "version": int(name),
                        "path": path,
                        "pushed_at": dt.datetime.fromtimestamp(int(name))
                        if int(name) < 10**11
                        else None,
                    }
                )
    return pd.DataFrame(rows, columns=["version", "path", "pushed_at"]).sort_values(
        "version", ascending=False, ignore_index=True
    )


@_cache
def version_lineage(metadata: str, version: str, collapse: bool = True) -> tuple[dict, str]:
    """(lineage summary, Graphviz DOT of the upstream graph) of a served version; collapse:
    the artifacts passed between components as edge labels (lineage/graph.py)."""
    from lineage import graph
    from lineage.queries import trace
    from metadata import MetadataError

    ls = _store(metadata)
    try:
        t = trace(ls, str(version))
    except MetadataError as e:
        raise DataUnavailable(str(e)) from None
    return t.summary, graph.to_dot(t, collapse)


# ---- serving skew --------------------------------------------------------------------------
@_cache
def skew_report(metadata: str, pipeline: str, requests_dir: str, schema_path: str) -> dict:
    """Training/serving skew of the requests the server logged, vs the newest training
    statistics: {"files", "statistics", "skew": DataFrame, "anomalies": DataFrame}."""
    from monitoring import skew_check

    try:
        stats = skew_check.latest_training_statistics(metadata, pipeline)
        result = skew_check.check_skew(requests_dir, stats, schema_path)
    except skew_check.SkewCheckError as e:
        raise DataUnavailable(str(e)) from None
    return {
        "files": result.requests.files,
        "skipped": result.requests.skipped,
        "statistics": stats,
        "skew": pd.DataFrame(
            [dataclasses.asdict(m) | {"exceeded": m.exceeded} for m in result.skew],
            columns=["split", "feature", "comparator", "distance", "threshold", "kind", "exceeded"],
        ),
        "anomalies": pd.DataFrame(
            [dataclasses.asdict(a) for a in result.anomalies],
            columns=["split", "feature", "kind", "description"],
        ),
    }
