"""TFDV's equi-width histogram, the same numbers without its per-bucket Python loop.

Every numeric feature's statistics (StatisticsGen, the drift gate's baselines, `mlops data
check-skew`, the calibration benchmarks) carry a STANDARD histogram that TFDV 1.16 derives from
its quantiles sketch in `quantiles_util.generate_equi_width_histogram`: it first writes the
sketch as a QUANTILES histogram proto of 100 x num_quantiles_histogram_buckets buckets (10,000
with this project's 100 quantiles, data_stats/measures.py) and then, for each of the 10 output
buckets, walks those proto buckets in Python, one `_overlap` call each. That is ~0.1 s per
numeric feature whatever the row count: most of the time of a 1,000-row statistics of the taxi
columns (docs/performance.md, "seventh pass").

`equi_width_histogram` computes the same result: TFDV's `_strip_infinities`, then the bin
weights of `_get_bin_weights` without its Python loops (`bin_weights`), the overlap cases of
`_overlap` evaluated as arrays, and each output bucket's count accumulated in bucket order as
TFDV adds it, so the histogram is byte for byte TFDV's (tests/data_stats/
test_equi_width_histogram.py compares the two on generated sketches with repeated values, point
buckets and infinities, and on real statistics).

`install()` puts it in place of TFDV's function (idempotent). The local run installs it with its
other fixes (pipeline/local/run.py), the warm worker pool in every worker it forks, and
`measures.statistics_in_memory` before it computes statistics in memory.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tensorflow_data_validation.utils import quantiles_util
from tensorflow_metadata.proto.v0 import statistics_pb2

_tfdv_equi_width_histogram: Callable[..., statistics_pb2.Histogram] = (
    quantiles_util.generate_equi_width_histogram
)


def bin_weights(
    boundaries: np.ndarray, cumulative_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`quantiles_util._get_bin_weights` with its two Python loops over every bin as arrays:
    a run of bins with the same upper bound shares the run's weight evenly (the same `sum` of
    the same slice TFDV takes, so the same doubles), and the leading bins identical to the first
    share the first boundary's count."""
    cumulative = cumulative_counts.astype(np.float64)
    low, high = boundaries[:-1], boundaries[1:]
    counts = np.diff(cumulative)
    n = low.size
    if n == 0:
        return low, high, counts
    starts = np.flatnonzero(np.concatenate(([True], high[1:] != high[:-1])))
    ends = np.append(starts[1:], n)
    for start, end in zip(starts[ends - starts > 1], ends[ends - starts > 1], strict=True):
        counts[start:end] = counts[start:end].sum() / (end - start)
    same_as_first = (low == low[0]) & (high == high[0])
    leading = n if same_as_first.all() else int(np.argmin(same_as_first))
    if leading > 0:
        counts[0:leading] += cumulative[0] / leading
    return low, high, counts


def _overlaps(
    low: np.ndarray, high: np.ndarray, low_bound: float, high_bound: float, first: bool
) -> np.ndarray:
    """`quantiles_util._overlap`'s fraction of each bucket [low, high] inside the probe interval,
    its cases tried in its order. With sorted, non-NaN bounds (asserted by the caller, as by
    TFDV) every bucket falls in one of them."""
    width = high - low
    with np.errstate(divide="ignore", invalid="ignore"):  # point buckets never reach 4-6
        return np.select(
            [
                (high == low) & (low == low_bound),  # 0: a point on the left edge
                high < low_bound,  # 1: precedes
                low > high_bound,  # 2: follows
                (low_bound <= low) & (high_bound >= high),  # 3: contained
                low_bound <= low,  # 4: overlaps on the left
                high_bound >= high,  # 5: overlaps on the right
            ],
            [
                1.0 if first else 0.0,  # counted in the first interval only
                0.0,
                0.0,
                1.0,
                (high_bound - low) / width,
                (high - low_bound) / width,
            ],
            (high_bound - low_bound) / width,  # 6: inside
        )


def equi_width_histogram(
    quantiles: np.ndarray,
    cumulative_counts: np.ndarray,
    finite_min: float,
    finite_max: float,
    num_buckets: int,
    num_pos_inf: float,
) -> statistics_pb2.Histogram:
    """`quantiles_util.generate_equi_width_histogram`, same arguments, same histogram."""
    if not np.isfinite(finite_min) and not np.isfinite(finite_max):
        return _tfdv_equi_width_histogram(
            quantiles, cumulative_counts, finite_min, finite_max, num_buckets, num_pos_inf
        )
    assert np.isfinite(finite_min)
    assert np.isfinite(finite_max)
    assert np.all(quantiles[:-1] <= quantiles[1:])
    stripped, counts, num_neg_inf = quantiles_util._strip_infinities(
        quantiles, cumulative_counts, finite_max, num_pos_inf
    )
    low, high, weights = bin_weights(stripped, counts)
    # The proto TFDV walks holds these as doubles; compute on doubles as it does.
    low, high = low.astype(np.float64), high.astype(np.float64)
    weights = weights.astype(np.float64)
    if finite_min == finite_max:
        boundaries = np.array([finite_min, finite_max])
    else:
        boundaries = np.linspace(finite_min, finite_max, num_buckets + 1)
        if not np.isfinite(boundaries).all():
            return statistics_pb2.Histogram(type=statistics_pb2.Histogram.STANDARD)
    sample_counts = []
    for i in range(boundaries.size - 1):
        low_bound, high_bound = boundaries[i], boundaries[i + 1]
        # Buckets before `start` end before the interval; from `stop` on they begin after it.
        start = int(np.searchsorted(high, low_bound, side="left"))
        stop = int(np.searchsorted(low, high_bound, side="right"))
        if stop <= start:
            sample_counts.append(0)
            continue
        fractions = _overlaps(low[start:stop], high[start:stop], low_bound, high_bound, i == 0)
        # Added one by one in bucket order (cumsum is sequential), as TFDV's loop adds them.
        sample_counts.append(np.cumsum(fractions * weights[start:stop])[-1])
    result = statistics_pb2.Histogram(type=statistics_pb2.Histogram.STANDARD)
    if num_neg_inf:
        result.buckets.add(
            low_value=float("-inf"), high_value=float("-inf"), sample_count=num_neg_inf
        )
    for i, count in enumerate(sample_counts):
        result.buckets.add(
            low_value=boundaries[i], high_value=boundaries[i + 1], sample_count=count
        )
    if num_pos_inf:
        result.buckets.add(
            low_value=float("inf"), high_value=float("inf"), sample_count=num_pos_inf
        )
    return result


def install() -> None:
    """TFDV's statistics generators call `equi_width_histogram` from now on (idempotent)."""
    quantiles_util.generate_equi_width_histogram = equi_width_histogram
