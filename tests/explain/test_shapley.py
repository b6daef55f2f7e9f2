"""Sampled Shapley attributions (explain/shapley.py): exact for a linear function whatever the
permutations, the sum rule for any function, one predict call, and a clear error for bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explain import shapley

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


def _rows(n: int):
    names = [f"f{i}" for i in range(n)]
    vectors = st.lists(finite, min_size=n, max_size=n)
    return st.tuples(st.just(names), vectors, vectors, vectors)


class Counting:
    """A predict callable that counts its calls and the rows they carried."""

    def __init__(self, f):
        self.f, self.calls, self.rows = f, 0, 0

    def __call__(self, rows):
        self.calls += 1
        self.rows += len(rows)
        return [self.f(r) for r in rows]


@settings(max_examples=60, deadline=None)
@given(
    data=st.integers(1, 12).flatmap(_rows),
    permutations=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_linear_function_gets_exactly_its_weight_times_the_change(data, permutations, seed):
    names, w, x, b = data
    bias = 3.0
    predict = Counting(
        lambda r: bias + math.fsum(wi * r[k] for wi, k in zip(w, names, strict=True))
    )
    result = shapley.sampled_shapley(
        predict,
        dict(zip(names, x, strict=True)),
        dict(zip(names, b, strict=True)),
        permutations=permutations,
        seed=seed,
    )
    scale = 1.0 + sum(abs(wi) * (abs(xi) + abs(bi)) for wi, xi, bi in zip(w, x, b, strict=True))
    for value, wi, xi, bi in zip(result.values, w, x, b, strict=True):
        assert value == pytest.approx(wi * (xi - bi), abs=1e-9 * scale)
    assert predict.calls == 1
    assert predict.rows == result.rows_scored == result.permutations * (len(names) - 1) + 2


@settings(max_examples=60, deadline=None)
@given(
    data=st.integers(1, 10).flatmap(_rows),
    permutations=st.integers(1, 30),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_sum_rule_holds_for_a_nonlinear_function(data, permutations, seed):
    names, w, x, b = data

    def f(r):
        z = [r[k] / 100.0 for k in names]
        product = math.prod(math.tanh(v) for v in z)
        return (
            math.sin(sum(wi * v for wi, v in zip(w, z, strict=True)) / 100.0)
            + product
            + max(z) ** 2
        )

    result = shapley.sampled_shapley(
        Counting(f),
        dict(zip(names, x, strict=True)),
        dict(zip(names, b, strict=True)),
        permutations=permutations,
        seed=seed,
    )
    fx, fb = f(dict(zip(names, x, strict=True))), f(dict(zip(names, b, strict=True)))
    assert (result.prediction, result.baseline_prediction) == (fx, fb)
    assert result.total == pytest.approx(fx - fb, abs=1e-9 * (1.0 + abs(fx) + abs(fb)))


def test_small_feature_sets_use_every_permutation_and_get_the_exact_shapley_values():
    # f = x0 * x1 (+ x2 ignored): from b = 0 the interaction is split evenly between x0 and x1.
    result = shapley.sampled_shapley(
        lambda rows: [r["a"] * r["b"] for r in rows],
        {"a": 2.0, "b": 3.0, "c": 9.0},
        {"a": 0.0, "b": 0.0, "c": 0.0},
        permutations=16,
    )
    assert result.exact and result.permutations == 6
    assert result.as_dict() == {"a": 3.0, "b": 3.0, "c": 0.0}


def test_a_feature_at_its_baseline_value_or_ignored_gets_zero():
    result = shapley.sampled_shapley(
        lambda rows: [np.exp(r["a"]) * (1 + r["b"]) for r in rows],
        {"a": 1.0, "b": 2.0, "c": "x", "d": 5.0},
        {"a": 0.0, "b": 0.0, "c": "y", "d": 5.0},
        permutations=10,
    )
    assert result.as_dict()["c"] == 0.0 and result.as_dict()["d"] == 0.0
    assert result.as_dict()["a"] > 0 and result.as_dict()["b"] > 0


def test_the_same_seed_gives_the_same_explanation():
    def f(rows):
        return [r["a"] * r["b"] + r["c"] ** 2 * r["a"] for r in rows]

    x = {k: float(i + 1) for i, k in enumerate("abcdefghij")}
    b = dict.fromkeys(x, 0.0)
    once = shapley.sampled_shapley(f, x, b, permutations=5, seed=7)
    again = shapley.sampled_shapley(f, x, b, permutations=5, seed=7)
    assert once == again and not once.exact


def test_columns_not_explained_keep_the_rows_value():
    seen = []

    def f(rows):
        seen.extend(r["fixed"] for r in rows)
        return [r["a"] for r in rows]

    result = shapley.sampled_shapley(f, {"a": 1.0, "fixed": 7}, {"a": 0.0}, features=["a"])
    assert set(seen) == {7} and result.as_dict() == {"a": 1.0}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"features": []}, "no features given"),
        ({"features": ["a", "a"]}, "distinct"),
        ({"features": ["zz"]}, "'zz' is missing"),
        ({"permutations": 0}, "permutations must be a whole number >= 1"),
        ({"permutations": 2.5}, "permutations must be a whole number >= 1"),
        ({"permutations": 10**6}, "ask for fewer permutations"),
    ],
)
def test_bad_arguments_are_one_clear_error(kwargs, message):
    x = {k: 1.0 for k in "abcdefghij"}
    with pytest.raises(ValueError, match=message):
        shapley.sampled_shapley(lambda rows: [0.0] * len(rows), x, dict(x), **kwargs)


@pytest.mark.parametrize(
    "answer, message",
    [
        (lambda rows: [0.0], "answered 1 values for"),
        (lambda rows: [float("nan")] * len(rows), "not a finite number"),
    ],
)
def test_a_bad_answer_from_predict_is_one_clear_error(answer, message):
    with pytest.raises(ValueError, match=message):
        shapley.sampled_shapley(answer, {"a": 1.0, "b": 2.0}, {"a": 0.0, "b": 0.0})
