"""data_stats/equi_width_histogram.py gives TFDV's own histograms, bit for bit.

Each test compares with TFDV 1.16's code as it ships (`quantiles_util`'s functions, kept by the
module before `install()` replaces one): on generated quantile sketches with repeated values,
point buckets and infinities at both ends, and on the statistics of real taxi rows.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorflow_data_validation.utils import quantiles_util

from data_stats import equi_width_histogram as ewh
from data_stats import measures

tfdv_histogram = ewh._tfdv_equi_width_histogram  # noqa: SLF001 - TFDV's own, as shipped
tfdv_bin_weights = quantiles_util._get_bin_weights  # noqa: SLF001

# Few distinct values make repeated boundaries (runs of equal upper bounds, point buckets) common.
_values = st.one_of(
    st.sampled_from([-2.5, 0.0, 1.0, 1e-300, 7.25, 1e12]),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
)
_weights = st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 0.1, 1e6])


@st.composite
def sketches(draw):
    """(quantiles, cumulative counts, finite min, finite max, buckets, +inf count) as TFDV's
    basic statistics pass them: sorted boundaries, non-decreasing counts, -inf / +inf at the
    ends only, the +inf count within the total."""
    finite = sorted(draw(st.lists(_values, min_size=1, max_size=120)))
    neg = [float("-inf")] * draw(st.integers(0, 3))
    pos = [float("inf")] * draw(st.integers(0, 3))
    quantiles = np.array(neg + finite + pos)
    counts = np.cumsum(draw(st.lists(_weights, min_size=quantiles.size, max_size=quantiles.size)))
    num_pos_inf = float(draw(st.integers(1, 5))) if pos else 0.0
    counts[-1] = max(counts[-1], num_pos_inf)
    buckets = draw(st.integers(1, 40))
    return quantiles, counts, min(finite), max(finite), buckets, num_pos_inf


@settings(max_examples=400, deadline=None)
@given(sketches())
def test_the_histogram_is_tfdvs_bit_for_bit(sketch):
    ours = ewh.equi_width_histogram(*sketch)
    assert ours.SerializeToString() == tfdv_histogram(*sketch).SerializeToString()


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from([-1.0, 0.0, 0.5, 3.0]), min_size=1, max_size=60).map(sorted),
    st.data(),
)
def test_bin_weights_are_tfdvs(boundaries, data):
    counts = np.cumsum(
        data.draw(st.lists(_weights, min_size=len(boundaries), max_size=len(boundaries)))
    )
    ours = ewh.bin_weights(np.array(boundaries), counts)
    theirs = tfdv_bin_weights(np.array(boundaries), counts)
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize(
    "sketch",
    [
        # no finite value at all: TFDV's single bucket
        (
            np.array([float("inf")] * 3),
            np.array([1.0, 2.0, 3.0]),
            float("inf"),
            float("-inf"),
            10,
            3,
        ),
        # one finite value: one interval [v, v]
        (np.array([4.0, 4.0, 4.0]), np.array([2.0, 2.0, 5.0]), 4.0, 4.0, 10, 0),
        # a range too wide for linspace: TFDV's empty histogram
        (np.array([-1.7e308, 1.7e308]), np.array([1.0, 2.0]), -1.7e308, 1.7e308, 10, 0),
    ],
    ids=["no-finite-value", "one-value", "overflowing-range"],
)
def test_edge_sketches(sketch):
    assert ewh.equi_width_histogram(*sketch) == tfdv_histogram(*sketch)


def test_statistics_of_taxi_rows_are_tfdvs(monkeypatch):
    """Whole statistics (every feature's histograms, quantiles, counts) of 1,000 real rows, with
    TFDV's function and with ours: the same proto. Its numeric features do have histograms."""
    from bench.drift_calibration import SCHEMA, read_rows, schema_columns

    rows = read_rows()[:1000]
    examples = measures.examples_from_rows(rows, schema_columns(str(SCHEMA)))
    measures.statistics_of_examples(examples[:10])
    assert quantiles_util.generate_equi_width_histogram is ewh.equi_width_histogram  # installed
    calls = []

    def counted(*args, **kwargs):  # TFDV passes them by name
        calls.append(kwargs)
        return ewh.equi_width_histogram(*args, **kwargs)

    monkeypatch.setattr(ewh, "install", lambda: None)
    monkeypatch.setattr(quantiles_util, "generate_equi_width_histogram", counted)
    ours = measures.statistics_of_examples(examples)
    assert len(calls) >= 10  # TFDV's statistics reach it through quantiles_util
    monkeypatch.setattr(quantiles_util, "generate_equi_width_histogram", tfdv_histogram)
    theirs = measures.statistics_of_examples(examples)
    standard = [
        h
        for f in ours.datasets[0].features
        for h in f.num_stats.histograms
        if h.type == h.STANDARD and len(h.buckets) == 10
    ]
    assert len(standard) >= 10
    assert ours.SerializeToString() == theirs.SerializeToString()


def test_install_replaces_tfdvs_function_and_the_local_run_installs_it(monkeypatch):
    import dill
    from apache_beam.transforms import core
    from tfx.orchestration.portable import cache_utils
    from tfx.utils import dependency_utils

    from pipeline.local import run

    monkeypatch.setattr(quantiles_util, "generate_equi_width_histogram", tfdv_histogram)
    # the local run's other fixes are put back after the test, as they were
    for module, name in (
        (cache_utils, "_get_outputs_of_execution"),
        (dependency_utils, "make_beam_dependency_flags"),
        (core, "get_function_args_defaults"),
        (dill.dill, "_trace"),
    ):
        monkeypatch.setattr(module, name, getattr(module, name))
    run.install_local_fixes()
    assert quantiles_util.generate_equi_width_histogram is ewh.equi_width_histogram
    ewh.install()  # idempotent
    assert quantiles_util.generate_equi_width_histogram is ewh.equi_width_histogram
