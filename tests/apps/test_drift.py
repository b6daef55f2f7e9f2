"""The Data and Runs pages on a store with two spans (the second drifted, so the data gate stops
that run), and the Serving page's skew report of requests a real server logged. Values on the
pages are compared with the run report and with `mlops data check-skew`'s own functions."""

from __future__ import annotations

import dataclasses

import pytest

from apps.ui.settings import Settings
from cli_support import Exit
from monitoring import skew_check
from pipeline.local.run import run_pipeline
from pipeline.testing.samples import small_config, write_sample
from serving_api.client import RestClient, predict_rows
from tests import drift_samples as ds
from tests import serving_models as sm
from tests.apps.test_app import frame, no_exception, page
from tests.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow
SCHEMA = str(PROJECT_ROOT / "schema" / "schema.pbtxt")
ROWS = 200


@pytest.fixture(scope="module")
def two_spans(tmp_path_factory):
    """Span 1 trained and pushed (fast settings), then a drifted span 2 stopped by the gate."""
    root = tmp_path_factory.mktemp("ui_two_spans")
    data_root = write_sample(root / "data", rows=ROWS)
    # The shared fixture's training settings (they get blessed), without the tuner.
    config = small_config(root, data_root, skip_tuning=True)
    code, first = run_pipeline(config)
    assert code == Exit.OK and first.pushed_path, first.push_decision
    ds.write_csv(data_root / "span-2" / "data.csv", ds.drifted_rows(ROWS))
    code, report = run_pipeline(config)
    assert code == Exit.REJECTED and report.drifted
    settings = Settings(
        metadata=config.metadata_connection,
        pipeline_name=config.pipeline_name,
        model_name=config.model_name,
        serving_dir=config.model_serving_dir,
    )
    return config, report, settings


def test_data_page_shows_the_drift_the_store_holds(two_spans, monkeypatch):
    _, report, settings = two_spans
    at = page("data", settings, monkeypatch)
    no_exception(at)
    assert at.selectbox(key="span").options == ["1", "2"]
    assert at.selectbox(key="span").value == 2
    drift = frame(at, "split", "feature", "comparator", "distance", "threshold", "kind", "exceeded")
    shown = {
        (r.feature, r.comparator): (r.distance, r.threshold, r.exceeded) for r in drift.itertuples()
    }
    expected = {
        (m.feature, m.comparator): (m.distance, m.threshold, m.exceeded) for m in report.drift
    }
    assert shown.keys() == expected.keys()
    for key, (distance, threshold, exceeded) in expected.items():
        assert shown[key][0] == pytest.approx(distance)
        assert shown[key][1] == pytest.approx(threshold)
        assert bool(shown[key][2]) is exceeded
    drifted = len({m.feature for m in report.drifted})
    assert any(
        f"compared with span 1: {drifted} feature(s) beyond threshold" in e.value for e in at.error
    ), [e.value for e in at.error]
    if report.anomalies:
        anomalies = frame(at, "split", "feature", "kind", "description")
        assert sorted(anomalies["feature"]) == sorted(a.feature for a in report.anomalies)
    else:
        assert any("no anomalies" in m.value for m in at.success)


def test_runs_page_says_why_the_drifted_run_did_not_push(two_spans, monkeypatch):
    _, report, settings = two_spans
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
    assert list(runs["span"]) == [2, 1]
    assert runs.iloc[0]["decision"] == report.push_decision
    assert "data gate stopped the run" in runs.iloc[0]["decision"]
    assert list(runs["pushed"]) == [False, True]
    assert any("has no evaluation" in i.value for i in at.info)
    diff = frame(at, "key", "run A", "run B", "changed")  # the first changed section: input
    assert "CsvExampleGen.span" in set(diff["key"])


def test_serving_page_reports_skew_of_logged_requests(two_spans, monkeypatch, tmp_path):
    config, _, settings = two_spans
    log_dir = tmp_path / "requests"
    server = sm.ServerProcess(
        f"--model_name={config.model_name}",
        f"--model_base_path={config.model_serving_dir}",
        f"--request_log_dir={log_dir}",
    ).wait_ready()
    try:
        predict_rows(
            RestClient("127.0.0.1", server.rest_port), config.model_name, ds.drifted_rows(60)
        )
    finally:
        server.stop()  # completes the request log file
    logged = dataclasses.replace(
        settings, request_log_dir=str(log_dir), rest_port=server.rest_port, schema_path=SCHEMA
    )
    at = page("serving", logged, monkeypatch)
    assert any("no model server answers" in e.value for e in at.error)
    at.button(key="check_skew").click().run()
    no_exception(at)
    skew = frame(at, "split", "feature", "comparator", "distance", "threshold", "kind", "exceeded")
    stats = skew_check.latest_training_statistics(config.metadata_connection, config.pipeline_name)
    expected = skew_check.check_skew(str(log_dir), stats, SCHEMA).skew
    assert {(r.feature, r.comparator): r.distance for r in skew.itertuples()} == pytest.approx(
        {(m.feature, m.comparator): m.distance for m in expected}
    )
    skewed = len({m.feature for m in expected if m.exceeded})
    assert skewed > 0
    assert any(f"{skewed} feature(s) skewed beyond threshold" in e.value for e in at.error)
