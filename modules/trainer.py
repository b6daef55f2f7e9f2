"""TFX Trainer's run_fn: train the model and export a SavedModel that TF Serving can serve.

The export carries the Transform graph, so every signature takes raw features:
- serving_default: serialized tf.Example -> probabilities (regression: predictions), what TF
  Serving clients send;
- serving_raw: one named tensor per raw feature -> the same (plain-JSON REST clients);
- transform_features: serialized tf.Example -> transformed features (the Evaluator's preprocessing);
- classification (binary and multiclass: the spec's class names and their scores) and regression
  (binary: the positive class's probability; regression: the prediction): TF Serving's Classify /
  Regress APIs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable

import keras_tuner as kt
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging
from scipy import sparse
from tensorflow.core.protobuf import saved_model_pb2
from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs
from tfx_bsl.public import tfxio

from modules import baselines, dataset_spec, importance
from modules.dataset_spec import BINARY, MULTICLASS, REGRESSION, DatasetSpec, transformed_name
from modules.families import GRADIENT_BOOSTED_TREES, configured_families
from modules.model import (
    build_constant_model,
    build_keras_model,
    build_linear_model,
    for_families,
    hyperparameter_space,
    linear_columns,
    linear_design,
    model_family,
    output_name,
    quiet_native_logs,
    set_linear_weights,
    with_model_inputs,
)

BATCH_SIZE = 128
EVAL_BATCH_SIZE = 256
# Training length follows the data (training_plan): small splits get small batches, so an epoch
# still has MIN_BATCHES_PER_EPOCH steps; at most MAX_EPOCHS passes, and training stops when the
# eval loss has not improved for PATIENCE_EPOCHS (the best weights are kept).
MIN_BATCH_SIZE = 16
MIN_BATCHES_PER_EPOCH = 16
MAX_EPOCHS = 30
PATIENCE_EPOCHS = 3
# The linear baseline's learning rate (classification; regression is solved in closed form).
LINEAR_LEARNING_RATE = 0.02
READ_BATCH_SIZE = 4096
# Batches kept in memory after the first pass: parsing tf.Examples again for every epoch costs
# more than the model's own step on this small network. A split whose decoded tensors would take
# more than this many bytes is streamed from disk each epoch instead, so memory does not grow
# with the input (a byte budget, not a row count: a wider feature set caches fewer rows).
CACHE_MAX_BYTES = 256 * 2**20
SHUFFLE_BUFFER_ROWS = 10_000
PROBABILITIES = "probabilities"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
# The default (taxi) dataset's class names; DatasetSpec.classes in general.
CLASS_LABELS = list(dataset_spec.load().classes)


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """How long a model trains on a split of `rows` rows: the one place this is decided."""

    rows: int
    batch_size: int
    steps_per_epoch: int
    epochs: int
    patience: int
    # False: the split has at least `rows` rows; it was not counted further, because the plan is
    # the same for every larger count (rows_that_fix_the_plan).
    rows_exact: bool = True

    @property
    def max_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def early_stopping(self) -> keras.callbacks.Callback:
        """Stop when the eval loss has not improved for `patience` epochs; keep the best."""
        return keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=self.patience, restore_best_weights=True
        )

    def early_stopping_callbacks(self) -> list[keras.callbacks.Callback]:
        """[early_stopping()] when there is more than one epoch to stop early; [] otherwise."""
        return [self.early_stopping()] if self.epochs > 1 else []

    def validation(self, eval_split: Split) -> dict:
        """model.fit's validation arguments: the eval rows after every epoch when early stopping
        reads them; none for a single epoch, where it cannot act and the pass over up to
        MAX_EVAL_ROWS rows only repeated the scoring run_fn does next (about 2 s at 1M rows)."""
        if self.epochs <= 1:
            return {}
        return {
            "validation_data": (eval_split.features, eval_split.labels),
            "validation_batch_size": EVAL_BATCH_SIZE,
        }


def training_plan(rows: int, max_steps: int, rows_exact: bool = True) -> TrainingPlan:
    """Batch size, epochs and early stopping from the training split's row count, bounded by
    `max_steps` (the pipeline's train_steps): a few hundred rows train a few hundred small-batch
    steps (300 rows: batch 18, at most 30 epochs of 17 steps), the taxi sample's 12k rows as
    before (batch 128, 94 steps an epoch, 2,000 steps at most). `rows_exact=False`: the split
    has at least `rows` rows (read_split stopped counting at rows_that_fix_the_plan)."""
    rows = max(1, int(rows))
    batch = min(BATCH_SIZE, max(MIN_BATCH_SIZE, rows // MIN_BATCHES_PER_EPOCH))
    steps_per_epoch = max(1, math.ceil(rows / batch))
    max_steps = max(1, int(max_steps))
    if max_steps < steps_per_epoch:
        return TrainingPlan(rows, batch, max_steps, 1, PATIENCE_EPOCHS, rows_exact)
    epochs = max(1, min(MAX_EPOCHS, max_steps // steps_per_epoch))
    return TrainingPlan(rows, batch, steps_per_epoch, epochs, PATIENCE_EPOCHS, rows_exact)


def rows_that_fix_the_plan(max_steps: int) -> int:
    """The row count from which training_plan is the same for every larger count (full batches,
    and more of them than `max_steps`: one epoch of `max_steps` steps). Counting a split's rows
    past it changes nothing but the logged count, and at 1M rows counting the train split was
    about a fifth of the Trainer's time (docs/performance.md)."""
    return max(max(1, int(max_steps)) * BATCH_SIZE + 1, BATCH_SIZE * MIN_BATCHES_PER_EPOCH)


@dataclasses.dataclass
class Split:
    """A transformed split in memory: model inputs (name -> [n, 1]), labels [n], and how many
    rows the split has (`features` holds at most the first `max_rows` of them)."""

    features: dict[str, np.ndarray]
    labels: np.ndarray
    rows: int
    # False: the split has more than `rows` rows (read_split's `count_to` stopped the count).
    rows_exact: bool = True


def read_split(
    file_pattern: list[str],
    data_accessor: DataAccessor,
    tf_transform_output: tft.TFTransformOutput,
    spec: DatasetSpec,
    max_rows: int = baselines.MAX_EVAL_ROWS,
    count_to: int | None = None,
) -> Split:
    """One pass over a transformed split, in file order: its row count, and its first
    `max_rows` rows as numpy arrays (what the baselines fit and are scored on). With `count_to`,
    the pass stops once it has both those rows and `count_to` rows counted: `rows` is then a
    lower bound (`rows_exact` False) whenever more remain."""
    options = tfxio.TensorFlowDatasetOptions(
        batch_size=READ_BATCH_SIZE,
        label_key=transformed_name(spec.label),
        shuffle=False,
        num_epochs=1,
    )
    dataset = data_accessor.tf_dataset_factory(
        file_pattern, options, tf_transform_output.transformed_metadata.schema
    )
    columns: dict[str, list] = {}
    labels, rows, exact = [], 0, True
    enough = None if count_to is None else max(int(max_rows), int(count_to))
    for features, label in dataset.as_numpy_iterator():
        if enough is not None and rows >= enough:
            exact = False
            break
        n = len(label)
        take = max(0, min(n, max_rows - rows))
        rows += n
        if not take:
            continue
        for key, value in features.items():
            columns.setdefault(key, []).append(np.asarray(value)[:take].reshape(take, 1))
        labels.append(np.asarray(label).reshape(-1)[:take])
    inputs = {transformed_name(k) for k in spec.raw_feature_keys}
    return Split(
        {k: np.concatenate(v) for k, v in columns.items() if k in inputs},
        np.concatenate(labels) if labels else np.zeros([0]),
        rows,
        exact,
    )


def train_split_and_plan(
    fn_args: FnArgs, tf_transform_output: tft.TFTransformOutput, spec: DatasetSpec
) -> tuple[Split, TrainingPlan]:
    """The train split's first rows (read_split) and the training plan for it, the split
    counted only as far as the plan depends on its size (rows_that_fix_the_plan): what the
    Trainer and the Tuner both start from."""
    train = read_split(
        fn_args.train_files,
        fn_args.data_accessor,
        tf_transform_output,
        spec,
        count_to=rows_that_fix_the_plan(fn_args.train_steps),
    )
    plan = training_plan(train.rows, fn_args.train_steps, train.rows_exact)
    logging.info(
        "Training plan for %s%d rows: %s", "" if train.rows_exact else "at least ", train.rows, plan
    )
    return train, plan


def label_scale(spec: DatasetSpec, labels: np.ndarray) -> tuple[float, float] | None:
    """Mean and standard deviation of a regression label (None for classification)."""
    if spec.task != REGRESSION or not len(labels):
        return None
    return float(np.mean(labels)), float(np.std(labels)) or 1.0


def fit_linear_baseline(
    spec: DatasetSpec, train: Split, eval_split: Split, plan: TrainingPlan
) -> keras.Model:
    """The linear baseline, fitted to convergence on the transformed training rows' sparse
    design (modules.model.linear_design): logistic/softmax regression by L-BFGS
    (baselines.fit_linear_classifier), or least squares in closed form up to
    baselines.MAX_CLOSED_FORM_COLUMNS columns (above that, Adam from the label's mean with early
    stopping on the eval loss)."""
    model = build_linear_model(spec, LINEAR_LEARNING_RATE)
    columns = linear_columns(spec)
    if spec.task != REGRESSION:
        kernel, bias = baselines.fit_linear_classifier(
            linear_design(spec, train.features),
            train.labels,
            spec.num_classes,
            start_bias=baselines.constant_logits(spec, train.labels),
        )
        set_linear_weights(model, spec, kernel, bias)
        return model
    if columns <= baselines.MAX_CLOSED_FORM_COLUMNS:
        x = linear_design(spec, train.features)
        x1 = sparse.hstack([x, np.ones([x.shape[0], 1])], format="csr")
        gram = (x1.T @ x1).toarray() + baselines.RIDGE * max(1, x1.shape[0]) * np.eye(columns + 1)
        weights = np.linalg.solve(gram, x1.T @ train.labels.astype(np.float64))
        set_linear_weights(model, spec, weights[:-1].reshape(columns, 1), weights[-1:])
        return model
    # Too many columns for the closed form: learn the label's z-score by gradient steps.
    model = build_linear_model(
        spec, LINEAR_LEARNING_RATE, label_scale=label_scale(spec, train.labels)
    )
    model.fit(
        train.features,
        train.labels,
        batch_size=plan.batch_size,
        epochs=plan.epochs,
        validation_data=(eval_split.features, eval_split.labels),
        callbacks=[plan.early_stopping()],
        shuffle=True,
        verbose=0,
    )
    return model


def one_pass(
    file_pattern: list[str],
    data_accessor: DataAccessor,
    tf_transform_output: tft.TFTransformOutput,
    spec: DatasetSpec,
) -> tf.data.Dataset:
    """(transformed features, label) batches, every row once, in file order: what decision
    forests train on (TF-DF reads its whole training set in one pass, then grows the trees)."""
    options = tfxio.TensorFlowDatasetOptions(
        batch_size=READ_BATCH_SIZE,
        label_key=transformed_name(spec.label),
        shuffle=False,
        num_epochs=1,
    )
    return data_accessor.tf_dataset_factory(
        file_pattern, options, tf_transform_output.transformed_metadata.schema
    )


def fit_gradient_boosted_trees(
    model: keras.Model, train: tf.data.Dataset, spec: DatasetSpec
) -> keras.Model:
    """Train a TF-DF model on one pass of `train`, its native log captured (debug level).
    Every input as an [n, 1] column; classification labels as int64 class ids (TF-DF's
    classification label type)."""
    label_type = tf.int64 if spec.task in (BINARY, MULTICLASS) else tf.float32

    def columns(features: dict, label: tf.Tensor) -> tuple[dict, tf.Tensor]:
        # [n, 1] of known rank: TF-DF keeps the training inputs' shapes, and a transformed
        # split read through TFXIO can have an unknown rank, which its call then cannot take.
        return (
            {k: tf.reshape(v, [-1, 1]) for k, v in features.items()},
            tf.cast(tf.reshape(label, [-1]), label_type),
        )

    train = train.map(columns)
    with quiet_native_logs() as log:
        model.fit(train, verbose=0)
    logging.debug("TF-DF training log:\n%s", log.getvalue())
    return model


def input_fn(
    file_pattern: list[str],
    data_accessor: DataAccessor,
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    cache: bool = True,
    spec: DatasetSpec | None = None,
) -> tf.data.Dataset:
    """(transformed features, label) batches, repeated forever; steps bound the training.

    With `cache`, one shuffled pass is parsed and kept in memory, later epochs replay its
    batches in a new order each time."""
    options = tfxio.TensorFlowDatasetOptions(
        batch_size=batch_size,
        label_key=transformed_name((spec or dataset_spec.load()).label),
        shuffle_buffer_size=SHUFFLE_BUFFER_ROWS,
        shuffle_seed=42,
        num_epochs=1 if cache else None,
    )
    dataset = data_accessor.tf_dataset_factory(
        file_pattern, options, tf_transform_output.transformed_metadata.schema
    )
    if cache:
        dataset = dataset.cache().shuffle(
            max(1, SHUFFLE_BUFFER_ROWS // batch_size), seed=42, reshuffle_each_iteration=True
        )
    return dataset.repeat().prefetch(tf.data.AUTOTUNE)


def decoded_bytes_per_row(spec: DatasetSpec | None = None) -> int:
    """Decoded bytes of one transformed row: one scalar per model input and the label, at most 8
    bytes each (int64 ids, float32 z-scores)."""
    return 8 * (len((spec or dataset_spec.load()).raw_feature_keys) + 1)


def fits_in_cache(
    file_pattern: list[str],
    bytes_per_row: float = 40.0,
    max_bytes: int = CACHE_MAX_BYTES,
    spec: DatasetSpec | None = None,
) -> bool:
    """Whether a split's decoded rows fit the cache's byte budget: rows estimated from its
    compressed size (about 44 bytes per transformed taxi row, 40 errs towards more rows)."""
    size = sum(
        tf.io.gfile.stat(path).length
        for pattern in file_pattern
        for path in tf.io.gfile.glob(pattern)
    )
    return size / bytes_per_row * decoded_bytes_per_row(spec) <= max_bytes


def _serving_raw_feature_spec(
    tf_transform_output: tft.TFTransformOutput, spec: DatasetSpec
) -> dict:
    """The raw features a request carries: not the label (nor what derives it), not the unused."""
    raw = tf_transform_output.raw_feature_spec()
    for key in (*spec.label_columns, spec.label, *spec.unused):
        raw.pop(key, None)
    return raw


def _signatures(
    model: keras.Model, tf_transform_output: tft.TFTransformOutput, spec: DatasetSpec
) -> dict:
    # Attach the layer to the model so that its assets (vocabularies) are tracked and saved.
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = _serving_raw_feature_spec(tf_transform_output, spec)
    full_raw_spec = tf_transform_output.raw_feature_spec()
    output = output_name(spec)

    def predict_from_examples(serialized: tf.Tensor) -> tf.Tensor:
        transformed = model.tft_layer(tf.io.parse_example(serialized, raw_spec))
        return model(transformed)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serving_default(examples):
        return {output: predict_from_examples(examples)}

    raw_keys = spec.raw_feature_keys
    raw_specs = []
    for key in raw_keys:
        dtype = {"bytes": tf.string, "int64": tf.int64, "float": tf.float32}[spec.raw_dtype(key)]
        raw_specs.append(tf.TensorSpec([None], dtype, name=key))

    @tf.function(input_signature=raw_specs)
    def serving_raw(*values):
        raw = {}
        for key, value in zip(raw_keys, values, strict=True):
            column = tf.expand_dims(value, 1)
            if isinstance(raw_spec[key], tf.io.VarLenFeature):
                # Optional in the schema: zero / empty values mean "missing", as in the CSV.
                raw[key] = tf.sparse.from_dense(column)
            else:
                raw[key] = column
        return {output: model(model.tft_layer(raw))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples):
        return model.tft_layer(tf.io.parse_example(examples, full_raw_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classification(inputs):
        p = predict_from_examples(inputs)
        scores = tf.concat([1.0 - p, p], axis=1) if spec.task == BINARY else p
        classes = tf.tile(tf.constant([list(spec.classes)]), [tf.shape(p)[0], 1])
        return {"classes": classes, "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regression(inputs):
        return {"outputs": predict_from_examples(inputs)}

    signatures = {
        "serving_default": serving_default.get_concrete_function(),
        "serving_raw": serving_raw.get_concrete_function(),
        "transform_features": transform_features.get_concrete_function(),
    }
    if spec.task in (BINARY, MULTICLASS):
        signatures["classification"] = classification.get_concrete_function()
    if spec.task in (BINARY, REGRESSION):
        # TF Serving's Regress API takes one value per example: not for several classes.
        signatures["regression"] = regression.get_concrete_function()
    return signatures


def mark_serving_methods(export_dir: str) -> None:
    """Give the classification/regression signatures TF Serving's method names.

    TF2's SavedModel export writes every signature as a Predict signature, but TF Serving's
    Classify and Regress APIs only accept signatures with their own method_name.
    """
    path = os.path.join(export_dir, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        for name, method in (("classification", CLASSIFY_METHOD), ("regression", REGRESS_METHOD)):
            if name in meta_graph.signature_def:
                meta_graph.signature_def[name].method_name = method
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(saved_model.SerializeToString())


# Layers from this package are rebuilt from their config by keras.models.load_model.
KERAS_OWN_MODULE = keras.__name__ + "."


def export_serving_model(
    model: keras.Model,
    tf_transform_output: tft.TFTransformOutput,
    export_dir: str,
    spec: DatasetSpec | None = None,
) -> None:
    """Save the model with all serving signatures, in the layout TF Serving loads.

    Keras traces every layer's call functions into the SavedModel (`save_traces`) so that
    `load_model` can revive layers it cannot rebuild from their config. A model made only of
    Keras' own layers is rebuilt from its config (TFMA's Keras loader, the app), and the
    serving signatures are traced anyway: skipping the layer traces took the default model's
    export from 11-16 s to 5 s (docs/performance.md). Models with other layers (TF-DF's trees)
    keep them."""
    spec = spec or dataset_spec.load()
    save_traces = needs_layer_traces(model)
    model.save(
        export_dir,
        save_format="tf",
        signatures=_signatures(model, tf_transform_output, spec),
        save_traces=save_traces,
    )
    mark_serving_methods(export_dir)


def needs_layer_traces(model: keras.Model) -> bool:
    """True unless every layer of `model` is one of Keras' own (rebuilt from its config on
    load). The Transform layer the signatures attach (`tft_layer`) is saved as a tracked
    object either way: the signatures call it, not the revived model."""
    transform_layer = getattr(model, "tft_layer", None)
    layers = model._flatten_layers(include_self=False)  # noqa: SLF001 - Keras' own traversal
    return not all(
        type(layer).__module__.startswith(KERAS_OWN_MODULE)
        for layer in layers
        if layer is not transform_layer
    )


class PhaseTimer:
    """Seconds per phase of run_fn, logged at the end: where a Trainer's time goes as the rows
    grow (docs/performance.md), without a profiler."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = clock
        self._last = clock()

    def done(self, phase: str) -> None:
        now = self._clock()
        self.seconds[phase] = now - self._last
        self._last = now

    def summary(self) -> str:
        return ", ".join(f"{phase} {s:.1f} s" for phase, s in self.seconds.items())


def run_fn(fn_args: FnArgs) -> None:
    """Train the candidate with the Tuner's best hyperparameters (or the space's defaults) for
    as long as the data size asks (training_plan), fit the constant and linear baselines on the
    same split, score all three on the eval split, and export the model the comparison picks
    (modules/baselines.py) with its permutation importance on the eval rows
    (modules/importance.py), for the dataset spec in custom_config."""
    custom_config = fn_args.custom_config or {}
    spec = dataset_spec.from_custom_config(custom_config)
    push_linear = bool(custom_config.get(baselines.PUSH_LINEAR_KEY, True))
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    phases = PhaseTimer()
    train, plan = train_split_and_plan(fn_args, tf_transform_output, spec)
    eval_split = read_split(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, spec)
    phases.done("read splits")
    families = configured_families(custom_config)
    if fn_args.hyperparameters:
        hparams = kt.HyperParameters.from_config(fn_args.hyperparameters)
    else:
        hparams = hyperparameter_space(families)
    hparams = for_families(hparams, families)
    logging.info("Training %s with hyperparameters %s", model_family(hparams), hparams.values)
    phases.done("choose hyperparameters")

    model = build_keras_model(hparams, spec=spec, label_scale=label_scale(spec, train.labels))
    if model_family(hparams) == GRADIENT_BOOSTED_TREES:
        forest = fit_gradient_boosted_trees(
            model,
            one_pass(fn_args.train_files, fn_args.data_accessor, tf_transform_output, spec),
            spec,
        )
        model = with_model_inputs(forest, spec)
    else:
        cache = fits_in_cache(fn_args.train_files, spec=spec)
        train_ds = input_fn(
            fn_args.train_files,
            fn_args.data_accessor,
            tf_transform_output,
            plan.batch_size,
            cache,
            spec,
        )
        model.fit(
            train_ds,
            steps_per_epoch=plan.steps_per_epoch,
            epochs=plan.epochs,
            callbacks=[
                keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch"),
                *plan.early_stopping_callbacks(),
            ],
            verbose=2,
            **plan.validation(eval_split),
        )
    phases.done("train candidate")
    models = {
        baselines.CANDIDATE: model,
        baselines.LINEAR: fit_linear_baseline(spec, train, eval_split, plan),
    }
    phases.done("fit linear")
    # What the model card shows as each model's time to train.
    seconds = {
        baselines.CANDIDATE: phases.seconds["train candidate"],
        baselines.LINEAR: phases.seconds["fit linear"],
    }
    models[baselines.CONSTANT] = build_constant_model(
        spec, baselines.constant_logits(spec, train.labels)
    )
    predictions = {
        name: m.predict(eval_split.features, batch_size=READ_BATCH_SIZE, verbose=0)
        for name, m in models.items()
    }
    phases.done("score eval rows")
    comparison = baselines.compare(spec, eval_split.labels, predictions, push_linear, seconds)
    phases.done("compare")
    comparison["candidate_family"] = model_family(hparams)
    comparison["training_plan"] = dataclasses.asdict(plan)
    logging.info("Model comparison: %s", comparison["decision"])
    export_serving_model(
        models[comparison["exported"]], tf_transform_output, fn_args.serving_model_dir, spec
    )
    phases.done("export")
    baselines.write_comparison(os.path.dirname(fn_args.serving_model_dir), comparison)
    importance.write_importance(
        os.path.dirname(fn_args.serving_model_dir),
        importance.of_model(
            spec, models[comparison["exported"]], eval_split.features, eval_split.labels
        ),
    )
    phases.done("importance")
    logging.info("Trainer seconds by phase: %s", phases.summary())
