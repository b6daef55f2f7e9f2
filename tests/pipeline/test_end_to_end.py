"""The whole pipeline on a small sample: MLMD records, the pushed model, the cache, the gate."""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_transform.tf_metadata import schema_utils

from cli_support import Exit
from metadata import open_store
from modules import features
from modules.trainer import CLASSIFY_METHOD, REGRESS_METHOD
from pipeline.local.run import run_pipeline
from pipeline.local.up_to_date import UP_TO_DATE
from pipeline.pipeline import create_pipeline
from pipeline.testing.samples import small_config, write_sample
from serving_api.client import encode_example, raw_columns

# Runs the pipeline (and reads the shared small_pipeline run).
pytestmark = pytest.mark.slow


def _pushed_versions(serving_model_dir: str) -> list[Path]:
    return sorted(p for p in Path(serving_model_dir).iterdir() if p.name.isdigit())


def _is_zero(text: str | None) -> bool:
    try:
        return float(text) == 0
    except (TypeError, ValueError):
        return False


def _rows(data_root: str, n: int = 20) -> list[dict]:
    with open(Path(data_root, "span-1", "data.csv"), newline="") as f:
        return [row for _, row in zip(range(n), csv.DictReader(f), strict=False)]


def test_every_component_executed_and_recorded_in_mlmd(small_pipeline):
    assert small_pipeline.exit_code == Exit.OK
    store = open_store(small_pipeline.metadata_path)
    run = store.run(small_pipeline.report.run_id)
    node_of = {execution.node_id: execution for execution in run.executions}
    expected = {c.id for c in create_pipeline(small_pipeline.config).components}
    assert set(node_of) == expected
    for node_id, execution in node_of.items():
        assert execution.state == "complete", node_id
    assert small_pipeline.report.blessed is True
    assert small_pipeline.report.metrics["example_count"] > 0


def test_model_pushed_in_tf_serving_layout(small_pipeline):
    versions = _pushed_versions(small_pipeline.serving_model_dir)
    assert len(versions) == 1
    version = versions[0]
    assert (version / "saved_model.pb").is_file()
    assert (version / "variables" / "variables.index").is_file()
    assert small_pipeline.report.pushed_path.rstrip("/") == str(version)


def test_pushed_model_serves_probabilities_for_raw_examples(small_pipeline):
    version = _pushed_versions(small_pipeline.serving_model_dir)[-1]
    model = tf.saved_model.load(str(version))
    assert {
        "serving_default",
        "serving_raw",
        "transform_features",
        "classification",
        "regression",
    } <= set(model.signatures)
    # serving_raw reads a zero in an optional column as "missing" (dense tensors have no holes),
    # and Transform fills a missing numeric with its mean: give the tf.Example path the same.
    schema = tfdv.load_schema_text(small_pipeline.config.schema_path)
    optional = {
        key
        for key, feature in schema_utils.schema_as_feature_spec(schema).feature_spec.items()
        if isinstance(feature, tf.io.VarLenFeature) and key in features.DENSE_FLOAT_FEATURE_KEYS
    }
    rows = [
        {**r, **{k: "" for k in optional if _is_zero(r.get(k))}}
        for r in _rows(small_pipeline.data_root)
    ]
    examples = tf.constant([encode_example(r) for r in rows])
    probabilities = model.signatures["serving_default"](examples=examples)["probabilities"].numpy()
    assert probabilities.shape == (len(rows), 1)
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    assert probabilities.std() > 0  # depends on the input, not a constant

    columns = raw_columns(rows)
    dtypes = {"bytes": tf.string, "int64": tf.int64, "float": tf.float32}
    raw = {k: tf.constant(v, dtypes[features.raw_dtype(k)]) for k, v in columns.items()}
    raw_probabilities = model.signatures["serving_raw"](**raw)["probabilities"].numpy()
    np.testing.assert_allclose(raw_probabilities, probabilities, rtol=1e-5, atol=1e-6)

    scores = model.signatures["classification"](inputs=examples)["scores"].numpy()
    np.testing.assert_allclose(scores[:, 1:], probabilities, rtol=1e-5, atol=1e-6)


def test_classify_and_regress_signatures_carry_tf_serving_method_names(small_pipeline):
    from tensorflow.python.tools import saved_model_utils

    version = _pushed_versions(small_pipeline.serving_model_dir)[-1]
    meta_graph = saved_model_utils.get_meta_graph_def(str(version), "serve")
    assert meta_graph.signature_def["classification"].method_name == CLASSIFY_METHOD
    assert meta_graph.signature_def["regression"].method_name == REGRESS_METHOD
    assert set(meta_graph.signature_def["classification"].outputs) == {"classes", "scores"}


def test_second_run_with_unchanged_data_is_served_from_cache(small_pipeline):
    # Through TFX (--always-run): the up-to-date check would stop it before TFX loads.
    status, report = run_pipeline(dataclasses.replace(small_pipeline.config, skip_unchanged=False))
    assert status == Exit.OK
    states = {c.node_id: c.state for c in report.components}
    for node_id in (
        "CsvExampleGen",
        "RowCleaner",
        "StatisticsGen",
        "Transform",
        "Tuner",
        "Trainer",
    ):
        assert states[node_id] == "CACHED", (node_id, states)
    # The Resolver now finds the first run's blessed model, so the Evaluator compares the
    # (cached) candidate with it: the same model, not better, so no duplicate version.
    assert report.candidate_model_id == report.baseline_model_id is not None
    assert report.blessed is False
    assert "candidate is the served (baseline) model itself" in report.push_decision
    assert len(_pushed_versions(small_pipeline.serving_model_dir)) == 1
    # No work either (pipeline/evaluation/executor.py): TFMA writes metrics and plots when it
    # evaluates; the short-circuit writes only the failed validation result.
    evaluator = next(c for c in report.components if c.node_id == "Evaluator")
    evaluation = open_store(small_pipeline.metadata_path).outputs(evaluator.execution_id)
    uri = evaluation["evaluation"][0].uri
    assert os.path.exists(os.path.join(uri, "validations.tfrecord"))
    assert not [p for p in os.listdir(uri) if p.startswith(("metrics", "plots"))]


def test_a_run_with_nothing_changed_stops_before_tfx_and_says_why(small_pipeline, capsys):
    """The default re-run: the last completed run's record holds (pipeline/local/up_to_date.py), so
    no TFX run is started: no execution recorded, no version pushed, the summary says why."""
    # The previous run completed (whichever test ran it last); make sure one did.
    assert run_pipeline(small_pipeline.config)[0] == Exit.OK
    store = open_store(small_pipeline.metadata_path)
    executions = len(store.mlmd.get_executions())
    versions = _pushed_versions(small_pipeline.serving_model_dir)
    capsys.readouterr()
    status, report = run_pipeline(small_pipeline.config)
    out = capsys.readouterr().out
    assert (status, report) == (Exit.OK, None)
    assert f": {UP_TO_DATE}." in out and "nothing ran" in out
    assert out.rstrip().splitlines()[-1].startswith("Push: not pushed: nothing changed since run")
    assert len(open_store(small_pipeline.metadata_path).mlmd.get_executions()) == executions
    assert _pushed_versions(small_pipeline.serving_model_dir) == versions


def _corrupt(data_root: Path) -> None:
    """5% of the rows break the schema (the RowCleaner quarantines them: above the 1% default),
    and a column the schema does not know (an anomaly of the whole data for ExampleValidator)."""
    path = data_root / "span-1" / "data.csv"
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    for row in rows[::20]:
        row["payment_type"] = "Bitcoin"
        row["trip_start_hour"] = "27"
    for i, row in enumerate(rows):
        row["surge"] = str(i % 3)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*header, "surge"])
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.timeout(600)
def test_data_anomalies_stop_the_run_before_training(tmp_path, capsys):
    data_root = write_sample(tmp_path / "data", rows=200)
    _corrupt(data_root)
    config = small_config(tmp_path, data_root)

    status, report = run_pipeline(config)

    assert status == Exit.REJECTED
    captured = capsys.readouterr()
    printed = captured.out
    assert {a.feature for a in report.anomalies} == {"surge"}
    # The bad rows never reach the statistics: they are quarantined, 10 of 200 (5% > 1%).
    assert report.cleaning.quarantined == 10 and report.quarantine_exceeded
    assert report.cleaning.features == {"payment_type": 10, "trip_start_hour": 10}
    assert "10 quarantined (5.00% > max 1.00%)" in printed
    assert "payment_type 10, trip_start_hour 10" in printed and "surge" in printed
    assert "anomalies and too many quarantined rows" in report.push_decision
    assert "Stopped by the data gate (anomalies and too many quarantined rows)" in captured.err
    ran = {c.node_id: c.state for c in report.components}
    assert ran["DataGate"] == "FAILED"
    for node_id in ("Transform", "Tuner", "Trainer", "Evaluator", "Pusher"):
        assert node_id not in ran
    assert not Path(config.model_serving_dir).exists() or not _pushed_versions(
        config.model_serving_dir
    )
