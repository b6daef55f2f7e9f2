"""TFX Transform's preprocessing_fn: the one place raw rows become model features.

Because Transform exports this as a TF graph that the Trainer embeds in the SavedModel, training
and serving apply exactly the same fill-in values, vocabularies and bucket boundaries. What is
done to each column comes from the dataset spec (modules/dataset_spec.py) that create_pipeline
puts into Transform's custom_config.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from modules import dataset_spec
from modules.dataset_spec import BINARY, MULTICLASS, DatasetSpec, transformed_name


def _fill_in_missing(x: tf.Tensor | tf.SparseTensor, default: Any = None) -> tf.Tensor:
    """Densify an optional feature to shape [batch], using `default` (0 / '') where a row has
    no value.

    CSV ExampleGen emits empty cells as missing values, so optional columns arrive as
    SparseTensors (or ragged dense with rank 2); the model needs one value per row.
    """
    if isinstance(x, tf.sparse.SparseTensor):
        if default is None:
            default = "" if x.dtype == tf.string else 0
        x = tf.sparse.to_dense(
            tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]),
            tf.cast(default, x.dtype),
        )
    return tf.squeeze(x, axis=1)


def _numeric(x: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    """A numeric column as float32 z-scores; a missing value is the column's mean (z = 0).

    For an optional column these are the z-scores of the mean-filled column, computed from
    analyzers over the raw values only: filling with the mean keeps the mean, and scales the
    variance by the fraction of rows that have a value. Filling first and then analysing the
    filled column (tft.scale_to_z_score of it) gives the same numbers but makes the analysis
    depend on an earlier analyzer's result: a second Beam analysis pass over the data."""
    if isinstance(x, tf.sparse.SparseTensor):
        rows = [x.dense_shape[0], 1]
        values = tf.cast(x.values, tf.float32)
        present = tf.squeeze(
            tf.sparse.to_dense(tf.SparseTensor(x.indices, tf.ones_like(values), rows)), axis=1
        )
        mean = tft.mean(values)
        filled_variance = tft.var(values) * tft.mean(present)
        dense = tf.squeeze(
            tf.sparse.to_dense(tf.SparseTensor(x.indices, values, rows), default_value=mean),
            axis=1,
        )
        # As tft.scale_to_z_score: a constant column is only centred.
        deviation = dense - mean
        std = tf.sqrt(filled_variance)
        return tf.where(tf.not_equal(std, 0.0), deviation / std, deviation)
    return tft.scale_to_z_score(tf.cast(_fill_in_missing(x), tf.float32))


def _label(inputs: dict[str, tf.Tensor], spec: DatasetSpec) -> tf.Tensor:
    """The training label: 0/1 (binary), the class id (multiclass) or the value (regression)."""
    if spec.derive is not None:
        numerator = tf.cast(_fill_in_missing(inputs[spec.derive.numerator]), tf.float32)
        denominator = tf.cast(_fill_in_missing(inputs[spec.derive.denominator]), tf.float32)
        return tf.cast(tf.greater(numerator, denominator * spec.derive.greater_than), tf.int64)
    raw = _fill_in_missing(inputs[spec.label])
    if spec.task in (BINARY, MULTICLASS):
        names = raw if raw.dtype == tf.string else tf.strings.as_string(raw)
        # The id of the class whose name matches (an unknown name counts as the first class).
        matches = tf.equal(tf.expand_dims(names, 1), tf.constant([list(spec.classes)]))
        return tf.argmax(tf.cast(matches, tf.int64), axis=1)
    return tf.cast(raw, tf.float32)


def preprocessing_fn(
    inputs: dict[str, tf.Tensor], custom_config: dict[str, Any] | None = None
) -> dict[str, tf.Tensor]:
    """Map raw features to transformed features and derive the label, per the dataset spec."""
    spec = dataset_spec.from_custom_config(custom_config)
    outputs: dict[str, tf.Tensor] = {}
    for key in spec.numeric:
        outputs[transformed_name(key)] = _numeric(inputs[key])
    for key in spec.vocabulary:
        outputs[transformed_name(key)] = tft.compute_and_apply_vocabulary(
            _fill_in_missing(inputs[key]),
            top_k=spec.vocab_size,
            num_oov_buckets=spec.oov_size,
            vocab_filename=key,
        )
    for key in spec.bucketized:
        outputs[transformed_name(key)] = tft.bucketize(
            tf.cast(_fill_in_missing(inputs[key]), tf.float32), spec.bucket_count
        )
    for key, num_buckets in spec.categorical.items():
        # Clip so an unseen id at serving time lands in the last bucket instead of failing.
        ids = tf.cast(_fill_in_missing(inputs[key]), tf.int64)
        outputs[transformed_name(key)] = tf.clip_by_value(ids, 0, num_buckets - 1)

    # Serving requests carry no label: the Transform layer then drops this output on its own.
    outputs[transformed_name(spec.label)] = _label(inputs, spec)
    return outputs
