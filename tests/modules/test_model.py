"""The Keras model, run_fn and tuner_fn, on the small pipeline's real Transform outputs."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
import tf_keras as keras
from tfx import v1 as tfx
from tfx.components.trainer.fn_args_utils import DataAccessor
from tfx.components.util import tfxio_utils
from tfx.types import artifact_utils, standard_artifacts

from modules import dataset_spec, features
from modules.model import (
    build_constant_model,
    build_keras_model,
    build_linear_model,
    hyperparameter_space,
)
from modules.trainer import READ_BATCH_SIZE, needs_layer_traces, read_split, run_fn
from modules.tuner import OBJECTIVE, tuner_fn
from pipeline.config import PipelineConfig
from pipeline.pipeline import eval_config
from pipeline.validation.quarantine import CLEANED_EXAMPLES


def _dummy_batch(n: int = 4) -> dict[str, tf.Tensor]:
    batch = {}
    for key in features.DENSE_FLOAT_FEATURE_KEYS:
        batch[features.transformed_name(key)] = tf.random.normal([n, 1])
    for key in (
        features.CATEGORICAL_NUMERICAL_FEATURE_KEYS
        + features.BUCKET_FEATURE_KEYS
        + features.VOCAB_FEATURE_KEYS
    ):
        batch[features.transformed_name(key)] = tf.zeros([n, 1], tf.int64)
    return batch


@pytest.mark.parametrize("layers,units", [(1, 32), (3, 128)])
def test_model_depth_and_width_follow_hyperparameters(layers, units):
    hp = hyperparameter_space()
    hp.values.update({"num_hidden_layers": layers, "first_hidden_units": units})
    model = build_keras_model(hp)
    hidden = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Dense) and layer.activation.__name__ == "relu"
    ]
    assert len(hidden) == layers
    assert hidden[0].units == units
    out = model(_dummy_batch()).numpy()
    assert out.shape == (4, 1) and np.all((out > 0) & (out < 1))


def test_committed_best_hyperparameters_fit_the_search_space():
    path = Path(PipelineConfig().best_hyperparameters_dir, "best_hyperparameters.txt")
    hp = kt.HyperParameters.from_config(json.loads(path.read_text()))
    space = hyperparameter_space()
    assert set(hp.values) == set(space.values)
    build_keras_model(hp)  # builds without error


def _transform_outputs(pipeline_root: str) -> tuple[str, standard_artifacts.Examples]:
    graph = sorted(glob.glob(os.path.join(pipeline_root, "Transform", "transform_graph", "*")))
    examples_uri = sorted(
        glob.glob(os.path.join(pipeline_root, "Transform", "transformed_examples", "*"))
    )
    assert graph and examples_uri
    examples = standard_artifacts.Examples()
    examples.uri = examples_uri[-1]
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    return graph[-1], examples


def _fn_args(small_pipeline, tmp_path: Path, **extra) -> tfx.components.FnArgs:
    graph, examples = _transform_outputs(small_pipeline.config.pipeline_root)
    accessor = DataAccessor(
        tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
        record_batch_factory=tfxio_utils.get_record_batch_factory_from_artifact([examples], []),
        data_view_decode_fn=None,
    )
    return tfx.components.FnArgs(
        train_files=[os.path.join(examples.uri, "Split-train", "*")],
        eval_files=[os.path.join(examples.uri, "Split-eval", "*")],
        transform_output=graph,
        transform_graph_path=graph,
        data_accessor=accessor,
        train_steps=5,
        eval_steps=2,
        working_dir=str(tmp_path / "work"),
        serving_model_dir=str(tmp_path / "serving"),
        model_run_dir=str(tmp_path / "logs"),
        **extra,
    )


@pytest.mark.slow
def test_tuner_fn_searches_the_space_for_the_configured_trials(small_pipeline, tmp_path):
    result = tuner_fn(_fn_args(small_pipeline, tmp_path, custom_config={"max_trials": 3}))
    assert isinstance(result.tuner, kt.RandomSearch)
    assert result.tuner.oracle.max_trials == 3
    assert result.tuner.oracle.objective.name == OBJECTIVE.name
    assert set(result.tuner.oracle.hyperparameters.values) == set(hyperparameter_space().values)
    assert result.fit_kwargs["steps_per_epoch"] == 5


@pytest.mark.slow
def test_run_fn_trains_and_exports_all_signatures(small_pipeline, tmp_path):
    hp = hyperparameter_space()
    hp.values["learning_rate"] = 0.01
    run_fn(_fn_args(small_pipeline, tmp_path, hyperparameters=hp.get_config()))
    model = tf.saved_model.load(str(tmp_path / "serving"))
    assert {"serving_default", "serving_raw", "transform_features"} <= set(model.signatures)
    outputs = model.signatures["serving_default"].structured_outputs
    assert set(outputs) == {"probabilities"}

    # Saved without layer traces (Keras' own layers only): TFMA's Keras loader
    # (`--evaluator tfma`) revives it from its config, and the revived model scores the eval
    # rows as the serving signature does.
    revived = tfma.default_eval_shared_model(
        eval_saved_model_path=str(tmp_path / "serving"),
        eval_config=eval_config(small_pipeline.config),
    ).model_loader.load()
    assert isinstance(revived, keras.Model)
    examples = _raw_eval_examples(small_pipeline.config.pipeline_root)
    transformed = model.signatures["transform_features"](examples=examples)
    names = [i.name.split(":")[0] for i in revived.inputs]
    from_keras = revived({name: transformed[name] for name in names}).numpy()
    served = model.signatures["serving_default"](examples=examples)["probabilities"].numpy()
    np.testing.assert_allclose(from_keras, served, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_read_split_stops_counting_at_count_to(small_pipeline, tmp_path):
    """count_to: the pass ends at the first read batch that reaches it, with the first rows as
    a full pass holds them and the count marked as a lower bound when rows remain."""
    import tensorflow_transform as tft

    args = _fn_args(small_pipeline, tmp_path)
    output, spec = tft.TFTransformOutput(args.transform_output), dataset_spec.load()
    full = read_split(args.train_files, args.data_accessor, output, spec)
    assert full.rows_exact and full.rows == len(full.labels) > 0
    part = read_split(args.train_files, args.data_accessor, output, spec, max_rows=10, count_to=1)
    assert part.rows == min(READ_BATCH_SIZE, full.rows)
    assert part.rows_exact == (full.rows <= READ_BATCH_SIZE)
    np.testing.assert_array_equal(part.labels, full.labels[:10])
    for key, column in part.features.items():
        np.testing.assert_array_equal(column, full.features[key][:10])
    beyond = read_split(args.train_files, args.data_accessor, output, spec, count_to=10**9)
    assert (beyond.rows, beyond.rows_exact) == (full.rows, True)


def _raw_eval_examples(pipeline_root: str) -> tf.Tensor:
    files = glob.glob(
        os.path.join(pipeline_root, "RowCleaner", CLEANED_EXAMPLES, "*", "Split-eval", "*")
    )
    assert files
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").take(200)
    return tf.constant([r.numpy() for r in records])


class _OwnLayer(keras.layers.Layer):
    """A layer Keras can only revive from its traced call functions."""

    def call(self, x):
        return x * 2.0


def test_only_models_with_layers_of_their_own_keep_layer_traces():
    spec = dataset_spec.load()
    keras_only = [
        build_keras_model(hyperparameter_space(), spec=spec),
        build_linear_model(spec),
        build_constant_model(spec, [0.0]),
    ]
    assert [needs_layer_traces(m) for m in keras_only] == [False, False, False]
    # the Transform layer the signatures attach does not count
    keras_only[0].tft_layer = _OwnLayer()
    assert not needs_layer_traces(keras_only[0])

    inputs = keras.Input(shape=(1,))
    nested = keras.Model(inputs, _OwnLayer()(inputs))  # as TF-DF's trees sit inside the export
    outer_inputs = keras.Input(shape=(1,))
    assert needs_layer_traces(keras.Model(outer_inputs, nested(outer_inputs)))
