"""TFX Transform's preprocessing_fn: the one place raw taxi rows become model features.

Because Transform exports this as a TF graph that the Trainer embeds in the SavedModel, training
and serving apply exactly the same fill-in values, vocabularies and bucket boundaries.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from modules import features


def _fill_in_missing(x: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    """Densify an optional feature to shape [batch], using 0 / '' where a row has no value.

    CSV ExampleGen emits empty cells as missing values, so optional columns arrive as
    SparseTensors (or ragged dense with rank 2); the model needs one value per row.
    """
    if isinstance(x, tf.sparse.SparseTensor):
        default = "" if x.dtype == tf.string else 0
        x = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default)
    return tf.squeeze(x, axis=1)


def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Map raw features to transformed features and derive the big-tipper label."""
    outputs: dict[str, tf.Tensor] = {}
    for key in features.DENSE_FLOAT_FEATURE_KEYS:
        outputs[features.transformed_name(key)] = tft.scale_to_z_score(
            tf.cast(_fill_in_missing(inputs[key]), tf.float32)
        )
    for key in features.VOCAB_FEATURE_KEYS:
        outputs[features.transformed_name(key)] = tft.compute_and_apply_vocabulary(
            _fill_in_missing(inputs[key]),
            top_k=features.VOCAB_SIZE,
            num_oov_buckets=features.OOV_SIZE,
            vocab_filename=key,
        )
    for key in features.BUCKET_FEATURE_KEYS:
        outputs[features.transformed_name(key)] = tft.bucketize(
            tf.cast(_fill_in_missing(inputs[key]), tf.float32),
            features.FEATURE_BUCKET_COUNT,
        )
    for key, num_buckets in features.CATEGORICAL_NUMERICAL_FEATURES.items():
        # Clip so an unseen id at serving time lands in the last bucket instead of failing.
        ids = tf.cast(_fill_in_missing(inputs[key]), tf.int64)
        outputs[features.transformed_name(key)] = tf.clip_by_value(ids, 0, num_buckets - 1)

    # Serving requests carry no tips: the Transform layer then drops this output on its own.
    fare = tf.cast(_fill_in_missing(inputs[features.FARE_KEY]), tf.float32)
    tips = tf.cast(_fill_in_missing(inputs[features.TIPS_KEY]), tf.float32)
    outputs[features.transformed_name(features.LABEL_KEY)] = tf.cast(
        tf.greater(tips, fare * features.LABEL_TIP_FRACTION), tf.int64
    )
    return outputs
