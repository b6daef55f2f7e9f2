"""The run's baselines and the decision which model is exported (modules/baselines.py), and the
training length the data size sets (modules/trainer.training_plan)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import modules  # noqa: F401 - the Keras-2 switch before TensorFlow loads
from modules import baselines
from modules.dataset_spec import BINARY, MULTICLASS, REGRESSION, DatasetSpec, transformed_name
from modules.model import linear_weights
from modules.trainer import (
    BATCH_SIZE,
    MAX_EPOCHS,
    Split,
    fit_linear_baseline,
    rows_that_fix_the_plan,
    training_plan,
)


def _spec(task: str, **extra) -> DatasetSpec:
    classes = {BINARY: ("no", "yes"), MULTICLASS: ("a", "b", "c"), REGRESSION: ()}[task]
    return DatasetSpec(
        name="toy",
        task=task,
        label="y",
        classes=classes,
        numeric=("x1", "x2"),
        bucketized=(),
        categorical={"c": 3},
        vocabulary=(),
        unused=(),
        kinds={"x1": "float", "x2": "float", "c": "int64", "y": "float"},
        **extra,
    )


def _pairwise_auc(labels, scores) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return 0.5
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from([0.0, 0.1, 0.5, 0.5, 0.9, 1.0])),
        min_size=1,
        max_size=40,
    )
)
def test_auc_is_the_pairwise_win_rate_with_ties_counted_half(rows):
    labels = np.array([y for y, _ in rows], dtype=np.int64)
    scores = np.array([s for _, s in rows])
    assert baselines.auc(labels, scores) == pytest.approx(_pairwise_auc(labels, scores))


def _copied_rows_noise(spec, labels, first, second, samples, seed=0) -> float:
    """bootstrap_noise by its definition: each metric on the resampled rows, copied."""
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(samples):
        rows = rng.integers(0, labels.size, labels.size)
        a = baselines.metric_value(spec, labels[rows], first[rows])
        b = baselines.metric_value(spec, labels[rows], second[rows])
        gains.append(a - b if baselines.headline(spec).higher_is_better else b - a)
    return float(baselines.NOISE_Z * np.std(gains))


@settings(max_examples=40, deadline=None)
@given(
    task=st.sampled_from([BINARY, MULTICLASS, REGRESSION]),
    n=st.integers(2, 60),
    # few distinct scores: ties within a model, and rows tied across the resample's copies
    levels=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
)
def test_the_weighted_bootstrap_is_the_bootstrap_over_copied_rows(task, n, levels, seed):
    rng = np.random.default_rng(seed)
    spec = _spec(task)
    width = 3 if task == MULTICLASS else 1
    labels = (
        rng.integers(0, width if task == MULTICLASS else 2, n).astype(np.float64)
        if task != REGRESSION
        else rng.normal(0, 1, n)
    )
    first, second = (rng.integers(0, levels, (n, width)) / levels for _ in range(2))
    expected = _copied_rows_noise(spec, labels, first, second, samples=25)
    got = baselines.bootstrap_noise(spec, labels, first, second, samples=25)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_the_weighted_bootstrap_keeps_a_resample_with_one_class_at_half():
    spec = _spec(BINARY)
    labels = np.array([1.0, 0.0])  # 2 rows: half the resamples draw one class only
    first, second = np.array([[0.9], [0.1]]), np.array([[0.1], [0.9]])
    expected = _copied_rows_noise(spec, labels, first, second, samples=50)
    assert expected > 0
    assert baselines.bootstrap_noise(spec, labels, first, second, samples=50) == pytest.approx(
        expected, rel=1e-9
    )


def _eval_rows(n: int = 2000, seed: int = 1):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    signal = labels + rng.normal(0, 1.0, n)
    return labels, signal


def test_a_clearly_better_candidate_is_exported_and_blessable():
    labels, signal = _eval_rows()
    rng = np.random.default_rng(2)
    predictions = {
        baselines.CANDIDATE: (labels + rng.normal(0, 0.3, labels.size)).reshape(-1, 1),
        baselines.LINEAR: signal.reshape(-1, 1),
        baselines.CONSTANT: np.full([labels.size, 1], 0.5),
    }
    c = baselines.compare(_spec(BINARY), labels, predictions)
    assert c["candidate_wins"] and c["exported"] == baselines.CANDIDATE and c["blessable"]
    assert c["gain_over_linear"] > c["required_gain"] > 0
    assert c["scores"][baselines.CONSTANT] == 0.5


def test_a_candidate_within_the_eval_noise_loses_to_the_linear_baseline():
    labels, signal = _eval_rows()
    predictions = {
        baselines.CANDIDATE: (signal + 1e-3).reshape(-1, 1),  # the same ranking: no gain
        baselines.LINEAR: signal.reshape(-1, 1),
        baselines.CONSTANT: np.full([labels.size, 1], 0.5),
    }
    pushed = baselines.compare(_spec(BINARY), labels, predictions)
    assert pushed["exported"] == baselines.LINEAR and pushed["blessable"]
    assert "linear model is exported instead" in pushed["decision"]
    kept = baselines.compare(_spec(BINARY), labels, predictions, push_linear_when_better=False)
    assert kept["exported"] == baselines.CANDIDATE and not kept["blessable"]
    assert kept["decision"].startswith("not blessed: the candidate does not beat the linear")


def test_the_spec_margin_replaces_the_eval_noise():
    labels, signal = _eval_rows()
    rng = np.random.default_rng(3)
    better = (labels + rng.normal(0, 0.3, labels.size)).reshape(-1, 1)
    predictions = {
        baselines.CANDIDATE: better,
        baselines.LINEAR: signal.reshape(-1, 1),
        baselines.CONSTANT: np.full([labels.size, 1], 0.5),
    }
    spec = _spec(BINARY, thresholds={"linear_margin": 0.5})  # more than AUC can gain here
    c = baselines.compare(spec, labels, predictions)
    assert c["required_gain"] == 0.5 and c["exported"] == baselines.LINEAR
    assert "linear_margin" in c["margin_source"]


def test_nothing_is_blessed_when_no_model_beats_the_constant():
    rng = np.random.default_rng(4)
    labels = rng.normal(10.0, 1.0, 500)
    noise = (10.0 + rng.normal(0, 3.0, 500)).reshape(-1, 1)
    predictions = {
        baselines.CANDIDATE: noise,
        baselines.LINEAR: noise + 0.01,
        baselines.CONSTANT: np.full([500, 1], 10.0),
    }
    c = baselines.compare(_spec(REGRESSION), labels, predictions)
    assert not c["blessable"]
    assert "does not beat the constant baseline" in c["decision"]
    assert c["metric"] == "mean_squared_error" and not c["higher_is_better"]


def test_constant_logits_reproduce_the_training_labels_mean():
    assert baselines.constant_logits(_spec(REGRESSION), np.array([1.0, 2.0, 6.0])) == [3.0]
    (logit,) = baselines.constant_logits(_spec(BINARY), np.array([1, 1, 1, 0, 0, 0, 0, 0]))
    assert 1 / (1 + np.exp(-logit)) == pytest.approx(4 / 10)  # add-one smoothed 3/8
    logs = baselines.constant_logits(_spec(MULTICLASS), np.array([0, 0, 2]))
    assert np.exp(logs) == pytest.approx([3 / 6, 1 / 6, 2 / 6])


@pytest.mark.parametrize("rows", [50, 300, 1_000, 12_000, 1_000_000])
def test_training_length_follows_the_row_count(rows):
    plan = training_plan(rows, max_steps=2000)
    assert plan.max_steps <= 2000 and plan.epochs <= MAX_EPOCHS
    assert plan.batch_size * plan.steps_per_epoch >= rows or plan.epochs == 1
    if rows <= 300:
        # A few hundred rows: a few hundred small steps at most, not 2,000.
        assert plan.max_steps <= 600 and plan.batch_size < BATCH_SIZE
    if rows >= 12_000:
        assert plan.batch_size == BATCH_SIZE


@settings(max_examples=300, deadline=None)
@given(st.integers(-5, 20_000), st.integers(0, 10**9), st.integers(0, 10**7))
def test_rows_past_the_fixing_count_do_not_change_the_plan(max_steps, above, more):
    """read_split stops counting a train split at rows_that_fix_the_plan: every count from there
    on must give the same plan, whatever the step budget (hostile ones too)."""
    rows = rows_that_fix_the_plan(max_steps) + above
    counted = training_plan(rows, max_steps, rows_exact=False)
    actual = training_plan(rows + more, max_steps)
    assert dataclasses.replace(counted, rows=actual.rows, rows_exact=True) == actual
    assert counted.rows == rows and not counted.rows_exact


@pytest.mark.parametrize("max_steps", [1, 15, 16, 100, 2000])
def test_the_fixing_count_is_within_one_batch_of_the_step_budget(max_steps):
    """It is not counting far more than needed: below one epoch of max_steps full batches (and
    sixteen of them) the row count does change the plan."""
    fixed = rows_that_fix_the_plan(max_steps)
    assert fixed <= max(max_steps, 16) * BATCH_SIZE + 1
    smaller = max(max_steps, 16) * BATCH_SIZE // 2
    assert training_plan(smaller, max_steps) != dataclasses.replace(
        training_plan(fixed, max_steps), rows=smaller
    )


def test_a_single_epoch_validates_nothing_and_stops_nothing_early():
    """One epoch: early stopping cannot act, so fit gets no eval pass (run_fn scores the eval
    rows right after); more epochs: both, on the eval rows."""
    split = Split({"x": np.zeros([3, 1])}, np.zeros([3]), 3)
    one = training_plan(1_000_000, max_steps=2000)
    assert one.epochs == 1 and one.validation(split) == {} and one.early_stopping_callbacks() == []
    many = training_plan(300, max_steps=2000)
    assert many.epochs > 1
    assert many.validation(split)["validation_data"][0] is split.features
    assert len(many.early_stopping_callbacks()) == 1


def test_a_step_budget_below_one_epoch_is_kept():
    plan = training_plan(12_000, max_steps=1)
    assert (plan.steps_per_epoch, plan.epochs, plan.max_steps) == (1, 1, 1)


def _toy_split(spec: DatasetSpec, n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    c = rng.integers(0, 3, n)
    y = 3.0 * x1 - 2.0 * x2 + np.array([0.0, 4.0, -1.0])[c] + 50.0
    features = {
        transformed_name("x1"): x1.reshape(-1, 1).astype(np.float32),
        transformed_name("x2"): x2.reshape(-1, 1).astype(np.float32),
        transformed_name("c"): c.reshape(-1, 1).astype(np.int64),
    }
    return Split(features, y.astype(np.float32), n)


def test_the_linear_regression_baseline_is_least_squares():
    spec = _spec(REGRESSION)
    train, evaluation = _toy_split(spec, 400, 5), _toy_split(spec, 100, 6)
    model = fit_linear_baseline(spec, train, evaluation, training_plan(400, 2000))
    predicted = model.predict(evaluation.features, verbose=0).reshape(-1)
    assert np.max(np.abs(predicted - evaluation.labels)) < 1e-2  # noise-free: exact fit
    kernel, _ = linear_weights(model, spec)
    assert kernel[:2, 0] == pytest.approx([3.0, -2.0], abs=1e-3)


def test_the_logistic_baseline_learns_a_separable_rule():
    spec = _spec(BINARY)
    train, evaluation = _toy_split(spec, 600, 7), _toy_split(spec, 200, 8)
    train = dataclasses.replace(train, labels=(train.labels > 50).astype(np.int64))
    evaluation = dataclasses.replace(evaluation, labels=(evaluation.labels > 50).astype(np.int64))
    model = fit_linear_baseline(spec, train, evaluation, training_plan(600, 2000))
    scores = model.predict(evaluation.features, verbose=0)
    assert baselines.auc(evaluation.labels, scores) > 0.97


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 60), st.integers(0, 2**32 - 1))
def test_the_sparse_design_is_the_linear_models_keras_design(n, seed):
    """linear_design (what the baseline is fitted on) holds, column for column, what the linear
    model's Keras layers read from the same rows: the z-scores (dense), then the one-hot ids
    (sparse)."""
    import tensorflow as tf
    import tf_keras as keras

    from modules.model import LINEAR_LAYER, NUMERIC_SUFFIX, build_linear_model, linear_design

    spec = _spec(BINARY)
    features = _toy_split(spec, n, seed % 2**31).features
    model = build_linear_model(spec)
    numeric, ids = keras.Model(
        model.inputs,
        [model.get_layer(LINEAR_LAYER + NUMERIC_SUFFIX).input, model.get_layer(LINEAR_LAYER).input],
    )(features)
    assert isinstance(ids, tf.SparseTensor)
    keras_design = np.concatenate([numeric.numpy(), tf.sparse.to_dense(ids).numpy()], axis=1)
    assert linear_design(spec, features).toarray() == pytest.approx(keras_design, abs=1e-6)


def test_the_sparse_design_refuses_ids_outside_the_one_hot_range():
    from modules.model import linear_design

    spec = _spec(BINARY)
    features = _toy_split(spec, 10, 1).features
    features[transformed_name("c")][3] = 3  # cardinality 3: ids 0..2
    with pytest.raises(ValueError, match="outside"):
        linear_design(spec, features)


@pytest.mark.parametrize("classes", [2, 3])
def test_the_logistic_fit_reaches_the_penalised_optimum(classes):
    """fit_linear_classifier minimises mean log loss + ridge/2 |W|^2: scikit-learn's logistic
    regression with C = 1 / (ridge * n) minimises the same function, so both find the same
    weights (on dense and sparse designs alike)."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(classes)
    n, d, ridge = 500, 6, 1e-2
    x = rng.normal(size=(n, d))
    logits = x @ rng.normal(size=(d, classes))
    labels = np.array([rng.choice(classes, p=np.exp(r) / np.exp(r).sum()) for r in logits])
    reference = LogisticRegression(C=1.0 / (ridge * n), tol=1e-10, max_iter=10_000).fit(x, labels)
    for design in (x, sparse.csr_matrix(x)):
        kernel, bias = baselines.fit_linear_classifier(design, labels, classes, ridge=ridge)
        if classes == 2:
            assert kernel[:, 0] == pytest.approx(reference.coef_[0], abs=1e-4)
            assert bias == pytest.approx(reference.intercept_, abs=1e-4)
        else:  # softmax weights are defined up to a shift shared by every class
            assert kernel - kernel.mean(axis=1, keepdims=True) == pytest.approx(
                reference.coef_.T - reference.coef_.T.mean(axis=1, keepdims=True), abs=1e-4
            )
