"""Sampled Shapley attributions of one prediction, scored in one batched predict call.

The method Vertex AI uses for tabular models that are not differentiable end to end: a feature's
attribution is its average marginal contribution to the prediction over orderings of the
features. For an input row x and a baseline row b (the training data's typical values: per
feature the median or the most frequent value), each sampled permutation walks from b to x one
feature at a time in its order; the feature switched at a step is credited with the change of
the prediction at that step. Averaged over the permutations, the attributions

- sum to f(x) - f(b) exactly (each walk telescopes), whatever the model (the sum rule);
- are exactly w_i * (x_i - b_i) for a linear model, whatever permutations were drawn;
- are 0 for a feature whose value equals the baseline's, or that the model ignores.

With n features and at most `permutations` orderings (all n! of them when that is no more, so
the values are then the exact Shapley values), the walks need permutations * (n - 1) + 2 rows:
the baseline, the intermediate rows and x itself, built here and scored by ONE call of `predict`
(the caller sends them as one request). The permutations are drawn from a seeded generator, so
an explanation is reproducible.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

DEFAULT_PERMUTATIONS = 16
# Rows one explanation may ask the model for: keeps a request within what a server accepts.
MAX_ROWS = 20_000

Row = Mapping[str, object]
Predict = Callable[[list[dict[str, object]]], Sequence[float]]


@dataclasses.dataclass(frozen=True)
class Attributions:
    """One prediction explained: attribution per feature (in `features` order), the prediction
    f(x), the baseline's f(b), and how many permutations and rows it took."""

    features: tuple[str, ...]
    values: tuple[float, ...]
    prediction: float
    baseline_prediction: float
    permutations: int
    rows_scored: int
    exact: bool  # every permutation was used: these are the exact Shapley values

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.features, self.values, strict=True))

    @property
    def total(self) -> float:
        """Sum of the attributions: f(x) - f(b) up to floating-point rounding."""
        return math.fsum(self.values)


def _all_orders(n: int, permutations: int) -> bool:
    """True when all n! orderings of n features are at most `permutations`: the walks use each."""
    return n <= 8 and math.factorial(n) <= permutations


def orders(n: int, permutations: int, seed: int = 0) -> tuple[list[tuple[int, ...]], bool]:
    """The feature orderings the walks follow: all n! when that is at most `permutations`,
    else `permutations` drawn with `seed`. Returns (orders, exact)."""
    if _all_orders(n, permutations):
        return list(itertools.permutations(range(n))), True
    rng = np.random.default_rng(seed)
    return [tuple(int(i) for i in rng.permutation(n)) for _ in range(permutations)], False


def path_rows(
    row: Row, baseline: Row, features: Sequence[str], walk_orders: Sequence[Sequence[int]]
) -> list[dict[str, object]]:
    """The rows to score: the baseline first, x last, and between them each walk's intermediate
    rows (the first j features of its order switched to x's values, j = 1 .. n-1). Columns not
    in `features` keep x's value throughout."""
    start = {**dict(row), **{k: baseline[k] for k in features}}
    rows = [start]
    for order in walk_orders:
        current = dict(start)
        for i in order[:-1]:
            current[features[i]] = row[features[i]]
            rows.append(dict(current))
    rows.append(dict(row))
    return rows


def sampled_shapley(
    predict: Predict,
    row: Row,
    baseline: Row,
    features: Sequence[str] | None = None,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> Attributions:
    """Attributions of `predict` at `row` relative to `baseline` (see the module doc).

    `predict` takes a list of rows and returns one number per row (for a classifier: the
    probability of the class being explained). `features` (default: the row's keys) are the
    ones attributed; each must be in both rows. ValueError: unusable arguments or answer."""
    features = tuple(row if features is None else features)
    if not features:
        raise ValueError("nothing to explain: no features given")
    if len(set(features)) != len(features):
        raise ValueError("features must be distinct")
    missing = [k for k in features if k not in row or k not in baseline]
    if missing:
        raise ValueError(f"feature {missing[0]!r} is missing from the row or the baseline")
    if not isinstance(permutations, int) or permutations < 1:
        raise ValueError(f"permutations must be a whole number >= 1, not {permutations!r}")
    n = len(features)
    # Counted before any is drawn: a refused request costs nothing (a million draws took 14 s).
    count = math.factorial(n) if _all_orders(n, permutations) else permutations
    needed = count * (n - 1) + 2
    if needed > MAX_ROWS:
        raise ValueError(
            f"{count} permutations of {n} features need {needed} rows, more than "
            f"{MAX_ROWS}: ask for fewer permutations"
        )
    walk_orders, exact = orders(n, permutations, seed)
    rows = path_rows(row, baseline, features, walk_orders)
    scores = np.asarray(predict(rows), dtype=np.float64).reshape(-1)
    if scores.size != len(rows):
        raise ValueError(f"predict answered {scores.size} values for {len(rows)} rows")
    if not np.all(np.isfinite(scores)):
        raise ValueError("predict answered a value that is not a finite number")
    first, last = scores[0], scores[-1]
    totals = np.zeros(n)
    for w, order in enumerate(walk_orders):
        walk = np.concatenate([[first], scores[1 + w * (n - 1) : 1 + (w + 1) * (n - 1)], [last]])
        totals[list(order)] += np.diff(walk)
    values = totals / len(walk_orders)
    return Attributions(
        features=features,
        values=tuple(float(v) for v in values),
        prediction=float(last),
        baseline_prediction=float(first),
        permutations=len(walk_orders),
        rows_scored=len(rows),
        exact=exact,
    )
