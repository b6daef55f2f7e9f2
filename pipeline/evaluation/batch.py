"""The Evaluator's batch path: TFMA's metrics, validation and output, computed in large batches.

TFMA turns every eval example into Python dicts and feeds it, once per slice and per model, to
per-example Python combiners (docs/performance.md, "Issue 26": ~1.2k eval rows/s at best). For
the eval configs this pipeline builds (pipeline/pipeline.py::eval_config) the same numbers come
out of a few numpy operations per batch of thousands of examples:

- the inputs are what TFMA reads for such a config: each model's `serving_default` signature
  called on the serialized tf.Examples (the prediction), its `transform_features` signature
  (the label, `ModelSpec.label_key`, a transformed feature), and the raw features decoded by
  tfx_bsl's schema-less decoder (the slice values; TFMA looks in the transformed features first,
  so a slice feature a model's transform also outputs is left to TFMA);
- TFMA's own metric computations are built from the config (`metric_specs.to_computations`);
  only their combiners (the per-example part) are replaced: each supported combiner's
  accumulator is filled from per-slice numpy sums and handed to the combiner's own
  `extract_output`. Everything after that is TFMA's code: its derived metrics (AUC from the
  10,000-bucket calibration histogram, accuracy, precision/recall from the confusion matrices,
  the project's histogram metrics), the candidate-minus-baseline diffs, `metrics_validator`,
  `CombineValidations` and the proto converters, written where and as TFMA's writers write them.
- Memory: per (model, slice) accumulators only (the binary histogram is 10,002 buckets x 3
  floats, 240 KB per slice and model); the split is streamed in batches of `batch_size`.

`unsupported_reason` says why a config is not one of these (an unknown metric or combiner,
example weights, other slicing, confidence intervals, ...); `Unsupported` is raised when the
data or the model is outside what the batch path reproduces (a NaN prediction, a label outside
[0, 1] for a binary metric, an output shape it does not know). In both cases the executor runs
TFMA instead, unchanged, so TFMA's behaviour (or its error) is the answer.
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.contrib.aggregates import binary_confusion_matrices as bcm_lib
from tensorflow_model_analysis.evaluators import metrics_plots_and_validations_evaluator as mpv
from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.metrics import (
    binary_confusion_matrices,
    calibration,
    calibration_histogram,
    example_count,
    mean_regression_error,
    metric_specs,
    metric_types,
    metric_util,
    multi_class_confusion_matrix_metrics,
    tf_metric_wrapper,
)
from tensorflow_model_analysis.proto import config_pb2, validation_result_pb2
from tensorflow_model_analysis.writers import eval_config_writer
from tensorflow_model_analysis.writers import metrics_plots_and_validations_writer as mpv_writer
from tfx_bsl.coders import example_coder

# Examples per model call and per numpy pass: large enough that the per-batch Python is noise,
# small enough that a batch's tensors stay in cache (the taxi model: 40 us/row at 1,024,
# 76 us/row at 4,096, 93 us/row at 16,384 examples per call, candidate signature + label).
DEFAULT_BATCH_SIZE = 1024

# The one signature and preprocessing function the batch path calls, as eval_config names them.
SIGNATURE = "serving_default"
PREPROCESSING = "transform_features"
# TFMA's prediction keys, in the order metric_util.prepare_labels_and_predictions tries them.
_PREDICTION_KEYS = ("scores", "outputs", "predictions", "logistic", "probabilities", "logits")

_HISTOGRAM = calibration_histogram._CalibrationHistogramCombiner
_BINARY_MATRICES = binary_confusion_matrices._BinaryConfusionMatrixCombiner
_MULTICLASS_MATRICES = multi_class_confusion_matrix_metrics._MultiClassConfusionMatrixCombiner
_EXAMPLE_COUNT = example_count._ExampleCountCombiner
_MSE = mean_regression_error._MeanSquaredErrorCombiner
_MAE = mean_regression_error._MeanAbsoluteErrorCombiner
_LABELS_PREDICTIONS = calibration._WeightedLabelsPredictionsExamplesCombiner
_KERAS = tf_metric_wrapper._CompilableMetricsCombiner
_KNOWN_COMBINERS = (
    _HISTOGRAM,
    _BINARY_MATRICES,
    _MULTICLASS_MATRICES,
    _EXAMPLE_COUNT,
    _MSE,
    _MAE,
    _LABELS_PREDICTIONS,
    _KERAS,
)
# Keras metrics (run by TFMA's compilable-metrics combiner) the batch path computes.
_KERAS_METRICS = ("SparseCategoricalAccuracy",)

_MODEL_SPEC_FIELDS = {
    "name",
    "model_type",
    "signature_name",
    "preprocessing_function_names",
    "label_key",
    "is_baseline",
}
_METRICS_SPEC_FIELDS = {"metrics", "model_names", "binarize"}
_METRIC_CONFIG_FIELDS = {"class_name", "module", "per_slice_thresholds", "threshold"}


class Unsupported(Exception):
    """The data or a model is outside what the batch path reproduces: run TFMA instead."""


def unsupported_reason(eval_config: config_pb2.EvalConfig) -> str | None:
    """Why TFMA, not the batch path, must evaluate `eval_config` (already updated with TFMA's
    defaults); None when the batch path computes exactly what TFMA would."""
    specs = list(eval_config.model_specs)
    if not specs or len(specs) > 2:
        return f"{len(specs)} model specs"
    for spec in specs:
        extra = {f.name for f, _ in spec.ListFields()} - _MODEL_SPEC_FIELDS
        if extra:
            return f"model spec {spec.name!r} sets {sorted(extra)}"
        if spec.signature_name != SIGNATURE or list(spec.preprocessing_function_names) != [
            PREPROCESSING
        ]:
            return f"model spec {spec.name!r}: another signature or preprocessing function"
        if not spec.label_key or spec.model_type not in ("", tfma.TF_KERAS):
            return f"model spec {spec.name!r}: no label_key or model type {spec.model_type!r}"
    for slicing in eval_config.slicing_specs:
        if {f.name for f, _ in slicing.ListFields()} - {"feature_keys"} or len(
            slicing.feature_keys
        ) > 1:
            return f"slicing spec {slicing} (only overall and one feature_keys column)"
    if eval_config.cross_slicing_specs:
        return "cross slicing specs"
    options = eval_config.options
    if (
        options.compute_confidence_intervals.value
        or options.min_slice_size.value > 1
        or options.disabled_outputs.values
        or not options.HasField("include_default_metrics")
        or options.include_default_metrics.value
    ):
        return "options (confidence intervals, min slice size, disabled outputs, default metrics)"
    for spec in eval_config.metrics_specs:
        extra = {f.name for f, _ in spec.ListFields()} - _METRICS_SPEC_FIELDS
        if extra:
            return f"metrics spec sets {sorted(extra)}"
        if spec.HasField("binarize") and (
            {f.name for f, _ in spec.binarize.ListFields()} - {"class_ids"}
        ):
            return "binarization other than class_ids"
        for metric in spec.metrics:
            extra = {f.name for f, _ in metric.ListFields()} - _METRIC_CONFIG_FIELDS
            if extra:
                return f"metric {metric.class_name} sets {sorted(extra)}"
    try:
        computations = _computations(eval_config)
    except Exception as e:  # a metric TFMA itself cannot build: TFMA reports it
        return f"TFMA cannot build the metrics: {e}"
    if computations.cross_slice_computations or computations.ci_derived_computations:
        return "cross-slice or confidence-interval computations"
    for c in computations.non_derived_computations:
        reason = _combiner_reason(c)
        if reason:
            return reason
    return None


def _computations(eval_config: config_pb2.EvalConfig) -> mpv.MetricComputations:
    return mpv._filter_and_separate_computations(
        metric_specs.to_computations(eval_config.metrics_specs, eval_config=eval_config)
    )


def _combiner_reason(computation: metric_types.MetricComputation) -> str | None:
    combiner = computation.combiner
    if type(combiner) not in _KNOWN_COMBINERS:
        return f"combiner {type(combiner).__name__} (keys {computation.keys[:1]})"
    for key in computation.keys:
        if key.output_name or key.example_weighted or key.aggregation_type:
            return f"metric key {key}"
        if key.sub_key and (key.sub_key.k is not None or key.sub_key.top_k is not None):
            return f"metric key {key} (top k)"
    if getattr(combiner, "_class_weights", None) or getattr(combiner, "_aggregation_type", None):
        return f"{type(combiner).__name__} with class weights or aggregation"
    preprocessors = computation.preprocessors or []
    if isinstance(combiner, _EXAMPLE_COUNT):
        if any(type(p) is not metric_types.StandardMetricInputsPreprocessor for p in preprocessors):
            return "example count with a preprocessor"
    elif preprocessors:
        return f"{type(combiner).__name__} with preprocessors"
    if isinstance(combiner, _HISTOGRAM) and not (
        combiner._prediction_based_bucketing and combiner._fractional_labels
    ):
        return "calibration histogram bucketed by label or without fractional labels"
    if isinstance(combiner, (_BINARY_MATRICES, _MULTICLASS_MATRICES)) and (
        combiner._extract_label_prediction_and_weight
        is not metric_util.to_label_prediction_example_weight
    ):
        return "confusion matrices with a custom label/prediction extraction"
    if isinstance(combiner, _BINARY_MATRICES) and (
        combiner._example_id_key or not combiner._enable_fractional_labels
    ):
        return "binary confusion matrices with example ids or without fractional labels"
    if isinstance(combiner, _KERAS):
        configs = [c for configs in combiner._metric_configs for c in configs]
        losses = [c for configs in combiner._loss_configs for c in configs]
        names = [c.get("class_name") for c in configs]
        if losses or combiner._output_names != [""] or combiner._sub_key:
            return "Keras metrics with losses, outputs or sub keys"
        if any(name not in _KERAS_METRICS for name in names):
            return f"Keras metrics {names}"
    return None


# ---- inputs ------------------------------------------------------------------------------------
def split_files(split_uri: str) -> list[str]:
    """The split's files, as TFX's Evaluator reads them (io_utils.all_files_pattern)."""
    return sorted(tf.io.gfile.glob(os.path.join(split_uri, "*")))


def read_batches(files: Sequence[str], batch_size: int) -> Iterator[list[bytes]]:
    """Serialized records in batches, streaming (GZIP for .gz files, as Beam's AUTO). The
    record iterator, not tf.data: 0.07 s against 3.1 s for 20,000 records here."""
    pending: list[bytes] = []
    for path in files:
        options = tf.io.TFRecordOptions("GZIP" if path.endswith(".gz") else "")
        for record in tf.compat.v1.io.tf_record_iterator(path, options):
            pending.append(record)
            if len(pending) == batch_size:
                yield pending
                pending = []
    if pending:
        yield pending


class _Model:
    """One SavedModel, loaded once into its own graph: its serving_default output and its
    transform_features label, fetched together per batch. (The graph loader only imports the
    two signatures' graph, pruned to what the fetches need; tf.saved_model.load would rebuild
    every function of the Keras model in Python first: 6.7 s against 1.7 s per model here.)"""

    def __init__(self, name: str, path: str, label_key: str) -> None:
        self.name = name
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(
                self.session, [tf.saved_model.SERVING], path
            )
        signatures = meta_graph.signature_def
        if SIGNATURE not in signatures or PREPROCESSING not in signatures:
            raise Unsupported(f"model {name!r} lacks the {SIGNATURE} or {PREPROCESSING} signature")
        predict, transform = signatures[SIGNATURE], signatures[PREPROCESSING]
        self.transform_keys = frozenset(transform.outputs)
        key = next((k for k in _PREDICTION_KEYS if k in predict.outputs), None)
        if key is None:
            raise Unsupported(f"model {name!r}: outputs {sorted(predict.outputs)}")
        prediction = predict.outputs[key]
        if label_key not in transform.outputs:
            raise Unsupported(f"model {name!r}: {PREPROCESSING} has no {label_key!r}")
        label = transform.outputs[label_key]
        for info in (prediction, label):
            if info.WhichOneof("encoding") != "name":
                raise Unsupported(f"model {name!r}: a sparse or composite label or prediction")
        self.fetches = [prediction.name, label.name]
        self.inputs = []
        for signature in (predict, transform):
            if len(signature.inputs) != 1:
                raise Unsupported(f"model {name!r}: a signature with more than one input")
            (info,) = signature.inputs.values()
            if info.dtype != tf.string.as_datatype_enum:
                raise Unsupported(f"model {name!r}: a signature not taking serialized examples")
            self.inputs.append(info.name)

    def predict(self, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels [n], predictions [n, k]) for serialized examples, as TFMA extracts them."""
        prediction, label = self.session.run(self.fetches, {name: records for name in self.inputs})
        n = len(records)
        if label.size != n or prediction.shape[0] != n or prediction.ndim > 2:
            raise Unsupported(f"label {label.shape} / prediction {prediction.shape} per example")
        prediction = prediction.reshape(n, -1)
        if np.issubdtype(prediction.dtype, np.floating) and np.isnan(prediction).any():
            raise Unsupported("a NaN prediction")
        return label.reshape(n), prediction

    def close(self) -> None:
        self.session.close()


# ---- slicing -----------------------------------------------------------------------------------
def _slice_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")  # TFMA: tf.compat.as_text; non-UTF-8 fails there too
    return value


def _column_pairs(batch: pa.RecordBatch, column: str) -> tuple[np.ndarray, list]:
    """(example index, distinct value index) pairs of one slice column, with the values; an
    example without the feature (or with no values) is in no slice of it, as in TFMA."""
    index = batch.schema.get_field_index(column)
    if index < 0:
        return np.zeros((0, 2), np.int64), []
    array = batch.column(index)
    values = array.flatten().to_numpy(zero_copy_only=False)
    if len(values) == 0:
        return np.zeros((0, 2), np.int64), []
    parents = pa.compute.list_parent_indices(array).to_numpy()
    uniques, inverse = np.unique(values, return_inverse=True)
    pairs = np.unique(np.stack([parents, inverse.reshape(-1)], axis=1), axis=0)
    return pairs, [_slice_value(v) for v in uniques.tolist()]


# ---- accumulators ------------------------------------------------------------------------------
class _Accumulator:
    """One (model, slice)'s sums for every combiner computation of that model."""

    def __init__(self, computations: list) -> None:
        self.state: list[Any] = []
        for c in computations:
            combiner = c.combiner
            if isinstance(combiner, _HISTOGRAM):
                self.state.append(np.zeros((combiner._num_buckets + 2, 3)))
            elif isinstance(combiner, _BINARY_MATRICES):
                thresholds = combiner._binary_confusion_matrices._thresholds
                self.state.append(np.zeros((len(thresholds), 4)))
            elif isinstance(combiner, _MULTICLASS_MATRICES):
                self.state.append({})
            else:
                self.state.append(np.zeros(3))

    def add(self, computations: list, label: np.ndarray, prediction: np.ndarray) -> None:
        for i, c in enumerate(computations):
            _ADD[type(c.combiner)](self.state, i, c, label, prediction)

    def outputs(self, computations: list) -> dict:
        result = {}
        for i, c in enumerate(computations):
            result.update(c.combiner.extract_output(_OUTPUT[type(c.combiner)](self.state[i], c)))
        return result


def _binary_inputs(c, label: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label, prediction) in float64 for one binary computation: the class's column and
    label==class for a class_id sub key, else the single prediction."""
    sub_key = c.keys[0].sub_key
    if sub_key is not None and sub_key.class_id is not None:
        if prediction.shape[1] == 1:
            raise Unsupported("a class_id sub key on a single prediction")
        p = prediction[:, sub_key.class_id].astype(np.float64)
        return (label == sub_key.class_id).astype(np.float64), p
    if prediction.shape[1] != 1:
        raise Unsupported(f"a binary metric on {prediction.shape[1]} predictions per example")
    y = label.astype(np.float64)
    if ((y < 0) | (y > 1)).any() or np.isnan(y).any():
        raise Unsupported("a label outside [0, 1] for a binary metric (TFMA raises)")
    return y, prediction[:, 0].astype(np.float64)


def _add_histogram(state, i, c, label, prediction) -> None:
    y, p = _binary_inputs(c, label, prediction)
    combiner = c.combiner
    buckets = combiner._num_buckets
    index = (p - combiner._left) / combiner._range * buckets + 1
    index = np.clip(index, 0, buckets + 1).astype(np.int64)
    size = buckets + 2
    # fractional labels: (label 0, weight 1-y) and (label 1, weight y), summed per bucket.
    state[i][:, 0] += np.bincount(index, weights=y, minlength=size)
    state[i][:, 1] += np.bincount(index, weights=p * (1 - y) + p * y, minlength=size)
    state[i][:, 2] += np.bincount(index, weights=(1 - y) + y, minlength=size)


def _histogram_output(state, c):
    # Only the buckets some example fell in, as TFMA's accumulator holds them.
    seen = np.flatnonzero(state[:, 2] > 0)
    return {
        b: calibration_histogram.Bucket(b, y, p, n)
        for b, (y, p, n) in zip(seen.tolist(), state[seen].tolist(), strict=True)
    }


def _add_binary_matrices(state, i, c, label, prediction) -> None:
    y, p = _binary_inputs(c, label, prediction)
    thresholds = c.combiner._binary_confusion_matrices._thresholds
    for t_index, t in enumerate(thresholds):
        above = p > t
        state[i][t_index] += [
            y[above].sum(),
            (1 - y)[~above].sum(),
            (1 - y)[above].sum(),
            y[~above].sum(),
        ]


def _binary_matrices_output(state, c):
    thresholds = c.combiner._binary_confusion_matrices._thresholds
    return {
        t: bcm_lib._ThresholdEntry(
            matrix=bcm_lib.Matrix(*(float(v) for v in state[t_index])),
            tp_examples=[],
            tn_examples=[],
            fp_examples=[],
            fn_examples=[],
        )
        for t_index, t in enumerate(thresholds)
    }


def _add_multiclass_matrices(state, i, c, label, prediction) -> None:
    if prediction.shape[1] < 2:
        raise Unsupported("a multi-class confusion matrix on one prediction per example")
    actual = label.astype(np.int64)
    predicted = np.argmax(prediction, axis=1)
    rows = np.arange(len(prediction))
    for threshold in c.combiner._thresholds:
        # TFMA's loop: once -1, the next threshold reads predictions[-1] (the last class).
        below = prediction[rows, predicted] <= threshold
        predicted = np.where(below, -1, predicted)
        matrix = state[i].setdefault(threshold, {})
        cells, counts = np.unique(np.stack([actual, predicted], axis=1), axis=0, return_counts=True)
        for (a, p), n in zip(cells.tolist(), counts.tolist(), strict=True):
            key = multi_class_confusion_matrix_metrics.MatrixEntryKey(a, p)
            matrix[key] = matrix.get(key, 0.0) + float(n)


def _multiclass_output(state, c):
    matrices = multi_class_confusion_matrix_metrics.Matrices()
    for threshold, cells in state.items():
        matrices[threshold] = dict(cells)
    return matrices


def _add_count(state, i, c, label, prediction) -> None:
    state[i][0] += len(label)


def _count_output(state, c):
    return float(state[0])


def _regression_inputs(c, label, prediction) -> tuple[np.ndarray, np.ndarray]:
    if prediction.shape[1] != 1 or c.keys[0].sub_key is not None:
        raise Unsupported("a regression metric on several predictions per example")
    return label, prediction[:, 0]


def _add_error(state, i, c, label, prediction) -> None:
    y, p = _regression_inputs(c, label, prediction)
    # In the arrays' own dtype, as TFMA's np.absolute(label - prediction); NaNs are skipped.
    error = np.absolute(y - p).astype(np.float64)
    if isinstance(c.combiner, _MSE):
        error = error**2
    keep = ~np.isnan(error)
    state[i][0] += error[keep].sum()
    state[i][1] += keep.sum()


def _error_output(state, c):
    acc = mean_regression_error._MeanRegressionErrorAccumulator()
    acc.total_regression_error = float(state[0])
    acc.total_example_weights = float(state[1])
    return acc


def _add_labels_predictions(state, i, c, label, prediction) -> None:
    y, p = _regression_inputs(c, label, prediction)
    state[i] += [y.astype(np.float64).sum(), p.astype(np.float64).sum(), len(y)]


def _labels_predictions_output(state, c):
    acc = calibration._WeightedLabelsPredictionsExamples()
    acc.total_weighted_labels = float(state[0])
    acc.total_weighted_predictions = float(state[1])
    acc.total_weighted_examples = float(state[2])
    return acc


def _add_keras(state, i, c, label, prediction) -> None:
    # SparseCategoricalAccuracy: argmax == label, summed (float32 sums of 0/1 are exact).
    if prediction.shape[1] < 2:
        raise Unsupported("sparse categorical accuracy on one prediction per example")
    matches = np.argmax(prediction, axis=1) == label.astype(np.int64)
    state[i][0] += matches.sum()
    state[i][1] += len(label)


def _keras_output(state, c):
    combiner = c.combiner
    combiner.setup()
    acc = combiner.create_accumulator()
    # The Keras Mean metric's weights: total and count, float32.
    acc.add_weights(0, 0, [np.float32(state[0]), np.float32(state[1])])
    return acc


_ADD = {
    _HISTOGRAM: _add_histogram,
    _BINARY_MATRICES: _add_binary_matrices,
    _MULTICLASS_MATRICES: _add_multiclass_matrices,
    _EXAMPLE_COUNT: _add_count,
    _MSE: _add_error,
    _MAE: _add_error,
    _LABELS_PREDICTIONS: _add_labels_predictions,
    _KERAS: _add_keras,
}
_OUTPUT = {
    _HISTOGRAM: _histogram_output,
    _BINARY_MATRICES: _binary_matrices_output,
    _MULTICLASS_MATRICES: _multiclass_output,
    _EXAMPLE_COUNT: _count_output,
    _MSE: _error_output,
    _MAE: _error_output,
    _LABELS_PREDICTIONS: _labels_predictions_output,
    _KERAS: _keras_output,
}


# ---- the evaluation ----------------------------------------------------------------------------
def _model_name(spec: config_pb2.ModelSpec, eval_config: config_pb2.EvalConfig) -> str:
    return spec.name if len(eval_config.model_specs) > 1 else ""


def evaluate(
    eval_config: config_pb2.EvalConfig,
    files: Sequence[str],
    model_paths: dict[str, str],
    output_path: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> validation_result_pb2.ValidationResult:
    """Evaluate the models (model spec name -> SavedModel path) on the records in `files` and
    write metrics, plots, attributions, validations and eval_config.json to `output_path` as
    TFMA's writers do. `eval_config` is the one TFX's executor hands TFMA (defaults applied).
    Raises Unsupported (nothing written) when TFMA must evaluate instead, ValueError on an empty
    split."""
    reason = unsupported_reason(eval_config)
    if reason:
        raise Unsupported(reason)
    computations = _computations(eval_config)
    models: list[tuple[_Model, list]] = []
    try:
        return _evaluate(
            eval_config, computations, files, model_paths, output_path, batch_size, models
        )
    finally:
        for model, _ in models:
            model.close()


def _evaluate(eval_config, computations, files, model_paths, output_path, batch_size, models):
    for spec in eval_config.model_specs:
        name = _model_name(spec, eval_config)
        model = _Model(name, model_paths[spec.name], spec.label_key)
        owned = [c for c in computations.non_derived_computations if c.keys[0].model_name == name]
        models.append((model, owned))
    columns = sorted({tuple(s.feature_keys) for s in eval_config.slicing_specs})
    for (column,) in (c for c in columns if c):
        if any(column in model.transform_keys for model, _ in models):
            raise Unsupported(f"slice feature {column!r} is also a transformed feature")
    decoder = example_coder.ExamplesToRecordBatchDecoder()
    slice_keys: dict[tuple, int] = {}
    accumulators: dict[tuple[int, int], _Accumulator] = {}
    rows = 0
    for records in read_batches(files, batch_size):
        rows += len(records)
        serialized = np.array(records, dtype=object)
        inputs = [model.predict(serialized) for model, _ in models]
        batch = decoder.DecodeBatch(records)
        groups: list[tuple[int, np.ndarray]] = []
        for column in columns:
            if not column:
                groups.append((slice_keys.setdefault((), len(slice_keys)), None))
                continue
            pairs, values = _column_pairs(batch, column[0])
            if not len(pairs):
                continue
            order = np.argsort(pairs[:, 1], kind="stable")
            bounds = np.flatnonzero(np.diff(pairs[order, 1])) + 1
            for chunk in np.split(order, bounds):
                key = ((column[0], values[pairs[chunk[0], 1]]),)
                groups.append((slice_keys.setdefault(key, len(slice_keys)), pairs[chunk, 0]))
        for m, ((_, owned), (label, prediction)) in enumerate(zip(models, inputs, strict=True)):
            for slice_id, examples in groups:
                acc = accumulators.get((m, slice_id))
                if acc is None:
                    acc = accumulators[m, slice_id] = _Accumulator(owned)
                if examples is None:
                    acc.add(owned, label, prediction)
                else:
                    acc.add(owned, label[examples], prediction[examples])
    if rows == 0:
        raise ValueError(
            f"the eval split is empty ({len(files)} files, no records): nothing to evaluate"
        )
    sliced = []
    for key, slice_id in slice_keys.items():
        metrics: dict = {}
        for m, (_, owned) in enumerate(models):
            metrics.update(accumulators[m, slice_id].outputs(owned))
        sliced.append((key, metrics))
    return _finish(eval_config, sliced, computations, model_paths, output_path)


_BCM_RESULT_CODE = None


def _histogram_matrices(c, metrics: dict) -> dict | None:
    """TFMA's binary confusion matrices from the calibration histogram (rebin to the thresholds,
    then cumulative sums), in numpy: the same float additions in the same order, so the same
    values, without two Python loops over 10,000 thresholds per slice and model (3-6 s of a
    run). None: `c` is another derived computation, TFMA's own code computes it."""
    global _BCM_RESULT_CODE
    if _BCM_RESULT_CODE is None:
        probe = binary_confusion_matrices.binary_confusion_matrices(num_thresholds=3)
        _BCM_RESULT_CODE = probe[-1].result.__code__
    if getattr(c.result, "__code__", None) is not _BCM_RESULT_CODE:
        return None
    closure = inspect.getclosurevars(c.result).nonlocals
    if not closure.get("use_histogram"):
        return None
    thresholds = list(closure["thresholds"])
    if len(thresholds) == 1 and thresholds[0] < 0:
        return None
    eps = binary_confusion_matrices._EPSILON
    rebin_thresholds = [t + eps if t != 0 else t for t in thresholds]
    if thresholds[0] >= 0:
        rebin_thresholds = [-eps, *rebin_thresholds]
    if thresholds[-1] < 1.0:
        rebin_thresholds = [*rebin_thresholds, 1.0 + eps]
    histogram = metrics[closure["input_metric_key"]]
    ids = np.array([b.bucket_id for b in histogram], dtype=np.int64)
    sums = np.array(
        [[b.weighted_labels, b.weighted_predictions, b.weighted_examples] for b in histogram],
        dtype=np.float64,
    ).reshape(-1, 3)
    # calibration_histogram.rebin with its defaults (10,000 buckets over [0, 1]).
    buckets = calibration_histogram.DEFAULT_NUM_BUCKETS
    with np.errstate(divide="ignore", invalid="ignore"):
        pred = (ids - 1) / buckets * (1.0 - 0.0) + 0.0
    pred = np.where(ids == 0, -np.inf, np.where(ids >= buckets + 1, np.inf, pred))
    offsets = np.searchsorted(np.array(rebin_thresholds[1:]), pred, side="right")
    n = len(rebin_thresholds)
    labels = np.bincount(offsets, weights=sums[:, 0], minlength=n)
    examples = np.bincount(offsets, weights=sums[:, 2], minlength=n)
    # binary_confusion_matrices._histogram_to_binary_confusion_matrices.
    positives, negatives = labels, examples - labels
    tp = np.cumsum(positives[::-1])[::-1]
    fp = np.cumsum(negatives[::-1])[::-1]
    tn = np.concatenate([[0.0], np.cumsum(negatives)[:-1]])
    fn = np.concatenate([[0.0], np.cumsum(positives)[:-1]])
    offset = 1 if (thresholds[0] >= 0 or len(thresholds) == 1) and n > 1 else 0
    window = slice(offset, offset + len(thresholds))
    tp, fp, tn, fn = (a[window].tolist() for a in (tp, fp, tn, fn))
    for i, t in enumerate(thresholds):
        if t >= 1.0 + eps:
            tp[i], fp[i], fn[i], tn[i] = 0.0, 0.0, tp[0], fp[0]
    matrices = binary_confusion_matrices.Matrices(thresholds, tp, tn, fp, fn)
    return {closure["matrices_key"]: matrices}


def _add_derived_and_diffs(metrics: dict, computations, baseline_name: str | None) -> dict:
    """TFMA's AddDerivedMetrics then AddDiffMetrics (metrics_plots_and_validations_evaluator)."""
    result = copy.copy(metrics)
    for c in computations.derived_computations:
        fast = _histogram_matrices(c, result)
        result.update(fast if fast is not None else c.result(result))
    if baseline_name:
        diffs = {}
        for k, v in result.items():
            if mpv._is_private_metrics(k) or k.is_diff:
                continue
            baseline_key = k.make_baseline_key(baseline_name)
            if k.model_name != baseline_name and baseline_key in result:
                if mpv._is_metric_diffable(v):
                    diffs[k.make_diff_key()] = v - result[baseline_key]
        result.update(diffs)
    return mpv._remove_private_metrics(None, result)[1]


def _finish(
    eval_config: config_pb2.EvalConfig,
    sliced: list[tuple[tuple, dict]],
    computations,
    model_paths: dict[str, str],
    output_path: str,
) -> validation_result_pb2.ValidationResult:
    baseline = tfma.utils.get_baseline_model_spec(eval_config)
    baseline_name = baseline.name if baseline else None
    combine = mpv_writer.CombineValidations(eval_config, rubber_stamp=False)
    validation = combine.create_accumulator()
    metrics_protos, plots_protos = [], []
    for slice_key, combined in sliced:
        everything = _add_derived_and_diffs(combined, computations, baseline_name)
        metrics = mpv._filter_by_key_type((slice_key, everything), metric_types.MetricKey)
        plots = mpv._filter_by_key_type((slice_key, everything), metric_types.PlotKey)
        validation = combine.add_input(
            validation, metrics_validator.validate_metrics(metrics, eval_config)
        )
        metrics_protos.append(mpv_writer.convert_slice_metrics_to_proto(metrics, None))
        plots_protos.append(mpv_writer.convert_slice_plots_to_proto(plots, None))
    validation = combine.extract_output(validation)
    tf.io.gfile.makedirs(output_path)
    shard = "-00000-of-00001.tfrecord"
    for name, protos in (
        (tfma.constants.METRICS_KEY, metrics_protos),
        (tfma.constants.PLOTS_KEY, plots_protos),
        (tfma.constants.ATTRIBUTIONS_KEY, []),
    ):
        _write_records(os.path.join(output_path, name + shard), protos)
    _write_records(
        os.path.join(output_path, tfma.constants.VALIDATIONS_KEY + ".tfrecord"), [validation]
    )
    model_locations = {s.name: model_paths[s.name] for s in eval_config.model_specs}
    run = eval_config_writer._serialize_eval_run(
        eval_config, "<user provided PCollection>", "<unknown>", model_locations
    )
    filename = f"{eval_config_writer.EVAL_CONFIG_FILE}.{eval_config_writer.EVAL_CONFIG_FILE_FORMAT}"
    with tf.io.gfile.GFile(os.path.join(output_path, filename), "w") as f:
        f.write(run + "\n")
    return validation


def _write_records(path: str, protos: list) -> None:
    with tf.io.TFRecordWriter(path) as writer:
        for proto in protos:
            writer.write(proto.SerializeToString())
