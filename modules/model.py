"""The Keras wide-and-deep classifier and the hyperparameter space the Tuner searches.

Uses tf_keras (Keras 2) explicitly: TFT and TFMA 1.16 only understand Keras 2 models, while
TensorFlow 2.16's default `tf.keras` is Keras 3.
"""

from __future__ import annotations

import keras_tuner as kt
import tensorflow as tf
import tf_keras as keras

from modules import features

LEARNING_RATES: list[float] = [1e-3, 3e-3, 1e-2]
HIDDEN_UNITS: list[int] = [32, 64, 128]
MAX_HIDDEN_LAYERS: int = 3
# Training steps per tf.function call: this small network's step is cheaper than Keras's
# per-step Python overhead, so running many steps per call is most of the training speed-up.
STEPS_PER_EXECUTION: int = 50


def hyperparameter_space() -> kt.HyperParameters:
    """The search space: learning rate, width of the first hidden layer, and depth."""
    hp = kt.HyperParameters()
    hp.Choice("learning_rate", LEARNING_RATES, default=3e-3)
    hp.Choice("first_hidden_units", HIDDEN_UNITS, default=64)
    hp.Int("num_hidden_layers", 1, MAX_HIDDEN_LAYERS, default=2)
    return hp


def _categorical_cardinalities() -> dict[str, int]:
    """Number of ids each categorical transformed feature can take."""
    sizes = {k: n for k, n in features.CATEGORICAL_NUMERICAL_FEATURES.items()}
    sizes.update({k: features.FEATURE_BUCKET_COUNT + 1 for k in features.BUCKET_FEATURE_KEYS})
    sizes.update({k: features.VOCAB_SIZE + features.OOV_SIZE for k in features.VOCAB_FEATURE_KEYS})
    return sizes


def build_keras_model(
    hparams: kt.HyperParameters, steps_per_execution: int = STEPS_PER_EXECUTION
) -> keras.Model:
    """Wide part: one-hot categoricals into a linear logit. Deep part: numerics plus
    embeddings through a tower whose layers halve in width."""
    numeric_inputs = [
        keras.Input(shape=(1,), name=features.transformed_name(k), dtype=tf.float32)
        for k in features.DENSE_FLOAT_FEATURE_KEYS
    ]
    wide, deep = [], list(numeric_inputs)
    categorical_inputs = []
    for key, cardinality in _categorical_cardinalities().items():
        ids = keras.Input(shape=(1,), name=features.transformed_name(key), dtype=tf.int64)
        categorical_inputs.append(ids)
        wide.append(keras.layers.CategoryEncoding(cardinality, output_mode="one_hot")(ids))
        dim = max(2, min(8, int(cardinality**0.25) * 2))
        deep.append(keras.layers.Flatten()(keras.layers.Embedding(cardinality, dim)(ids)))

    x = keras.layers.concatenate(deep)
    units = int(hparams.get("first_hidden_units"))
    for _ in range(int(hparams.get("num_hidden_layers"))):
        x = keras.layers.Dense(units, activation="relu")(x)
        units = max(8, units // 2)
    deep_logit = keras.layers.Dense(1)(x)
    wide_logit = keras.layers.Dense(1)(keras.layers.concatenate(wide))
    output = keras.layers.Activation("sigmoid", name="probabilities")(
        keras.layers.add([deep_logit, wide_logit])
    )

    model = keras.Model(inputs=numeric_inputs + categorical_inputs, outputs=output)
    model.compile(
        optimizer=keras.optimizers.Adam(float(hparams.get("learning_rate"))),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
        steps_per_execution=steps_per_execution,
    )
    return model
