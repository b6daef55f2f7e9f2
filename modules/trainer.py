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

import os

import keras_tuner as kt
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging
from tensorflow.core.protobuf import saved_model_pb2
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from modules import dataset_spec
from modules.dataset_spec import BINARY, MULTICLASS, REGRESSION, DatasetSpec, transformed_name
from modules.model import build_keras_model, hyperparameter_space, output_name

BATCH_SIZE = 128
EVAL_BATCH_SIZE = 256
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


def input_fn(
    file_pattern: list[str],
    data_accessor: tfx.components.DataAccessor,
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


def export_serving_model(
    model: keras.Model,
    tf_transform_output: tft.TFTransformOutput,
    export_dir: str,
    spec: DatasetSpec | None = None,
) -> None:
    """Save the model with all serving signatures, in the layout TF Serving loads."""
    spec = spec or dataset_spec.load()
    model.save(
        export_dir, save_format="tf", signatures=_signatures(model, tf_transform_output, spec)
    )
    mark_serving_methods(export_dir)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Train with the Tuner's best hyperparameters (or the space's defaults) and export, for
    the dataset spec in custom_config."""
    spec = dataset_spec.from_custom_config(fn_args.custom_config)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    cache = fits_in_cache(fn_args.train_files, spec=spec)
    train_ds = input_fn(
        fn_args.train_files, fn_args.data_accessor, tf_transform_output, BATCH_SIZE, cache, spec
    )
    eval_ds = input_fn(
        fn_args.eval_files, fn_args.data_accessor, tf_transform_output, EVAL_BATCH_SIZE, cache, spec
    )
    if fn_args.hyperparameters:
        hparams = kt.HyperParameters.from_config(fn_args.hyperparameters)
    else:
        hparams = hyperparameter_space()
    logging.info("Training with hyperparameters %s", hparams.values)

    model = build_keras_model(hparams, spec=spec)
    model.fit(
        train_ds,
        steps_per_epoch=fn_args.train_steps,
        validation_data=eval_ds,
        validation_steps=fn_args.eval_steps,
        callbacks=[keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch")],
        verbose=2,
    )
    export_serving_model(model, tf_transform_output, fn_args.serving_model_dir, spec)
