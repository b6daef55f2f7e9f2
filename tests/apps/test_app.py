"""The web app's pages under Streamlit's AppTest, against the shared small pipeline's real store
and a real model server serving its pushed model. Values on the pages are compared with what
this test reads from ML Metadata and the artifacts directly."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from streamlit.testing.v1 import AppTest

from apps.ui.settings import Settings
from data_stats.missing import presence
from modules import baselines, features, importance
from serving_api.client import RestClient, predict_rows
from tests import serving_models as sm
from tests.paths import PROJECT_ROOT

ROOT = PROJECT_ROOT
PAGES = ROOT / "apps" / "ui" / "views"
DATA = ROOT / "data" / "taxi" / "span-1" / "data.csv"
TIMEOUT = 180
with open(DATA, newline="") as _f:
    _CSV_COLUMNS = next(csv.reader(_f))
_REQUEST_COLUMNS = ("model_name", "version", "method", "protocol", "status", "count")

pytestmark = pytest.mark.slow


# ---- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_server(small_pipeline):
    assert small_pipeline.exit_code == 0, "the shared small pipeline run failed"
    server = sm.ServerProcess(
        f"--model_name={small_pipeline.config.model_name}",
        f"--model_base_path={small_pipeline.serving_model_dir}",
    ).wait_ready()
    yield server
    server.stop()


@pytest.fixture
def settings(small_pipeline, model_server) -> Settings:
    return Settings(
        metadata=small_pipeline.metadata_path,
        pipeline_name=small_pipeline.config.pipeline_name,
        model_name=small_pipeline.config.model_name,
        serving_dir=small_pipeline.serving_model_dir,
        rest_port=model_server.rest_port,
        grpc_port=model_server.grpc_port,
    )


def page(name: str, settings: Settings, monkeypatch) -> AppTest:
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=TIMEOUT)
    return at.run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def by_key(at: AppTest, kind: str, key: str):
    found = [e for e in at.get(kind) if getattr(e, "key", None) == key]
    assert found, f"no {kind} {key!r} on the page"
    return found[0]


def frame(at: AppTest, *columns: str):
    """The table on the page with exactly these columns (st.dataframe keeps no key in AppTest)."""
    for element in at.dataframe:
        value = element.value
        if set(value.columns) == set(columns):
            return value
    raise AssertionError(
        f"no table with columns {columns}: {[list(e.value.columns) for e in at.dataframe]}"
    )


# ---- independent reads -------------------------------------------------------------------------
def _store(small_pipeline) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = small_pipeline.metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def _artifact(small_pipeline, type_name: str, producer: str = "") -> metadata_store_pb2.Artifact:
    """The newest artifact of a type (made by `producer`, a component id in its URI)."""
    artifacts = [
        a
        for a in _store(small_pipeline).get_artifacts_by_type(type_name)
        if not producer or f"/{producer}/" in a.uri
    ]
    assert artifacts, f"no {type_name} in the store"
    return max(artifacts, key=lambda a: a.id)


def _sample_rows(n: int) -> list[dict[str, str]]:
    with open(DATA, newline="") as f:
        reader = csv.DictReader(f)
        return [next(reader) for _ in range(n)]


def _csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


# ---- predict -----------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["REST", "gRPC"])
def test_predict_form_is_bounded_by_training_data_and_predicts(
    small_pipeline, settings, monkeypatch, protocol
):
    at = page("predict", settings, monkeypatch)
    no_exception(at)
    transform = _artifact(small_pipeline, "TransformGraph")
    vocab_file = Path(transform.uri) / "transform_fn" / "assets" / "payment_type"
    vocab = vocab_file.read_text().splitlines()
    payment = by_key(at, "selectbox", "f_payment_type")
    assert list(payment.options) == vocab
    hour = by_key(at, "number_input", "f_trip_start_hour")
    assert (hour.min, hour.max) == (
        0,
        features.CATEGORICAL_NUMERICAL_FEATURES["trip_start_hour"] - 1,
    )
    stats = _train_statistics(small_pipeline)
    miles = by_key(at, "number_input", "f_trip_miles")
    assert miles.min == pytest.approx(stats["trip_miles"].num_stats.min)
    assert miles.max == pytest.approx(stats["trip_miles"].num_stats.max)

    at.radio(key="protocol").set_value(protocol)
    miles.set_value(3.5)
    at.button[0].click()
    at.run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    shown = float(at.metric[0].value)
    row = {
        f: w.value
        for f in features.RAW_FEATURE_KEYS
        for w in at.get("number_input") + at.get("selectbox")
        if getattr(w, "key", None) == f"f_{f}"
    }
    expected = predict_rows(RestClient("127.0.0.1", settings.rest_port), "taxi", [row])[0]
    assert shown == pytest.approx(expected["probabilities"][0], abs=1e-4)
    version = sorted(os.listdir(small_pipeline.serving_model_dir))[-1]
    assert f"answered by version {version}" in at.success[0].value
    assert protocol.upper() in at.success[0].value


def test_predict_page_explains_the_prediction_with_attributions_that_add_up(
    small_pipeline, settings, monkeypatch
):
    at = page("predict", settings, monkeypatch)
    no_exception(at)
    # The form opens on the baseline row: each feature's typical training value (train split
    # median; the most frequent category, first in Transform's vocabulary).
    stats = _train_statistics(small_pipeline)
    transform = _artifact(small_pipeline, "TransformGraph")
    vocab = (Path(transform.uri) / "transform_fn" / "assets" / "payment_type").read_text()
    baseline = {
        f: w.value
        for f in features.RAW_FEATURE_KEYS
        for w in at.get("number_input") + at.get("selectbox")
        if getattr(w, "key", None) == f"f_{f}"
    }
    assert baseline["fare"] == pytest.approx(stats["fare"].num_stats.median)
    assert baseline["payment_type"] == vocab.splitlines()[0]
    by_key(at, "number_input", "f_trip_miles").set_value(9.5)
    by_key(at, "selectbox", "f_payment_type").set_value(vocab.splitlines()[1])
    at.button[0].click()
    at.run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    table = frame(at, "feature", "value", "baseline", "attribution")
    assert sorted(table["feature"]) == sorted(features.RAW_FEATURE_KEYS)
    row = {**baseline, "trip_miles": 9.5, "payment_type": vocab.splitlines()[1]}
    expected = predict_rows(RestClient("127.0.0.1", settings.rest_port), "taxi", [row, baseline])
    p_row, p_baseline = (e["probabilities"][0] for e in expected)
    attribution = dict(zip(table["feature"], table["attribution"], strict=True))
    # Only the two changed inputs can have moved the prediction; together they moved it
    # exactly from the baseline row's probability to this row's (the sum rule).
    changed = {"trip_miles", "payment_type"}
    assert all(attribution[k] == 0.0 for k in attribution if k not in changed)
    assert sum(attribution.values()) == pytest.approx(p_row - p_baseline, abs=1e-5)
    assert list(table["feature"][:2]) == sorted(changed, key=lambda k: -abs(attribution[k]))
    assert [m.value for m in at.metric][1:3] == [f"{p_row:.4f}", f"{p_baseline:.4f}"]


def _train_statistics(small_pipeline) -> dict:
    from data_stats.compare import load_statistics_file

    stats = _artifact(small_pipeline, "ExampleStatistics", "StatisticsGen")
    proto = load_statistics_file(os.path.join(stats.uri, "Split-train", "FeatureStats.pb"))
    return {".".join(f.path.step): f for f in proto.datasets[0].features}


def test_batch_scores_good_rows_and_lists_bad_ones(settings, monkeypatch):
    rows = _sample_rows(25)
    rows[3]["trip_miles"] = "three"
    rows[10]["trip_start_hour"] = "7.5"
    rows[17]["fare"] = "inf"
    at = page("predict", settings, monkeypatch)
    at.file_uploader[0].set_value(("trips.csv", _csv(rows), "text/csv"))
    at.run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    scored = frame(at, "line", *_CSV_COLUMNS, "probability")
    bad = frame(at, "line", "reason")
    assert len(scored) == 22
    assert list(bad["line"]) == [5, 12, 19]
    assert "trip_miles: 'three' is not a number" in bad["reason"][0]
    assert "not an integer" in bad["reason"][1]
    assert "fare: inf is not finite in float32" in bad["reason"][2]
    good = [r for i, r in enumerate(rows) if i not in (3, 10, 17)]
    expected = predict_rows(RestClient("127.0.0.1", settings.rest_port), "taxi", good)
    assert list(scored["probability"]) == pytest.approx(
        [e["probabilities"][0] for e in expected], abs=1e-5
    )
    assert at.get("download_button"), "no download of the scored CSV"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x00\xff\x00garbage", "is not UTF-8 text"),
        (b"a,b\n1,2\n", "has no model feature columns"),
        (b"trip_miles,fare\n", "has no data rows"),
        (b"", "is empty"),
    ],
)
def test_malformed_upload_gives_a_message(settings, monkeypatch, content, message):
    at = page("predict", settings, monkeypatch)
    at.file_uploader[0].set_value(("bad.csv", content, "text/csv"))
    at.run()
    no_exception(at)
    assert any(message in e.value for e in at.error), [e.value for e in at.error]


# ---- runs --------------------------------------------------------------------------------------
def test_runs_page_shows_the_stored_run_evaluation_and_slices(
    small_pipeline, settings, monkeypatch
):
    import tensorflow_model_analysis as tfma

    at = page("runs", settings, monkeypatch)
    no_exception(at)
    runs = frame(
        at,
        "run",
        "started",
        "status",
        "duration_s",
        "span",
        "blessed",
        "pushed",
        "version",
        "decision",
    )
    stored = [c.name for c in _store(small_pipeline).get_contexts_by_type("pipeline_run")]
    assert sorted(runs["run"]) == sorted(stored)
    report = small_pipeline.report
    latest = runs.iloc[0]
    assert latest["run"] == report.run_id
    assert latest["status"] == "complete"
    assert latest["span"] == report.span == 1
    assert bool(latest["pushed"]) is True
    assert latest["decision"] == report.push_decision

    components = frame(at, "component", "state", "seconds")
    assert set(components["component"]) == {c.node_id for c in report.components}

    checks = frame(at, "metric", "threshold", "value", "passed")
    auc = checks[checks["metric"] == "AUC"].iloc[0]
    assert auc["threshold"].startswith(
        "value >= " + f"{small_pipeline.config.thresholds.min_auc:g}"
    )
    assert auc["value"] == pytest.approx(report.metrics["auc"])
    assert bool(auc["passed"]) is True

    evaluation = _artifact(small_pipeline, "ModelEvaluation")
    expected = {}
    for per_slice in tfma.load_metrics(evaluation.uri):
        keys = per_slice.slice_key.single_slice_keys
        if len(keys) == 1 and keys[0].column == "trip_start_hour":
            for kv in per_slice.metric_keys_and_values:
                if (
                    kv.key.name == "auc"
                    and kv.key.HasField("example_weighted")
                    and not kv.key.is_diff
                    and kv.key.model_name in ("", "candidate")
                ):
                    expected[str(keys[0].int64_value)] = kv.value.double_value.value
    slices = frame(at, "slice", "candidate")
    assert expected, "no per-hour AUC in the evaluation"
    shown = dict(zip(slices["slice"], slices["candidate"], strict=True))
    assert shown == pytest.approx(expected, nan_ok=True)
    assert len(at.get("vega_lite_chart")) == 3, "timeline, importance and per-slice charts"

    # Candidate vs the run's baselines vs the previous blessed model, as the Trainer wrote it.
    comparison = json.loads((Path(evaluation.uri) / baselines.COMPARISON_FILE).read_text())
    models = frame(at, "model", "value", "train seconds", "exported")
    shown = dict(zip(models["model"], models["value"], strict=True))
    family = comparison["candidate_family"]
    assert shown[f"candidate ({family})"] == pytest.approx(comparison["scores"]["candidate"])
    assert shown["linear"] == pytest.approx(comparison["scores"]["linear"])
    assert shown["constant"] == pytest.approx(comparison["scores"]["constant"])
    previous = shown["previous blessed model"]
    assert previous is None or math.isnan(previous)  # the store's first blessed model
    exported = models.loc[models["exported"].astype(bool), "model"].tolist()
    assert [m.split(" ")[0] for m in exported] == [comparison["exported"]]
    margin = next(m.value for m in at.markdown if m.value.startswith("Margin over the linear"))
    assert f"{comparison['gain_over_linear']:+.4g}" in margin
    assert comparison["decision"] in margin

    # The exported model's permutation importance, as the Trainer measured it.
    measured = json.loads((Path(evaluation.uri) / importance.IMPORTANCE_FILE).read_text())
    table = frame(at, "feature", "drop", "std")
    assert list(table["feature"]) == [f["feature"] for f in measured["features"]]
    assert list(table["drop"]) == pytest.approx([f["importance"] for f in measured["features"]])
    assert sorted(table["feature"]) == sorted(features.RAW_FEATURE_KEYS)


# ---- models ------------------------------------------------------------------------------------
def test_models_page_shows_versions_server_state_and_lineage(small_pipeline, settings, monkeypatch):
    at = page("models", settings, monkeypatch)
    no_exception(at)
    on_disk = frame(at, "version", "path", "pushed_at")
    versions = sorted(int(v) for v in os.listdir(small_pipeline.serving_model_dir) if v.isdigit())
    assert sorted(on_disk["version"]) == versions
    status = frame(at, "version", "state", "labels", "error")
    assert dict(zip(status["version"], status["state"], strict=True)) == {versions[-1]: "AVAILABLE"}
    pushed = _artifact(small_pipeline, "PushedModel")
    assert at.metric[0].value == str(pushed.custom_properties["pushed_version"].string_value)
    assert at.metric[1].value == "yes"
    assert at.metric[2].value == "1"
    charts = at.get("graphviz_chart")
    assert charts and "digraph lineage" in charts[0].proto.spec


# ---- data --------------------------------------------------------------------------------------
def test_data_page_shows_statistics_anomalies_and_drift_state(
    small_pipeline, settings, monkeypatch
):
    at = page("data", settings, monkeypatch)
    no_exception(at)
    assert at.selectbox(key="span").value == 1
    stats = _train_statistics(small_pipeline)
    table = frame(
        at,
        "feature",
        "kind",
        "count",
        "missing",
        "unique",
        "min",
        "max",
        "mean",
        "median",
        "std_dev",
        "zeros",
    )
    assert set(table["feature"]) == set(stats)
    row = table[table["feature"] == "fare"].iloc[0]
    assert row["count"] == stats["fare"].num_stats.common_stats.num_non_missing
    assert row["mean"] == pytest.approx(stats["fare"].num_stats.mean)
    # Missing as TFDV reads it: blank CSV cells (empty value lists) count, not only absent ones.
    tract = table[table["feature"] == "pickup_census_tract"].iloc[0]
    tract_feature = stats["pickup_census_tract"]  # int or, all blank, typed by no value
    tract_stats = getattr(tract_feature, tract_feature.WhichOneof("stats")).common_stats
    total = tract_stats.num_missing + tract_stats.num_non_missing
    assert (tract["count"], tract["missing"]) == (
        presence(tract_stats).present,
        presence(tract_stats).missing,
    )
    assert tract["count"] + tract["missing"] == total
    assert tract["missing"] >= 0.99 * total  # the column is ~all blank
    assert row["missing"] == 0
    assert any("no anomalies" in s.value for s in at.success)
    assert any("no earlier span to compare with" in i.value for i in at.info)
    at.selectbox(key="feature").set_value("payment_type").run()
    no_exception(at)
    assert at.get("vega_lite_chart")


# ---- serving -----------------------------------------------------------------------------------
def test_serving_page_shows_live_request_counts(settings, monkeypatch):
    client = RestClient("127.0.0.1", settings.rest_port)
    predict_rows(client, "taxi", _sample_rows(3))
    before = page("serving", settings, monkeypatch)
    no_exception(before)
    counted = frame(before, *_REQUEST_COLUMNS)
    ok = counted[(counted["method"] == "predict") & (counted["status"] == "OK")]
    n = ok["count"].sum()
    assert n >= 1
    predict_rows(client, "taxi", _sample_rows(2))
    try:
        client.predict("taxi", {"examples": [b"not an example"]})
    except Exception:  # noqa: BLE001 - the error is what we count
        pass
    before.run()
    no_exception(before)
    after = frame(before, *_REQUEST_COLUMNS)
    ok = after[(after["method"] == "predict") & (after["status"] == "OK")]
    assert ok["count"].sum() == n + 1
    errors = frame(before, "model_name", "version", "status", "count")
    assert errors["count"].sum() >= 1
    latency = frame(
        before,
        "model_name",
        "version",
        "method",
        "protocol",
        "requests",
        "p50_ms",
        "p90_ms",
        "p99_ms",
    )
    assert (latency["p50_ms"] > 0).all()
    assert float(before.metric[2].value) > 0


# ---- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["predict", "models", "serving"])
def test_server_down_gives_a_message(settings, monkeypatch, name):
    import dataclasses

    down = dataclasses.replace(settings, rest_port=sm.free_port(), grpc_port=sm.free_port())
    at = page(name, down, monkeypatch)
    if name == "predict":
        at.button[0].click()
        at.run()
    no_exception(at)
    assert any("no model server answers" in e.value for e in at.error), [e.value for e in at.error]


@pytest.mark.parametrize("name", ["runs", "data", "predict"])
def test_missing_and_empty_store_give_a_message(settings, monkeypatch, tmp_path, name):
    import dataclasses

    missing = dataclasses.replace(settings, metadata=str(tmp_path / "nope" / "metadata.db"))
    at = page(name, missing, monkeypatch)
    no_exception(at)
    assert any("metadata store not found" in e.value for e in at.error), [e.value for e in at.error]

    empty_path = tmp_path / "empty.db"
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(empty_path)
    metadata_store.MetadataStore(config)  # creates an empty store
    empty = dataclasses.replace(settings, metadata=str(empty_path))
    at = page(name, empty, monkeypatch)
    no_exception(at)
    assert any("no runs of pipeline" in e.value for e in at.error), [e.value for e in at.error]


def test_no_pushed_model_gives_a_message(settings, monkeypatch, tmp_path):
    import dataclasses

    at = page("models", dataclasses.replace(settings, serving_dir=str(tmp_path)), monkeypatch)
    no_exception(at)
    assert any("no model has been pushed" in w.value for w in at.warning)
