"""Sample-size-aware drift and skew tests computed from two TFDV statistics protos.

TFDV's comparators use fixed thresholds whatever the sample sizes, and its numeric divergence
misreads long tails; so every model feature also gets a two-sample test on TFDV's own
statistics (Kolmogorov-Smirnov on numeric quantiles, chi-square as Cramer's V on categorical
counts) that fires only beyond sampling noise and a practical floor. Why and how it was
calibrated: docs/design.md and docs/continuous_training.md; per-feature settings: FEATURE_TESTS.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping

from tensorflow_metadata.proto.v0 import statistics_pb2

from modules import features

KS = "Kolmogorov-Smirnov"
CHI_SQUARE = "chi-square (Cramer's V)"
TESTS = (KS, CHI_SQUARE)
# Rare values are pooled until every cell expects at least this many rows (chi-square's rule).
MIN_EXPECTED = 5.0
# Quantiles of the numeric features: percentiles, with a sketch error well below the KS noise
# of two 15k-row samples (0.02). TFDV's defaults (deciles, 1% error) are too coarse for a CDF.
NUM_QUANTILES = 100
QUANTILES_EPSILON = 0.001


@dataclasses.dataclass(frozen=True)
class FeatureTest:
    """How one feature is tested: stop when the distance exceeds the larger of `min_distance`
    (the smallest shift worth stopping for) and the critical value at significance `alpha`."""

    alpha: float = 1e-3
    min_distance: float = 0.03


def feature_tests(spec) -> dict[str, FeatureTest]:
    """Every raw model input of a dataset spec, with the spec's `drift` settings."""
    out = {}
    for key in spec.raw_feature_keys:
        test = spec.drift_test(key)
        out[key] = FeatureTest(alpha=test.alpha, min_distance=test.min_distance)
    return out


def tests_config(spec) -> str:
    """feature_tests(spec) as the JSON text the DriftValidator takes as a parameter."""
    return json.dumps({k: dataclasses.asdict(t) for k, t in feature_tests(spec).items()})


def tests_from_config(text: str) -> dict[str, FeatureTest] | None:
    """The inverse of tests_config ('' -> None: the default dataset's FEATURE_TESTS)."""
    if not text:
        return None
    return {k: FeatureTest(**v) for k, v in json.loads(text).items()}


# Every raw model input can drift. alpha 1e-3 per feature: over the 15 features about 1.5% of same-
# distribution spans are stopped by chance (measured: 1 of 100 calibration samples, 0 of 60 in
# tests/data_stats/test_measures.py; docs/continuous_training.md). Lower a feature's alpha to make
# it quieter (it then needs a larger shift to fire): the dataset spec's `drift` section.
FEATURE_TESTS: dict[str, FeatureTest] = feature_tests(features.SPEC)


def statistics_options(**overrides):
    """tfdv.StatsOptions for every statistics these tests read (StatisticsGen, check-skew,
    benchmarks, tests): percentiles at a 0.1% rank error instead of TFDV's deciles at 1%."""
    import tensorflow_data_validation as tfdv

    settings = {
        "num_quantiles_histogram_buckets": NUM_QUANTILES,
        "epsilon": QUANTILES_EPSILON,
    }
    settings.update(overrides)
    return tfdv.StatsOptions(**settings)


@dataclasses.dataclass(frozen=True)
class TestResult:
    feature: str
    test: str
    distance: float
    threshold: float
    rows: tuple[int, int]


def _features(stats: statistics_pb2.DatasetFeatureStatisticsList) -> dict[str, object]:
    if not stats.datasets:
        return {}
    out = {}
    for f in stats.datasets[0].features:
        name = ".".join(f.path.step) if f.HasField("path") else f.name
        out[name] = f
    return out


# ---- numeric: Kolmogorov-Smirnov on the quantiles histograms ---------------------------------
def _quantile_buckets(num_stats) -> list[tuple[float, float, float]]:
    quantiles = statistics_pb2.Histogram.HistogramType.QUANTILES
    for h in num_stats.histograms:
        if h.type == quantiles:
            buckets = [(b.low_value, b.high_value, b.sample_count) for b in h.buckets]
            total = sum(c for _, _, c in buckets)
            if total > 0:
                return [(lo, hi, c / total) for lo, hi, c in buckets]
    return []


def quantile_resolution(stats: statistics_pb2.DatasetFeatureStatisticsList) -> int | None:
    """The number of quantile buckets the statistics were generated with (None: no numeric
    feature), so statistics compared with them can be generated alike (check-skew)."""
    for f in _features(stats).values():
        if f.HasField("num_stats"):
            buckets = _quantile_buckets(f.num_stats)
            if buckets:
                return len(buckets)
    return None


def _cdf(buckets: list[tuple[float, float, float]], x: float, left: bool) -> float:
    """P(X <= x) (P(X < x) when `left`), mass spread evenly inside each quantile bucket and a
    bucket with low == high taken as a point mass."""
    total = 0.0
    for lo, hi, c in buckets:
        if hi < x or (hi == x and not left) or (hi == x and lo < hi):
            total += c
        elif lo < x:
            total += c * (x - lo) / (hi - lo)
    return total


def ks_distance(a: list[tuple[float, float, float]], b: list[tuple[float, float, float]]) -> float:
    """sup |Fa - Fb| over every bucket boundary (both CDFs are piecewise linear between them,
    with jumps at point masses, so the supremum is at a boundary or just left of one). Both sides
    must come from the same quantile resolution: TFDV's bucket counts at another resolution put
    tied values in other buckets (deciles against percentiles of the same data measure 0.05-0.2)."""
    points = sorted({v for lo, hi, _ in a + b for v in (lo, hi) if math.isfinite(v)})
    return max(
        (abs(_cdf(a, x, left) - _cdf(b, x, left)) for x in points for left in (False, True)),
        default=0.0,
    )


def ks_critical(alpha: float, n: int, m: int) -> float:
    """Two-sample KS critical value (asymptotic; conservative for discrete data)."""
    return math.sqrt(-0.5 * math.log(alpha / 2)) * math.sqrt((n + m) / (n * m))


# ---- categorical: chi-square homogeneity on the rank histograms ------------------------------
OTHER = "\x00other"


def _value_counts(string_stats, rows: int) -> dict[str, float]:
    """Value -> count from TFDV's rank histogram (all values up to its 1,000 buckets); what it
    leaves out is one OTHER cell."""
    buckets = string_stats.rank_histogram.buckets or string_stats.top_values
    counts: dict[str, float] = {}
    for b in buckets:
        label = b.label if hasattr(b, "label") else b.value
        counts[label] = counts.get(label, 0.0) + (
            b.sample_count if hasattr(b, "sample_count") else b.frequency
        )
    rest = rows - sum(counts.values())
    if rest >= 0.5:
        counts[OTHER] = counts.get(OTHER, 0.0) + rest
    return counts


def chi_square(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[float, int]:
    """(chi2, degrees of freedom) of the 2 x K table, values expected below MIN_EXPECTED rows in
    either sample pooled into one cell."""
    n, m = sum(a.values()), sum(b.values())
    total = n + m
    if n <= 0 or m <= 0:
        return 0.0, 0
    columns = []
    pooled = [0.0, 0.0]
    for value in sorted(set(a) | set(b)):
        x, y = a.get(value, 0.0), b.get(value, 0.0)
        if (x + y) * min(n, m) / total < MIN_EXPECTED:
            pooled[0] += x
            pooled[1] += y
        else:
            columns.append((x, y))
    if pooled[0] + pooled[1] > 0:
        columns.append(tuple(pooled))
    if len(columns) < 2:
        return 0.0, 0
    chi2 = 0.0
    for x, y in columns:
        col = x + y
        for observed, row in ((x, n), (y, m)):
            expected = row * col / total
            chi2 += (observed - expected) ** 2 / expected
    return chi2, len(columns) - 1


def cramers_v_critical(alpha: float, dof: int, rows: float) -> float:
    from scipy.stats import chi2

    return math.sqrt(chi2.ppf(1 - alpha, dof) / rows) if dof > 0 else 1.0


# ---- both ------------------------------------------------------------------------------------
def compare(
    base: statistics_pb2.DatasetFeatureStatisticsList,
    new: statistics_pb2.DatasetFeatureStatisticsList,
    tests: Mapping[str, FeatureTest] | None = None,
) -> list[TestResult]:
    """One result per tested feature present with values on both sides, sorted by feature."""
    tests = FEATURE_TESTS if tests is None else tests
    base_features, new_features = _features(base), _features(new)
    out = []
    for name in sorted(tests):
        fa, fb = base_features.get(name), new_features.get(name)
        if fa is None or fb is None:
            continue
        result = _compare_feature(name, fa, fb, tests[name])
        if result is not None:
            out.append(result)
    return out


def _compare_feature(name: str, fa, fb, test: FeatureTest) -> TestResult | None:
    if fa.HasField("num_stats") and fb.HasField("num_stats"):
        n = int(fa.num_stats.common_stats.num_non_missing)
        m = int(fb.num_stats.common_stats.num_non_missing)
        qa, qb = _quantile_buckets(fa.num_stats), _quantile_buckets(fb.num_stats)
        if not (n and m and qa and qb):
            return None
        critical = ks_critical(test.alpha, n, m)
        return TestResult(name, KS, ks_distance(qa, qb), max(test.min_distance, critical), (n, m))
    if fa.HasField("string_stats") and fb.HasField("string_stats"):
        n = int(fa.string_stats.common_stats.num_non_missing)
        m = int(fb.string_stats.common_stats.num_non_missing)
        if not (n and m):
            return None
        chi2, dof = chi_square(_value_counts(fa.string_stats, n), _value_counts(fb.string_stats, m))
        critical = cramers_v_critical(test.alpha, dof, n + m)
        distance = math.sqrt(chi2 / (n + m))
        return TestResult(name, CHI_SQUARE, distance, max(test.min_distance, critical), (n, m))
    return None


# ---- statistics of tf.Examples, in memory ----------------------------------------------------
def statistics_in_memory(batch, options=None) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV's statistics of one Arrow RecordBatch, in this process (no Beam), with TFDV's
    equi-width histograms computed as arrays (data_stats/equi_width_histogram.py: the same
    numbers, ~0.1 s less per numeric feature)."""
    from tensorflow_data_validation.statistics import stats_impl

    from data_stats import equi_width_histogram

    equi_width_histogram.install()
    return stats_impl.generate_statistics_in_memory(batch, options or statistics_options())


def statistics_of_examples(
    serialized: Iterable[bytes], options=None
) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV statistics of serialized tf.Examples, decoded as StatisticsGen decodes them (tfx_bsl's
    example decoder), in memory: check-skew's logged requests, benchmarks and tests."""
    from tfx_bsl.coders import example_coder

    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(list(serialized))
    return statistics_in_memory(batch, options)


def examples_from_rows(
    rows: Iterable[Mapping[str, str]], column_types: Mapping[str, str]
) -> list[bytes]:
    """CSV rows (strings) as serialized tf.Examples the way CsvExampleGen writes them: INT ->
    int64_list, FLOAT -> float_list, BYTES -> bytes_list, an empty value -> feature left out."""
    from tensorflow.core.example import example_pb2

    out = []
    for row in rows:
        ex = example_pb2.Example()
        for key, kind in column_types.items():
            value = row.get(key, "")
            if value is None or value == "":
                continue
            feature = ex.features.feature[key]
            if kind == "INT":
                feature.int64_list.value.append(int(value))
            elif kind == "FLOAT":
                feature.float_list.value.append(float(value))
            else:
                feature.bytes_list.value.append(str(value).encode())
        out.append(ex.SerializeToString())
    return out
