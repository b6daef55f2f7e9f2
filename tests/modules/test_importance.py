"""Permutation importance (modules/importance.py) of real fitted models, as run_fn measures it:
on data where one feature drives the label and the others are pure noise, the driver's shuffle
costs the headline metric a lot and the noise features' cost about nothing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import modules  # noqa: F401 - the Keras-2 switch before TensorFlow loads
from modules import baselines, importance
from modules.dataset_spec import BINARY, REGRESSION, DatasetSpec, transformed_name
from modules.trainer import Split, fit_linear_baseline, training_plan


def _spec(task: str) -> DatasetSpec:
    return DatasetSpec(
        name="toy",
        task=task,
        label="y",
        classes=("no", "yes") if task == BINARY else (),
        numeric=("signal", "noise"),
        bucketized=(),
        categorical={"c": 3},
        vocabulary=(),
        unused=(),
        kinds={"signal": "float", "noise": "float", "c": "int64", "y": "float"},
    )


def _split(n: int, seed: int, binary: bool) -> Split:
    """y depends on `signal` only; `noise` and `c` are independent of it."""
    rng = np.random.default_rng(seed)
    signal, noise = rng.normal(size=n), rng.normal(size=n)
    c = rng.integers(0, 3, n)
    y = 2.0 * signal + 0.3 * rng.normal(size=n)
    features = {
        transformed_name("signal"): signal.reshape(-1, 1).astype(np.float32),
        transformed_name("noise"): noise.reshape(-1, 1).astype(np.float32),
        transformed_name("c"): c.reshape(-1, 1).astype(np.int64),
    }
    labels = (y > 0).astype(np.int64) if binary else y.astype(np.float32)
    return Split(features, labels, n)


@pytest.mark.parametrize("task", [BINARY, REGRESSION])
def test_the_driving_feature_matters_and_pure_noise_does_not(task):
    spec = _spec(task)
    binary = task == BINARY
    train, evaluation = _split(800, 1, binary), _split(600, 2, binary)
    model = fit_linear_baseline(spec, train, evaluation, training_plan(800, 2000))
    result = importance.of_model(spec, model, evaluation.features, evaluation.labels)
    by_name = {r["feature"]: r for r in result["features"]}
    assert set(by_name) == {"signal", "noise", "c"}  # raw names, not the transformed keys
    assert result["features"][0]["feature"] == "signal"  # most important first
    if binary:
        assert result["metric"] == "auc" and result["score"] > 0.95
        assert by_name["signal"]["importance"] > 0.3  # AUC falls towards 0.5
        noise_limit = 0.01
    else:
        assert result["metric"] == "mean_squared_error" and result["score"] < 0.2
        assert by_name["signal"]["importance"] > 4.0  # MSE rises by about 2 * Var(2 * signal)
        noise_limit = 0.01
    for name in ("noise", "c"):
        assert abs(by_name[name]["importance"]) < noise_limit, by_name[name]
    assert result["eval_rows"] == 600 and result["repeats"] == importance.REPEATS


def test_the_measure_is_deterministic_and_bounded_in_rows():
    spec = _spec(BINARY)
    train, evaluation = _split(400, 3, True), _split(300, 4, True)
    model = fit_linear_baseline(spec, train, evaluation, training_plan(400, 2000))
    metric = baselines.headline(spec)

    def measure():
        return importance.permutation_importance(
            lambda columns: model.predict(columns, verbose=0),
            evaluation.features,
            evaluation.labels,
            lambda labels, predictions: baselines.metric_value(spec, labels, predictions),
            metric.name,
            metric.higher_is_better,
            max_rows=200,
            repeats=2,
            seed=5,
        )

    once = measure()
    assert once == measure()
    assert once["eval_rows"] == 200 and once["seed"] == 5


def test_written_beside_the_comparison_and_read_back(tmp_path):
    record = {"metric": "auc", "features": [{"feature": "a", "importance": 0.1, "std": 0.0}]}
    path = importance.write_importance(str(tmp_path), record)
    assert path == str(tmp_path / importance.IMPORTANCE_FILE)
    assert importance.read_importance(str(tmp_path)) == record
    assert importance.read_importance(str(tmp_path / "nothing")) is None


@pytest.mark.parametrize(
    "kwargs, message", [({"repeats": 0}, "repeats must be at least 1"), ({"max_rows": 1}, "2 eval")]
)
def test_bad_arguments_are_one_clear_error(kwargs, message):
    split = dataclasses.replace(_split(10, 0, True))
    with pytest.raises(ValueError, match=message):
        importance.permutation_importance(
            lambda f: np.zeros(len(f[transformed_name("signal")])),
            split.features,
            split.labels,
            baselines.auc,
            "auc",
            True,
            **kwargs,
        )
