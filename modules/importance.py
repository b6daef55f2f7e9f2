"""Global feature importance of the exported model: permutation importance on the eval split.

What a reader of the model card asks after "which model won" is "what does it look at". The
answer that needs nothing from the model but its predictions, so it holds for every family
(linear, wide-and-deep, trees), is permutation importance: shuffle one input column across the
eval rows, breaking its link with the label while keeping its distribution, and measure how much
the task's headline metric (modules/baselines.py: AUC, accuracy or MSE) gets worse. A feature the
model ignores loses nothing; a feature it relies on loses a lot.

run_fn computes it on the eval rows it already holds in memory for the baseline comparison
(transformed columns: every raw feature becomes exactly one transformed column, row by row, so
shuffling the transformed column is shuffling the raw one), on at most MAX_ROWS rows, REPEATS
seeded shuffles per feature: a few dozen predict calls, deterministic for a given model. The
result is written as IMPORTANCE_FILE beside comparison.json; the Evaluator's executor copies
both into the evaluation, where the model card and the web app read them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from modules import baselines
from modules.dataset_spec import DatasetSpec, transformed_name

IMPORTANCE_FILE = "feature_importance.json"
# Eval rows the importance is measured on (the first ones: the split is already shuffled).
MAX_ROWS = 5_000
# Shuffles per feature: the mean drop is reported with its standard deviation over them.
REPEATS = 3
SEED = 0

Predict = Callable[[dict[str, np.ndarray]], np.ndarray]
Metric = Callable[[np.ndarray, np.ndarray], float]


def of_model(
    spec: DatasetSpec, model: Any, features: Mapping[str, np.ndarray], labels: np.ndarray
) -> dict[str, Any]:
    """What run_fn records: the permutation importance of a Keras `model` (the exported one) on
    the eval split's transformed columns, measured with the task's headline metric and reported
    under the raw feature names."""
    import tensorflow as tf

    # One traced function for every call (all have the same shapes): Keras' predict() costs
    # about ten times more per call, which is most of the time on a few thousand rows.
    score = tf.function(lambda columns: model(columns, training=False))
    metric = baselines.headline(spec)
    return permutation_importance(
        lambda columns: score(columns).numpy(),
        features,
        labels,
        lambda y, predictions: baselines.metric_value(spec, y, predictions),
        metric.name,
        metric.higher_is_better,
        names={transformed_name(k): k for k in spec.raw_feature_keys},
    )


def permutation_importance(
    predict: Predict,
    features: Mapping[str, np.ndarray],
    labels: np.ndarray,
    metric: Metric,
    metric_name: str,
    higher_is_better: bool,
    names: Mapping[str, str] | None = None,
    repeats: int = REPEATS,
    seed: int = SEED,
    max_rows: int = MAX_ROWS,
) -> dict[str, Any]:
    """The drop in `metric` when each column of `features` is shuffled, positive when the
    model does worse without it; the JSON-able record written as IMPORTANCE_FILE.

    `predict` maps a dict of columns to predictions; `names` maps a column key to the name
    reported (the raw feature a transformed column comes from). Features are listed most
    important first."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    labels = np.asarray(labels).reshape(-1)
    n = min(int(max_rows), labels.size)
    if n < 2:
        raise ValueError(f"permutation importance needs at least 2 eval rows, got {n}")
    columns = {k: np.asarray(v)[:n] for k, v in features.items()}
    labels = labels[:n]
    sign = 1.0 if higher_is_better else -1.0
    score = float(metric(labels, predict(columns)))
    rng = np.random.default_rng(seed)
    rows = []
    for key in sorted(columns):
        drops = []
        for _ in range(repeats):
            shuffled = dict(columns)
            shuffled[key] = columns[key][rng.permutation(n)]
            drops.append(sign * (score - float(metric(labels, predict(shuffled)))))
        rows.append(
            {
                "feature": (names or {}).get(key, key),
                "importance": float(np.mean(drops)),
                "std": float(np.std(drops)),
            }
        )
    rows.sort(key=lambda r: (-r["importance"], r["feature"]))
    return {
        "metric": metric_name,
        "higher_is_better": higher_is_better,
        "score": score,
        "eval_rows": n,
        "repeats": repeats,
        "seed": seed,
        "features": rows,
    }


def write_importance(directory: str, importance: dict[str, Any]) -> str:
    """IMPORTANCE_FILE in `directory` (a model or evaluation directory); returns its path."""
    return baselines.write_json(directory, IMPORTANCE_FILE, importance)


def read_importance(directory: str) -> dict[str, Any] | None:
    """The IMPORTANCE_FILE in a model or evaluation directory (None: there is none)."""
    return baselines.read_json(directory, IMPORTANCE_FILE)
