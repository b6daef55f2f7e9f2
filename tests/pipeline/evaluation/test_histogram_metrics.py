"""The histogram-derived calibration metrics equal TFMA's stock ones on the same rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import tensorflow_model_analysis as tfma
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.evaluation import histogram_metrics

NAMES = ("calibration", "mean_label", "mean_prediction")
STOCK = ("Calibration", "MeanLabel", "MeanPrediction")
DERIVED = ("HistogramCalibration", "HistogramMeanLabel", "HistogramMeanPrediction")


def _metrics(frame: pd.DataFrame, classes: tuple[str, ...], module: str = "") -> dict:
    """Overall and per-`hour` metric values of an analyze_raw_data run, by (slice, name)."""
    config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key="label", prediction_key="prediction")],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["hour"])],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[tfma.MetricConfig(class_name="AUC")]
                + [tfma.MetricConfig(class_name=c, module=module) for c in classes]
            )
        ],
    )
    result = tfma.analyze_raw_data(frame, config)
    values = {}
    for slice_key, metrics in result.slicing_metrics:
        for name, value in metrics[""][""].items():
            if name in NAMES:
                values[slice_key, name] = float(value["doubleValue"])
    return values


def _assert_same(frame: pd.DataFrame) -> None:
    stock = _metrics(frame, STOCK)
    derived = _metrics(frame, DERIVED, histogram_metrics.MODULE)
    assert stock.keys() == derived.keys()
    assert {name for _, name in stock} == set(NAMES)
    for key, value in stock.items():
        if math.isnan(value):
            assert math.isnan(derived[key]), key
        else:
            assert derived[key] == np.float64(value) or math.isclose(
                derived[key], value, rel_tol=1e-9, abs_tol=1e-12
            ), (key, value, derived[key])


def test_edges_of_the_histogram():
    # Predictions on the bucket edges (0, 0.5, 1) and outside [0, 1], a slice with only
    # negative labels (calibration NaN in both), and one row alone in its slice.
    frame = pd.DataFrame(
        {
            "label": [0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            "prediction": [0.0, 1.0, 0.5, 0.49999, -0.25, 1.5, 0.73],
            "hour": [1, 1, 1, 2, 2, 2, 3],
        }
    )
    _assert_same(frame)


@pytest.mark.slow  # runs TFMA over Beam for every example set (about 20 s)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0.0, 1.0]),
            st.floats(0.0, 1.0, allow_nan=False, width=32),
            st.integers(0, 3),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_same_values_as_tfma_stock_metrics(rows):
    labels, predictions, hours = zip(*rows, strict=True)
    _assert_same(pd.DataFrame({"label": labels, "prediction": predictions, "hour": hours}))
