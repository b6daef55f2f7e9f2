"""The models read their one-hot ids as sparse tensors (modules/model.py one_hot): the linear
models' two Dense layers compute, row for row, the design linear_design builds in SciPy times
the kernel set_linear_weights splits between them, for specs with ids and numbers, only ids or
only numbers; and no model of the taxi spec builds the dense [n, 4,288] one-hot any more."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import modules  # noqa: F401 - the Keras-2 switch before TensorFlow loads
from modules import dataset_spec
from modules.dataset_spec import BINARY, REGRESSION, DatasetSpec, transformed_name
from modules.model import (
    build_constant_model,
    build_keras_model,
    build_linear_model,
    hyperparameter_space,
    linear_columns,
    linear_design,
    linear_weights,
    set_linear_weights,
)


def _spec(numeric: tuple[str, ...], categorical: dict[str, int], task: str = REGRESSION):
    kinds = {k: "float" for k in numeric} | {k: "int64" for k in categorical} | {"y": "float"}
    return DatasetSpec(
        name="toy",
        task=task,
        label="y",
        classes=("no", "yes") if task == BINARY else (),
        numeric=numeric,
        bucketized=(),
        categorical=categorical,
        vocabulary=(),
        unused=(),
        kinds=kinds,
    )


SPECS = {
    "numbers and ids": _spec(("x1", "x2"), {"c": 3, "d": 50}),
    "only ids": _spec((), {"c": 3, "d": 50}),
    "only numbers": _spec(("x1", "x2", "x3"), {}),
}


def _rows(spec: DatasetSpec, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    rows = {transformed_name(k): rng.normal(size=(n, 1)).astype(np.float32) for k in spec.numeric}
    for key, cardinality in spec.categorical.items():
        rows[transformed_name(key)] = rng.integers(0, cardinality, (n, 1)).astype(np.int64)
    return rows


@functools.cache
def _linear_model(name: str):
    """One model per spec for all of hypothesis' examples (each sets its own weights)."""
    return build_linear_model(SPECS[name])


@pytest.mark.parametrize("name", list(SPECS))
@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_the_linear_model_computes_the_design_times_its_kernel(name, n, seed):
    spec = SPECS[name]
    rng = np.random.default_rng(seed)
    rows = _rows(spec, n, rng)
    kernel = rng.normal(size=(linear_columns(spec), 1))
    bias = rng.normal(size=1)
    model = _linear_model(name)
    set_linear_weights(model, spec, kernel, bias)
    got_kernel, got_bias = linear_weights(model, spec)
    assert got_kernel == pytest.approx(kernel, abs=1e-6)
    assert got_bias == pytest.approx(bias, abs=1e-6)
    expected = linear_design(spec, rows) @ kernel + bias
    predicted = model(rows, training=False).numpy()
    assert predicted == pytest.approx(expected, abs=1e-4)


def test_a_kernel_of_another_width_is_refused():
    spec = SPECS["numbers and ids"]
    model = build_linear_model(spec)
    with pytest.raises(ValueError, match="rows"):
        set_linear_weights(model, spec, np.zeros((linear_columns(spec) - 1, 1)), np.zeros(1))


def test_the_constant_model_predicts_its_value_whatever_the_rows():
    spec = _spec(("x1",), {"c": 3}, BINARY)
    model = build_constant_model(spec, [0.4])
    rows = _rows(spec, 25, np.random.default_rng(3))
    expected = 1 / (1 + np.exp(-0.4))
    assert model.predict(rows, verbose=0).reshape(-1) == pytest.approx([expected] * 25, abs=1e-6)


def _one_hot_layers(model):
    return [layer for layer in model.layers if type(layer).__name__ == "CategoryEncoding"]


def test_no_taxi_model_builds_a_dense_one_hot():
    """Each model of the taxi spec one-hot encodes every id column, sparsely: the dense
    [n, 4,288] tensor was most of each model's predict time."""
    spec = dataset_spec.load()
    ids = len(spec.categorical) + len(spec.bucketized) + len(spec.vocabulary)
    models = {
        "linear": build_linear_model(spec),
        "constant": build_constant_model(spec, [0.0]),
        "wide_and_deep": build_keras_model(hyperparameter_space(), spec=spec),
    }
    for name, model in models.items():
        layers = _one_hot_layers(model)
        assert len(layers) == ids, name
        assert all(layer.get_config()["sparse"] for layer in layers), name


@pytest.mark.parametrize("bad_id", [-1, 3, 2**40])  # cardinality 3: ids 0..2
def test_an_id_outside_its_column_still_fails_the_call(bad_id):
    import tensorflow as tf

    spec = SPECS["only ids"]
    model = _linear_model("only ids")
    rows = _rows(spec, 4, np.random.default_rng(0))
    rows[transformed_name("c")][2] = bad_id
    with pytest.raises(tf.errors.InvalidArgumentError):
        model(rows)
