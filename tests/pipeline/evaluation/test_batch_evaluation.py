"""The Evaluator's batch path (pipeline/evaluation/batch.py) against TFMA's, on the same files.

Each case runs the project's Evaluator executor twice on the same eval split, candidate and
baseline: SkipSelfEvaluationExecutor (TFX's executor: TFMA over Beam) and
BatchEvaluationExecutor, with real SavedModels (tf.Modules with the Trainer's two signatures,
serving_default and transform_features) and the eval config pipeline/pipeline.py builds for
each task. Every metric of every slice (candidate, baseline, diffs), the plots, the validation
result and the blessing must agree. Tolerance: 1e-6 absolute plus 1e-6 relative: the batch path
sums the same float64 values as TFMA's combiners in another order (per batch, then per slice),
which moves the last few bits of a sum of thousands of terms, nothing more.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import binary_confusion_matrices, calibration_histogram
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from modules import dataset_spec
from pipeline import config as pipeline_config
from pipeline.evaluation import batch, executor
from pipeline.evaluation.executor import BatchEvaluationExecutor, SkipSelfEvaluationExecutor
from pipeline.pipeline import eval_config

ROWS = 600
CLASSES = 3
SLICES = ("hour", "island")


class _Model(tf.Module):
    """serving_default: serialized tf.Examples -> probabilities / predictions (as the Trainer's
    export); transform_features: -> the transformed label `label_xf` and `x_xf`."""

    def __init__(self, task: str, weight: float, bias: float, squash: bool = True) -> None:
        super().__init__()
        self.task = task
        self.squash = squash
        self.weight = tf.Variable(weight, dtype=tf.float32)
        self.bias = tf.Variable(bias, dtype=tf.float32)

    def _parse(self, examples, with_label: bool):
        spec = {"x": tf.io.FixedLenFeature([], tf.float32, default_value=0.0)}
        if with_label:
            dtype = tf.float32 if self.task == dataset_spec.REGRESSION else tf.int64
            spec["label"] = tf.io.FixedLenFeature([], dtype, default_value=0)
        return tf.io.parse_example(examples, spec)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serving_default(self, examples):
        x = self._parse(examples, False)["x"][:, None]
        if self.task == dataset_spec.MULTICLASS:
            logits = tf.concat([-x * self.weight, tf.zeros_like(x), x * self.weight], 1)
            return {"probabilities": tf.nn.softmax(logits + self.bias)}
        z = x * self.weight + self.bias
        if self.task == dataset_spec.REGRESSION:
            return {"predictions": z}
        # squash=False: a "probability" outside [0, 1], or NaN for a NaN weight.
        return {"probabilities": tf.sigmoid(z) if self.squash else z}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(self, examples):
        parsed = self._parse(examples, True)
        return {"x_xf": parsed["x"], "label_xf": parsed["label"]}


def _save(path: str, task: str, weight: float = 1.0, bias: float = 0.0, squash=True) -> str:
    module = _Model(task, weight, bias, squash)
    signatures = {
        "serving_default": module.serving_default.get_concrete_function(),
        "transform_features": module.transform_features.get_concrete_function(),
    }
    serving = os.path.join(path, "Format-Serving")
    tf.saved_model.save(module, serving, signatures=signatures)
    return path


def _example(x: float, label, hour: int | None, island: list[bytes] | None) -> bytes:
    feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))}
    if isinstance(label, float):
        feature["label"] = tf.train.Feature(float_list=tf.train.FloatList(value=[label]))
    else:
        feature["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))
    if hour is not None:
        feature["hour"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[hour]))
    if island is not None:
        feature["island"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=island))
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString()


def _split(path: str, task: str, rows: int = ROWS, one_class: bool = False) -> str:
    """An eval split of gzipped TFRecords (two files) with hostile slices: rows without `hour`,
    an empty `island` string, an `island` feature with no values, one with two values."""
    rng = np.random.default_rng(7)
    islands = [[b"Biscoe"], [b"Dream"], [b""], [], [b"Biscoe", b"Torgersen"], None]
    records = []
    for i in range(rows):
        x = float(rng.normal())
        if task == dataset_spec.BINARY:
            label = 0 if one_class else int(x + rng.normal() > 0)
        elif task == dataset_spec.MULTICLASS:
            label = int(np.clip(np.round(x + rng.normal(scale=0.7)) + 1, 0, CLASSES - 1))
        else:
            label = float(3 * x + rng.normal())
        hour = None if i % 11 == 0 else i % 5
        records.append(_example(x, label, hour, islands[i % len(islands)]))
    split = os.path.join(path, "Split-eval")
    os.makedirs(split, exist_ok=True)
    for shard in range(2):
        name = os.path.join(split, f"data_tfrecord-{shard:05d}-of-00002.gz")
        with tf.io.TFRecordWriter(name, "GZIP") as writer:
            for record in records[shard::2]:
                writer.write(record)
    return path


_CLASSES = {dataset_spec.BINARY: ("0", "1"), dataset_spec.MULTICLASS: ("a", "b", "c")}


def _config(task: str, thresholds: dict[str, float]) -> tfma.EvalConfig:
    """pipeline/pipeline.py's eval config for `task`, label `label`, slices hour and island."""
    spec = dataclasses.replace(
        dataset_spec.load("taxi"),
        task=task,
        label="label",
        classes=_CLASSES.get(task, ()),
        thresholds=thresholds,
    )
    config = pipeline_config.PipelineConfig(thresholds=None, slice_features=SLICES)
    return eval_config(config, spec)


@dataclasses.dataclass
class Outcome:
    metrics: dict
    plots: dict
    validation: object
    blessing: dict
    blessed: bool


def _evaluate(executor_class, tmp, examples: str, model: str, baseline: str | None, config):
    out = os.path.join(tmp, executor_class.__name__)
    artifacts = {}
    for key, uri, artifact_id in (("model", model, 11), ("baseline_model", baseline, 7)):
        if uri:
            a = standard_artifacts.Model()
            a.uri, a.id = uri, artifact_id
            artifacts[key] = [a]
    split = standard_artifacts.Examples()
    split.uri = examples
    split.split_names = '["eval"]'
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = os.path.join(out, "evaluation")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = os.path.join(out, "blessing")
    os.makedirs(blessing.uri, exist_ok=True)
    context = BaseBeamExecutor.Context(
        beam_pipeline_args=pipeline_config.in_memory_beam_args(), tmp_dir=out
    )
    executor_class(context).Do(
        {"examples": [split], **artifacts},
        {"evaluation": [evaluation], "blessing": [blessing]},
        {
            "eval_config": proto_utils.proto_to_json(config),
            "example_splits": '["eval"]',
            "current_component_id": "Evaluator",
        },
    )
    metrics, plots = {}, {}
    for per_slice in tfma.load_metrics(evaluation.uri):
        for kv in per_slice.metric_keys_and_values:
            metrics[str(per_slice.slice_key), str(kv.key)] = kv.value
    for per_slice in tfma.load_plots(evaluation.uri):
        for kv in per_slice.plot_keys_and_values:
            plots[str(per_slice.slice_key), str(kv.key)] = kv.value
    properties = {
        k: v.string_value or v.int_value
        for k, v in blessing.mlmd_artifact.custom_properties.items()
    }
    return Outcome(
        metrics,
        plots,
        tfma.load_validation_result(evaluation.uri),
        properties,
        os.path.exists(os.path.join(blessing.uri, "BLESSED")),
    )


def _failed(validation) -> set[tuple[str, str]]:
    return {
        (str(per_slice.slice_key), str(failure.metric_key))
        for per_slice in validation.metric_validations_per_slice
        for failure in per_slice.failures
    }


def _assert_same(tfma_run: Outcome, batch_run: Outcome) -> None:
    assert tfma_run.metrics.keys() == batch_run.metrics.keys()
    assert tfma_run.metrics, "TFMA wrote no metrics"
    for key, expected in tfma_run.metrics.items():
        got = batch_run.metrics[key]
        if expected.HasField("double_value"):
            a, b = expected.double_value.value, got.double_value.value
            assert (math.isnan(a) and math.isnan(b)) or math.isclose(
                a, b, rel_tol=1e-6, abs_tol=1e-6
            ), (key, a, b)
        else:
            assert expected == got, key
    assert tfma_run.plots == batch_run.plots
    assert tfma_run.validation.validation_ok == batch_run.validation.validation_ok
    assert _failed(tfma_run.validation) == _failed(batch_run.validation)
    assert tfma_run.blessing == batch_run.blessing
    assert tfma_run.blessed == batch_run.blessed


def _both(
    tmp_path,
    caplog,
    task: str,
    thresholds: dict,
    examples: str | None = None,
    with_baseline: bool = True,
    **model,
) -> tuple:
    tmp = str(tmp_path)
    examples = examples or _split(os.path.join(tmp, "examples"), task)
    candidate = _save(os.path.join(tmp, "candidate"), task, weight=2.0, **model)
    baseline = None
    if with_baseline:
        baseline = _save(os.path.join(tmp, "baseline"), task, weight=0.5, bias=0.1)
    config = _config(task, thresholds)
    assert (
        batch.unsupported_reason(
            tfma.utils.update_eval_config_with_defaults(
                config, has_baseline=with_baseline, rubber_stamp=True
            )
        )
        is None
    )
    runs = [_evaluate(SkipSelfEvaluationExecutor, tmp, examples, candidate, baseline, config)]
    with caplog.at_level(logging.INFO, logger=executor.__name__):
        runs.append(_evaluate(BatchEvaluationExecutor, tmp, examples, candidate, baseline, config))
    assert "Evaluator: batch path" in caplog.text  # not a fallback to TFMA
    _assert_same(*runs)
    return runs


def test_binary_matches_tfma_and_fails_a_value_threshold(tmp_path, caplog):
    tfma_run, _ = _both(
        tmp_path,
        caplog,
        dataset_spec.BINARY,
        {"min_auc": 0.99, "min_auc_gain": -1.0, "min_accuracy": 0.5},
    )
    names = {name for _, name in tfma_run.metrics}
    assert any('name: "auc"' in n and "is_diff: true" in n for n in names)
    assert any('name: "calibration"' in n for n in names)
    assert not tfma_run.validation.validation_ok
    failed = _failed(tfma_run.validation)
    assert failed and all('name: "auc"' in k for _, k in failed)


def test_multiclass_matches_tfma_and_passes(tmp_path, caplog):
    tfma_run, _ = _both(
        tmp_path, caplog, dataset_spec.MULTICLASS, {"min_accuracy": 0.3, "min_accuracy_gain": -1.0}
    )
    assert tfma_run.validation.validation_ok and tfma_run.blessed
    assert any("multi_class_confusion_matrix_plot" in k for _, k in tfma_run.plots)
    assert any("class_id" in k and "precision" in k for _, k in tfma_run.metrics)


def test_regression_matches_tfma_and_fails_a_change_threshold(tmp_path, caplog):
    # The candidate (weight 2 against a label of 3x) beats the baseline (weight 0.5) by less
    # than the 1,000 of MSE decrease asked of it: a change threshold failure.
    tfma_run, _ = _both(
        tmp_path,
        caplog,
        dataset_spec.REGRESSION,
        {"max_mse": 100.0, "max_mae": 100.0, "max_mse_increase": -1000.0},
    )
    assert not tfma_run.validation.validation_ok
    assert any(
        "mean_squared_error" in k and "is_diff" in k for _, k in _failed(tfma_run.validation)
    )


def test_one_class_and_out_of_range_predictions_match_tfma(tmp_path, caplog):
    # Every label 0 (AUC as TFMA gives it) and an unsquashed "probability" outside [0, 1].
    tmp = str(tmp_path)
    examples = _split(os.path.join(tmp, "examples"), dataset_spec.BINARY, one_class=True)
    _both(tmp_path, caplog, dataset_spec.BINARY, {"min_auc": 0.5}, examples=examples, squash=False)


def test_a_first_run_without_a_baseline_matches_tfma(tmp_path, caplog):
    # No baseline: TFX rubber-stamps the change threshold; the value threshold still holds.
    tfma_run, _ = _both(
        tmp_path,
        caplog,
        dataset_spec.BINARY,
        {"min_auc": 0.6, "min_auc_gain": 0.5},
        with_baseline=False,
    )
    assert tfma_run.validation.validation_ok and tfma_run.blessed
    assert not any("is_diff" in k for _, k in tfma_run.metrics)


def test_a_nan_prediction_goes_to_tfma(tmp_path):
    tmp = str(tmp_path)
    examples = _split(os.path.join(tmp, "examples"), dataset_spec.BINARY, rows=40)
    model = _save(os.path.join(tmp, "nan"), dataset_spec.BINARY, bias=float("nan"), squash=False)
    config = tfma.utils.update_eval_config_with_defaults(
        _config(dataset_spec.BINARY, {"min_auc": 0.5}), has_baseline=False
    )
    files = batch.split_files(os.path.join(examples, "Split-eval"))
    with pytest.raises(batch.Unsupported, match="NaN"):
        batch.evaluate(config, files, {"": model + "/Format-Serving"}, str(tmp_path / "out"))
    # The executor then runs TFMA, whose answer (here: its error) is the Evaluator's.
    errors = []
    for cls in (SkipSelfEvaluationExecutor, BatchEvaluationExecutor):
        with pytest.raises(Exception) as raised:  # noqa: PT011 - TFMA's own error, whatever it is
            _evaluate(cls, tmp, examples, model, None, _config(dataset_spec.BINARY, {}))
        errors.append(type(raised.value))
    assert errors[0] == errors[1]


def test_an_unknown_metric_goes_through_tfma(tmp_path):
    tmp = str(tmp_path)
    examples = _split(os.path.join(tmp, "examples"), dataset_spec.REGRESSION, rows=60)
    model = _save(os.path.join(tmp, "model"), dataset_spec.REGRESSION)
    config = _config(dataset_spec.REGRESSION, {"max_mse": 100.0})
    config.metrics_specs[0].metrics.add(class_name="MeanAbsolutePercentageError")
    reason = batch.unsupported_reason(tfma.utils.update_eval_config_with_defaults(config))
    assert reason and "MeanAbsolutePercentageError" in reason
    run = _evaluate(BatchEvaluationExecutor, tmp, examples, model, None, config)
    assert any("mean_absolute_percentage_error" in k for _, k in run.metrics)


def test_an_empty_split_is_a_clear_error(tmp_path):
    tmp = str(tmp_path)
    examples = _split(os.path.join(tmp, "examples"), dataset_spec.REGRESSION, rows=0)
    model = _save(os.path.join(tmp, "model"), dataset_spec.REGRESSION)
    config = tfma.utils.update_eval_config_with_defaults(
        _config(dataset_spec.REGRESSION, {"max_mse": 1.0})
    )
    files = batch.split_files(os.path.join(examples, "Split-eval"))
    with pytest.raises(ValueError, match="eval split is empty"):
        batch.evaluate(config, files, {"": model + "/Format-Serving"}, str(tmp_path / "out"))


@pytest.mark.parametrize("thresholds", [None, [0.0, 0.25, 0.5, 1.0], [0.3]])
def test_histogram_matrices_are_tfma_s_bit_for_bit(thresholds):
    # Buckets below 0 (id 0), above 1 (id 10,001), empty stretches, fractional labels.
    rng = np.random.default_rng(3)
    ids = sorted({0, 10_001, *rng.integers(1, 10_001, 400).tolist()})
    histogram = [
        calibration_histogram.Bucket(i, float(y), float(p), float(n))
        for i, y, p, n in zip(
            ids,
            rng.uniform(0, 5, len(ids)),
            rng.uniform(0, 5, len(ids)),
            rng.uniform(5, 9, len(ids)),
            strict=True,
        )
    ]
    computations = binary_confusion_matrices.binary_confusion_matrices(
        num_thresholds=None if thresholds else 10_000, thresholds=thresholds, use_histogram=True
    )
    derived = computations[-1]
    metrics = {computations[0].keys[0]: histogram}
    assert batch._histogram_matrices(derived, metrics) == derived.result(metrics)
