"""How Keras's training step is traced: once per model, without AutoGraph converting Keras itself.

Tracing, not the steps, was most of each Tuner trial and of the Trainer (docs/performance.md):
these tests pin the two causes down, and check that a model built this way still learns."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tensorflow.python.autograph.core import config as autograph_config
from tensorflow.python.autograph.impl import conversion

from modules import autograph_rules, dataset_spec
from modules.dataset_spec import transformed_name
from modules.model import _categorical_cardinalities, build_keras_model, hyperparameter_space


def _dataset(rows: int, batch: int, seed: int = 0) -> tf.data.Dataset:
    """Transformed-looking rows whose label follows one numeric feature (learnable)."""
    spec = dataset_spec.load()
    rng = np.random.default_rng(seed)
    columns = {
        transformed_name(k): rng.normal(size=(rows, 1)).astype("float32") for k in spec.numeric
    }
    for key, cardinality in _categorical_cardinalities(spec).items():
        columns[transformed_name(key)] = rng.integers(0, cardinality, (rows, 1)).astype("int64")
    signal = columns[transformed_name(spec.numeric[0])]
    label = (signal + 0.1 * rng.normal(size=(rows, 1)) > 0).astype("float32")
    return tf.data.Dataset.from_tensor_slices((columns, label)).batch(batch).cache().repeat()


def test_keras_and_keras_tuner_are_not_converted_but_user_code_is():
    assert conversion.is_allowlisted(keras.Model.train_step)
    assert conversion.is_allowlisted(keras.layers.Dense.call)
    import keras_tuner

    assert conversion.is_allowlisted(keras_tuner.HyperParameters.Choice)
    # The project's own functions are still AutoGraph's to convert.
    assert not conversion.is_allowlisted(build_keras_model)


def test_the_rules_are_added_once():
    before = len(autograph_config.CONVERSION_RULES)
    assert autograph_rules.skip_library_internals()
    assert autograph_rules.skip_library_internals()
    assert len(autograph_config.CONVERSION_RULES) == before
    prefixes = [
        rule._prefix
        for rule in autograph_config.CONVERSION_RULES
        if isinstance(rule, autograph_config.DoNotConvert)
    ]
    for package in autograph_rules.UNCONVERTED_PACKAGES:
        assert prefixes.count(package) == 1


def test_fit_traces_the_training_step_once_and_the_model_learns():
    model = build_keras_model(hyperparameter_space())
    # Two fits of two epochs each: one trace (a second one would mean the optimizer created its
    # slot variables while tracing the first call).
    for _ in range(2):
        history = model.fit(
            _dataset(2048, 128),
            steps_per_epoch=100,
            epochs=2,
            validation_data=_dataset(512, 256, seed=1),
            validation_steps=2,
            verbose=0,
        )
    assert model.train_function.experimental_get_tracing_count() == 1
    assert history.history["val_auc"][-1] > 0.9
