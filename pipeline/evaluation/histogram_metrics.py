"""Calibration, mean label and mean prediction read off the histogram AUC already builds.

TFMA computes every metric with per-example Python combiners, once per example, slice and
model: at scale they are most of the Evaluator's time (a profile of 5,000 eval rows against a
baseline: 120,000 calls to `to_label_prediction_example_weight`, 23 s, three combiners per model
and slice). AUC builds a calibration histogram (10,000 prediction buckets, each holding the
weighted labels, weighted predictions and weighted examples that fell in it); TFMA's stock
Calibration, MeanLabel and MeanPrediction sum the same three quantities again in a combiner of
their own. These metrics derive them from AUC's histogram instead (the same computation, so
TFMA runs it once): one combiner fewer per example, slice and model, with the same metric
names and values (sums over the same examples; only the order of the float additions differs).

Used for binary tasks only (the histogram is over predictions in [0, 1]); pipeline/pipeline.py
names them by `MODULE` in the eval config, and TFMA imports this module wherever it evaluates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tensorflow_model_analysis.metrics import (
    calibration,
    calibration_histogram,
    metric_types,
    metric_util,
)

# The import path the eval config's MetricConfig.module names.
MODULE = __name__


def _totals(histogram) -> tuple[float, float, float]:
    """(weighted labels, weighted predictions, weighted examples) over every bucket."""
    labels = predictions = examples = 0.0
    for bucket in histogram:
        labels += bucket.weighted_labels
        predictions += bucket.weighted_predictions
        examples += bucket.weighted_examples
    return labels, predictions, examples


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is ~0 (as TFMA's own metrics)."""
    return float("nan") if np.isclose(denominator, 0.0) else numerator / denominator


# Which totals each metric divides: indexes into _totals().
_RATIOS = {
    calibration.CALIBRATION_NAME: (1, 0),
    calibration.MEAN_LABEL_NAME: (0, 2),
    calibration.MEAN_PREDICTION_NAME: (1, 2),
}


def _computations(
    name: str,
    eval_config=None,
    model_name: str = "",
    output_name: str = "",
    sub_key: metric_types.SubKey | None = None,
    aggregation_type: metric_types.AggregationType | None = None,
    class_weights: dict[int, float] | None = None,
    example_weighted: bool = False,
    ratio: str = "",
) -> metric_types.MetricComputations:
    key = metric_types.MetricKey(
        name=name,
        model_name=model_name,
        output_name=output_name,
        sub_key=sub_key,
        example_weighted=example_weighted,
    )
    # Called as AUC's confusion matrices call it (default buckets), so the computation has the
    # same name and TFMA computes the histogram once for both.
    computations = calibration_histogram.calibration_histogram(
        eval_config=eval_config,
        model_name=model_name,
        output_name=output_name,
        sub_key=sub_key,
        aggregation_type=aggregation_type,
        class_weights=class_weights,
        example_weighted=example_weighted,
    )
    histogram_key = computations[-1].keys[-1]
    numerator, denominator = _RATIOS[ratio]

    def result(metrics: dict[metric_types.MetricKey, Any]) -> dict[metric_types.MetricKey, Any]:
        totals = _totals(metrics[histogram_key])
        return {key: _ratio(totals[numerator], totals[denominator])}

    computations.append(metric_types.DerivedMetricComputation(keys=[key], result=result))
    return computations


class _HistogramRatio(metric_types.Metric):
    RATIO = ""

    def __init__(self, name: str = "", ratio: str = "") -> None:
        # `ratio` is accepted because TFMA re-creates a metric from its kwargs (from_config).
        super().__init__(
            metric_util.merge_per_key_computations(_computations),
            name=name or self.RATIO,
            ratio=self.RATIO,
        )


class HistogramCalibration(_HistogramRatio):
    """TFMA's Calibration (weighted predictions / weighted labels), from AUC's histogram."""

    RATIO = calibration.CALIBRATION_NAME


class HistogramMeanLabel(_HistogramRatio):
    """TFMA's MeanLabel, from AUC's histogram."""

    RATIO = calibration.MEAN_LABEL_NAME


class HistogramMeanPrediction(_HistogramRatio):
    """TFMA's MeanPrediction, from AUC's histogram."""

    RATIO = calibration.MEAN_PREDICTION_NAME


for _metric_class in (HistogramCalibration, HistogramMeanLabel, HistogramMeanPrediction):
    metric_types.register_metric(_metric_class)
