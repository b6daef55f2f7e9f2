"""The baselines every run trains beside the candidate, and the decision which model is pushed.

A candidate is only worth serving when it beats what needs no learning (a constant: the training
label's mean, class frequencies or positive rate) and what a statistician would try first (a
linear / logistic regression on the same transformed features). run_fn fits both on the training
split, scores them and the candidate on every row of the eval split (the rows the Evaluator
reads) with the task's headline metric, and decides:

- the candidate wins when it beats the linear baseline by more than the margin: the dataset
  spec's `evaluation.linear_margin` (in the headline metric's units), or by default the eval
  noise: 1.645 standard deviations of the paired bootstrap difference over the eval rows (a
  one-sided 95% bound: a gain the eval split's sampling alone would produce is not a win);
- otherwise the linear baseline wins, and (PipelineConfig.push_linear_when_better, on by
  default) is exported in the candidate's place: same inputs, same signatures, servable;
- whichever model is exported must also beat the constant by its own eval noise.

The decision is written as `comparison.json` beside the exported model; the Evaluator's executor
(pipeline/evaluation/executor.py) withholds the blessing when it says so and copies it into the
evaluation for the run summary. The linear baseline is fitted here, to convergence, in numpy
and SciPy's L-BFGS (fit_linear_classifier): faster than gradient steps through Keras and the
optimum rather than wherever early stopping left it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from modules.dataset_spec import BINARY, LINEAR_MARGIN_KEY, MULTICLASS, REGRESSION, DatasetSpec

COMPARISON_FILE = "comparison.json"
# The Trainer's custom_config key: export the linear baseline when it beats the candidate
# (PipelineConfig.push_linear_when_better, default on).
PUSH_LINEAR_KEY = "push_linear_when_better"
CANDIDATE, LINEAR, CONSTANT = "candidate", "linear", "constant"
BOOTSTRAP_SAMPLES = 200
# One-sided 95%: z of the normal quantile the bootstrap's standard deviation is scaled by.
NOISE_Z = 1.645
# The eval rows the comparison reads at most (the rest of a huge split adds no decision power).
MAX_EVAL_ROWS = 200_000
# The closed-form linear regression solves a features x features system: above this many
# one-hot columns the linear baseline is trained by gradient steps instead.
MAX_CLOSED_FORM_COLUMNS = 2_000
RIDGE = 1e-6
# The logistic/softmax baseline's L2 penalty on its weights (not the bias), per row: small enough
# not to bias a model on thousands of rows, large enough that separable one-hot columns (a rare
# category seen with one class only) keep finite weights.
LOGISTIC_RIDGE = 1e-4
LOGISTIC_MAX_ITERATIONS = 500


@dataclasses.dataclass(frozen=True)
class Headline:
    """The task's headline metric: its TFMA metric key, and whether higher is better."""

    name: str
    higher_is_better: bool


def headline(spec: DatasetSpec) -> Headline:
    """AUC (binary), accuracy (multiclass) or mean squared error (regression), keyed as TFMA's
    metrics are, so the previous model's value in the evaluation can be looked up by it."""
    if spec.task == BINARY:
        return Headline("auc", True)
    if spec.task == MULTICLASS:
        return Headline("sparse_categorical_accuracy", True)
    return Headline("mean_squared_error", False)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula, ties counted half (0.5 when one class is absent)."""
    labels = np.asarray(labels).reshape(-1) > 0.5
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return 0.5
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=np.float64)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(average, counts)
    rank_sum = ranks[labels].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def metric_value(spec: DatasetSpec, labels: np.ndarray, predictions: np.ndarray) -> float:
    """The headline metric of predictions as the model outputs them (probabilities [n, 1] or
    [n, classes], or values [n, 1])."""
    labels = np.asarray(labels).reshape(-1)
    predictions = np.asarray(predictions, dtype=np.float64)
    if spec.task == BINARY:
        return auc(labels, predictions.reshape(-1))
    if spec.task == MULTICLASS:
        return float(np.mean(np.argmax(predictions, axis=1) == labels.astype(np.int64)))
    return float(np.mean((predictions.reshape(-1) - labels) ** 2))


def fit_linear_classifier(
    x: Any,
    labels: np.ndarray,
    classes: int,
    start_bias: list[float] | None = None,
    ridge: float = LOGISTIC_RIDGE,
    max_iterations: int = LOGISTIC_MAX_ITERATIONS,
) -> tuple[np.ndarray, np.ndarray]:
    """Logistic (classes 2: one logit, as the binary head has) or softmax regression on the
    design matrix `x` [n, d] with integer `labels`, to convergence by L-BFGS on the mean log loss
    plus ridge/2 * |W|^2 (the bias is not penalised); `x` may be a scipy sparse matrix. Returns
    (kernel [d, width], bias [width]), width 1 for binary, else `classes`: what the linear head's
    Dense layer holds. The search starts from zero weights and `start_bias` (e.g.
    constant_logits; default zeros)."""
    from scipy import sparse
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit, logsumexp

    x = sparse.csr_matrix(x, dtype=np.float64) if sparse.issparse(x) else np.asarray(x, np.float64)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    n, d = x.shape
    width = 1 if classes == 2 else classes
    if not n:
        raise ValueError("the linear baseline needs at least one training row")
    if width == 1:
        target = labels.astype(np.float64).reshape(-1, 1)
    else:
        target = np.eye(width)[labels]

    def loss_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        kernel, bias = theta[: d * width].reshape(d, width), theta[d * width :]
        logits = x @ kernel + bias
        if width == 1:
            # log loss = -y log s(z) - (1 - y) log s(-z)
            loss = -np.mean(target * log_expit(logits) + (1 - target) * log_expit(-logits))
            residual = expit(logits) - target
        else:
            log_norm = logsumexp(logits, axis=1, keepdims=True)
            loss = np.mean(log_norm[:, 0] - np.sum(logits * target, axis=1))
            residual = np.exp(logits - log_norm) - target
        loss += 0.5 * ridge * float(np.sum(kernel * kernel))
        grad_kernel = x.T @ residual / n + ridge * kernel
        grad_bias = residual.mean(axis=0)
        return float(loss), np.concatenate([grad_kernel.ravel(), grad_bias])

    bias = np.zeros(width) if start_bias is None else np.asarray(start_bias, dtype=np.float64)
    start = np.concatenate([np.zeros(d * width), bias.reshape(width)])
    result = minimize(
        loss_and_gradient,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": int(max_iterations)},
    )
    theta = result.x
    return theta[: d * width].reshape(d, width), theta[d * width :]


def constant_logits(spec: DatasetSpec, labels: np.ndarray) -> list[float]:
    """The constant baseline's logits from the training labels: log-odds of the positive rate,
    log class frequencies (add-one smoothed), or the mean."""
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if spec.task == BINARY:
        rate = (labels.sum() + 1.0) / (labels.size + 2.0)
        return [float(math.log(rate / (1.0 - rate)))]
    if spec.task == MULTICLASS:
        counts = np.bincount(labels.astype(np.int64), minlength=spec.num_classes) + 1.0
        return [float(v) for v in np.log(counts / counts.sum())]
    return [float(labels.mean()) if labels.size else 0.0]


def _gain(spec: DatasetSpec, better: float, worse: float) -> float:
    """How much `better` beats `worse` on the headline metric, positive when it does."""
    return better - worse if headline(spec).higher_is_better else worse - better


def bootstrap_noise(
    spec: DatasetSpec,
    labels: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> float:
    """The eval noise of the gain of `first` over `second`: NOISE_Z standard deviations of the
    paired bootstrap gain over the eval rows (the same resampled rows for both models).

    A resample is the eval rows weighted by how often each was drawn: each model's metric is
    computed from those weights (`_weighted_metric`) instead of on copied rows, so the rows are
    sorted once per model, not once per resample and model (at 200k eval rows: 426 sorts,
    39 s of the Trainer, docs/performance.md). The draws, and so the value, are the same."""
    labels = np.asarray(labels).reshape(-1)
    n = labels.size
    if n < 2:
        return float("inf")
    metric_of_first = _weighted_metric(spec, labels, first)
    metric_of_second = _weighted_metric(spec, labels, second)
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(samples):
        weights = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        gains.append(_gain(spec, metric_of_first(weights), metric_of_second(weights)))
    return float(NOISE_Z * np.std(gains))


def _weighted_metric(
    spec: DatasetSpec, labels: np.ndarray, predictions: np.ndarray
) -> Callable[[np.ndarray], float]:
    """weights (row -> times drawn) -> metric_value on the rows repeated that many times."""
    predictions = np.asarray(predictions, dtype=np.float64)
    if spec.task == MULTICLASS:
        hits = (np.argmax(predictions, axis=1) == labels.astype(np.int64)).astype(np.float64)
        return lambda weights: float(hits @ weights / weights.sum())
    if spec.task == REGRESSION:
        errors = (predictions.reshape(-1) - labels) ** 2
        return lambda weights: float(errors @ weights / weights.sum())
    return _weighted_auc(labels, predictions.reshape(-1))


def _weighted_auc(labels: np.ndarray, scores: np.ndarray) -> Callable[[np.ndarray], float]:
    """weights -> `auc` of the rows repeated by their weights: the pairs (positive, negative)
    ranked right, ties counted half, each pair counted weight x weight times."""
    positive = np.asarray(labels).reshape(-1) > 0.5
    _, group = np.unique(scores, return_inverse=True)  # tie groups, in score order
    groups = int(group.max()) + 1 if group.size else 0

    def value(weights: np.ndarray) -> float:
        pos = np.bincount(group, weights * positive, minlength=groups)
        neg = np.bincount(group, weights * ~positive, minlength=groups)
        total_pos, total_neg = pos.sum(), neg.sum()
        if total_pos == 0 or total_neg == 0:
            return 0.5
        negatives_below = np.cumsum(neg) - neg
        return float(pos @ (negatives_below + 0.5 * neg) / (total_pos * total_neg))

    return value


def compare(
    spec: DatasetSpec,
    labels: np.ndarray,
    predictions: dict[str, np.ndarray],
    push_linear_when_better: bool = True,
    seconds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Score candidate, linear and constant on the eval rows and decide which model is exported
    and whether it may be blessed; the JSON-able record run_fn writes (see the module doc)."""
    metric = headline(spec)
    scores = {name: metric_value(spec, labels, p) for name, p in predictions.items()}
    spec_margin = spec.thresholds.get(LINEAR_MARGIN_KEY)
    gain = _gain(spec, scores[CANDIDATE], scores[LINEAR])
    if spec_margin is None:
        required = bootstrap_noise(spec, labels, predictions[CANDIDATE], predictions[LINEAR])
        source = "eval noise (bootstrap, one-sided 95%)"
    else:
        required, source = float(spec_margin), f"dataset spec evaluation.{LINEAR_MARGIN_KEY}"
    candidate_wins = gain > required
    exported = CANDIDATE if candidate_wins or not push_linear_when_better else LINEAR
    over_constant = _gain(spec, scores[exported], scores[CONSTANT])
    constant_noise = bootstrap_noise(spec, labels, predictions[exported], predictions[CONSTANT])
    beats_constant = over_constant > constant_noise
    blessable = beats_constant and (candidate_wins or exported == LINEAR)
    sign = "+" if gain >= 0 else ""
    versus = (
        f"candidate {metric.name} {scores[CANDIDATE]:.4g} vs linear {scores[LINEAR]:.4g}: "
        f"gain {sign}{gain:.4g}, needed > {required:.4g} ({source})"
    )
    if candidate_wins:
        decision = f"candidate beats the linear baseline ({versus})"
    elif exported == LINEAR:
        decision = (
            "the candidate does not beat the linear baseline by the margin: the linear model "
            f"is exported instead ({versus})"
        )
    else:
        decision = f"not blessed: the candidate does not beat the linear baseline ({versus})"
    if not beats_constant:
        decision = (
            f"not blessed: the {exported} model does not beat the constant baseline "
            f"({metric.name} {scores[exported]:.4g} vs {scores[CONSTANT]:.4g}, gain "
            f"{over_constant:.4g}, needed > {constant_noise:.4g}); " + decision
        )
    return {
        "metric": metric.name,
        "higher_is_better": metric.higher_is_better,
        "eval_rows": int(np.asarray(labels).size),
        "scores": scores,
        "gain_over_linear": gain,
        "required_gain": required,
        "margin_source": source,
        "candidate_wins": candidate_wins,
        "exported": exported,
        "gain_over_constant": over_constant,
        "constant_noise": constant_noise,
        "blessable": blessable,
        "decision": decision,
        "train_seconds": dict(seconds or {}),
    }


def write_json(directory: str, name: str, record: dict[str, Any]) -> str:
    """`record` as `name` in `directory` (a model or evaluation directory); returns its path. The
    one writer of the small JSON records a model carries (comparison, feature importance)."""
    import tensorflow as tf

    path = os.path.join(directory, name)
    tf.io.gfile.makedirs(directory)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(record, indent=1, sort_keys=True))
    return path


def read_json(directory: str, name: str) -> dict[str, Any] | None:
    """The record `name` in a model or evaluation directory (None: there is none)."""
    import tensorflow as tf

    path = os.path.join(directory, name)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.loads(f.read())


def write_comparison(model_dir: str, comparison: dict[str, Any]) -> str:
    """comparison.json in `model_dir` (the model artifact's directory); returns its path."""
    return write_json(model_dir, COMPARISON_FILE, comparison)


def read_comparison(directory: str) -> dict[str, Any] | None:
    """The comparison.json in a model or evaluation directory (None: there is none)."""
    return read_json(directory, COMPARISON_FILE)
