"""create_pipeline's wiring: every component present, each fed by the right upstream."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import PipelineConfig
from pipeline.evaluation import histogram_metrics
from pipeline.pipeline import (
    BEST_HYPERPARAMETERS_IMPORTER,
    LATEST_BLESSED_MODEL_RESOLVER,
    create_pipeline,
    eval_config,
)
from pipeline.testing.samples import small_config


def _nodes(config) -> dict:
    return {c.id: c for c in create_pipeline(config).components}


def _upstream(node) -> set[str]:
    return {n.id for n in node.upstream_nodes}


@pytest.fixture
def config(tmp_path: Path):
    return small_config(tmp_path, tmp_path / "data")


def test_default_pipeline_has_every_component(config):
    nodes = _nodes(config)
    assert set(nodes) == {
        "CsvExampleGen",
        "RowCleaner",
        "StatisticsGen",
        "ImportSchemaGen",
        "ExampleValidator",
        "DriftValidator",
        "DataGate",
        "Transform",
        "Tuner",
        "Trainer",
        LATEST_BLESSED_MODEL_RESOLVER,
        "Evaluator",
        "Pusher",
    }


def test_edges_follow_the_data_flow(config):
    nodes = _nodes(config)
    # Rows are cleaned against the curated schema before anything measures or learns from them.
    assert _upstream(nodes["RowCleaner"]) == {"CsvExampleGen", "ImportSchemaGen"}
    assert _upstream(nodes["StatisticsGen"]) == {"RowCleaner"}
    assert _upstream(nodes["ExampleValidator"]) == {"StatisticsGen", "ImportSchemaGen"}
    assert _upstream(nodes["DriftValidator"]) == {"StatisticsGen", "ImportSchemaGen"}
    assert _upstream(nodes["DataGate"]) == {
        "StatisticsGen",
        "ExampleValidator",
        "DriftValidator",
        "RowCleaner",
    }
    # The gate sits between validation and everything that trains or pushes.
    assert {"DataGate", "RowCleaner", "ImportSchemaGen"} <= _upstream(nodes["Transform"])
    assert "CsvExampleGen" not in _upstream(nodes["Transform"])
    assert {"Transform", "ImportSchemaGen"} <= _upstream(nodes["Tuner"])
    assert {"Transform", "Tuner", "ImportSchemaGen"} <= _upstream(nodes["Trainer"])
    assert {"RowCleaner", "Trainer", LATEST_BLESSED_MODEL_RESOLVER} <= _upstream(nodes["Evaluator"])
    # RowCleaner: a few clean eval examples become the pushed version's warmup requests.
    assert _upstream(nodes["Pusher"]) == {"Trainer", "Evaluator", "RowCleaner"}


def test_drift_baseline_is_what_earlier_data_gates_accepted(config):
    """The DriftValidator's history is the DataGate's accepted statistics of earlier runs (a
    plain Channel, not an edge: the gate runs after the validator within a run)."""
    from pipeline.validation.data_gate import ACCEPTED_STATISTICS

    nodes = _nodes(config)
    history = nodes["DriftValidator"].inputs["history"]
    assert (history.producer_component_id, history.output_key) == (
        "DataGate",
        ACCEPTED_STATISTICS,
    )
    assert history.type_name == "ExampleStatistics"
    assert ACCEPTED_STATISTICS in nodes["DataGate"].outputs
    assert "DataGate" not in _upstream(nodes["DriftValidator"])


def test_fast_mode_imports_best_hyperparameters_instead_of_tuning(config, tmp_path):
    import dataclasses

    nodes = _nodes(dataclasses.replace(config, skip_tuning=True))
    assert "Tuner" not in nodes
    assert BEST_HYPERPARAMETERS_IMPORTER in _upstream(nodes["Trainer"])
    importer = nodes[BEST_HYPERPARAMETERS_IMPORTER]
    assert Path(importer.exec_properties["artifact_uri"], "best_hyperparameters.txt").is_file()


def test_drift_check_can_be_turned_off_and_pusher_is_atomic(config):
    import dataclasses

    from pipeline.push.pusher import AtomicPusherExecutor
    from pipeline.validation.drift import SpanStatisticsGenExecutor

    nodes = _nodes(dataclasses.replace(config, check_drift=False))
    assert "DriftValidator" not in nodes
    assert _upstream(nodes["DataGate"]) == {"StatisticsGen", "ExampleValidator", "RowCleaner"}
    assert nodes["Pusher"].executor_spec.executor_class is AtomicPusherExecutor
    assert nodes["StatisticsGen"].executor_spec.executor_class is SpanStatisticsGenExecutor


def test_transform_reads_and_writes_through_the_fast_io_executor(config):
    # Same outputs as TFX's executor: tests/pipeline/test_transform_executor.py.
    from pipeline.transform_executor import FastIOTransformExecutor

    assert _nodes(config)["Transform"].executor_spec.executor_class is FastIOTransformExecutor


def test_infer_schema_flag_switches_to_schemagen(config):
    import dataclasses

    nodes = _nodes(dataclasses.replace(config, infer_schema=True))
    assert "SchemaGen" in nodes and "ImportSchemaGen" not in nodes
    assert "SchemaGen" in _upstream(nodes["Transform"])
    # No schema before the statistics: the cleaner only drops duplicates.
    assert _upstream(nodes["RowCleaner"]) == {"CsvExampleGen"}
    assert nodes["RowCleaner"].inputs.get("schema") is None


def test_gate_threshold_on_quarantined_rows_comes_from_the_config(config):
    import dataclasses

    nodes = _nodes(dataclasses.replace(config, max_quarantine_fraction=0.2))
    assert nodes["DataGate"].exec_properties["max_quarantine_fraction"] == 0.2
    default = PipelineConfig().max_quarantine_fraction
    assert _nodes(config)["DataGate"].exec_properties["max_quarantine_fraction"] == default


def test_eval_config_gates_on_overall_auc_accuracy_and_baseline(config):
    cfg = eval_config(config)
    by_name = {m.class_name: m for m in cfg.metrics_specs[0].metrics}
    assert {"AUC", "BinaryAccuracy", "HistogramCalibration", "ExampleCount"} <= set(by_name)
    # Calibration comes from AUC's histogram (pipeline/evaluation/histogram_metrics.py).
    assert by_name["HistogramCalibration"].module == histogram_metrics.MODULE
    auc = by_name["AUC"].per_slice_thresholds[0]
    assert auc.threshold.value_threshold.lower_bound.value == config.thresholds.min_auc
    assert auc.threshold.change_threshold.absolute.value == config.thresholds.min_auc_gain
    assert [s.feature_keys for s in cfg.slicing_specs[1:]] == [[k] for k in config.slice_features]


def test_the_evaluator_is_the_batch_path_unless_tfma_is_asked_for(config):
    import dataclasses

    from pipeline.evaluation.executor import BatchEvaluationExecutor, SkipSelfEvaluationExecutor

    assert config.evaluator == "batch"
    nodes = _nodes(config)
    assert nodes["Evaluator"].executor_spec.executor_class is BatchEvaluationExecutor
    nodes = _nodes(dataclasses.replace(config, evaluator="tfma"))
    assert nodes["Evaluator"].executor_spec.executor_class is SkipSelfEvaluationExecutor
