"""The drift gate at the statistics level (no pipeline run): TFDV statistics of random samples of
span 1 against span 1's, through data_stats.compare.compare_statistics (the DriftValidator's and
DataGate's measures, with the committed schema and drift_measures.FEATURE_TESTS).

Same-distribution samples at every realistic size must pass (20 each); each deliberately
shifted sample must be stopped on the feature that was shifted.
"""

from __future__ import annotations

import math
import random

import pytest

from bench.drift_calibration import SHIFTS, Bench, read_rows
from data_stats import anomalies
from data_stats import compare as drift
from data_stats import measures as drift_measures
from tests import drift_samples as ds

SAMPLES = 20


@pytest.fixture(scope="module")
def bench() -> Bench:
    return Bench(read_rows(), seed=20261126)


def _gate(bench: Bench, rows) -> list[drift.Measurement]:
    _, found = drift.compare_statistics(bench.base, bench.stats(rows), bench.schema, "train")
    return found


# The larger sizes hold most of the statistics work (20 samples each): they run with the slow
# tests (`make test`, CI); `make test-fast` keeps the same claim at 1,000 rows.
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "size",
    [1000, pytest.param(3000, marks=pytest.mark.slow), pytest.param(15000, marks=pytest.mark.slow)],
)
def test_same_distribution_samples_pass_the_gate(bench, size):
    stopped = []
    for i in range(SAMPLES):
        found = _gate(bench, bench.sample(size, replace=True))
        assert {m.comparator for m in found} >= {drift_measures.KS, drift_measures.CHI_SQUARE}
        stopped += [f"sample {i}: {m}" for m in found if m.exceeded]
    assert stopped == []


# shift -> the smallest realistic size at which the calibration detects it every time
DETECTED_FROM = {
    "fare x1.3": 1000,
    "trip_seconds x1.3": 1000,
    "trip_miles x1.3": 1000,
    "hour +2": 3000,
    "card -> cash (half)": 1000,
    "new payment type (10%)": 1000,
    "largest company -50%": 1000,
    "Loop pickups -2/3": 1000,
}
# Features a shift moves besides its own (the Loop trips also start at other coordinates).
MOVED_TOGETHER = {"Loop pickups -2/3": {"pickup_latitude", "pickup_longitude"}}


@pytest.mark.parametrize("name", sorted(DETECTED_FROM))
def test_shifted_sample_is_stopped_on_the_shifted_feature(bench, name):
    key, shift = SHIFTS[name]
    rows = shift(bench.sample(DETECTED_FROM[name], replace=True), random.Random(7))

    fired = {m.feature for m in _gate(bench, rows) if m.exceeded}

    assert key in fired
    assert fired <= {key} | MOVED_TOGETHER.get(name, set()), fired


def test_continuous_training_fixture_spans_clean_passes_and_drifted_is_stopped(bench):
    """tests/pipeline/test_continuous_training.py's spans (400 rows): span 2 passes against span 1,
    the drifted span 3 is stopped on company (L-infinity), fare (Jensen-Shannon), trip_seconds."""
    rows = read_rows()
    span1 = rows[:: len(rows) // 400][:400]
    base = bench.stats(span1)
    span2 = bench.stats(ds.same_distribution_rows())
    _, clean = drift.compare_statistics(base, span2, bench.schema, "train")
    _, drifted = drift.compare_statistics(
        span2, bench.stats(ds.drifted_rows()), bench.schema, "train"
    )

    assert [m for m in clean if m.exceeded] == []
    by_feature = {m.feature: m for m in drifted if m.exceeded}  # as the slow test reads them
    assert {"company", "fare", "trip_seconds", "trip_start_hour", "trip_miles"} <= set(by_feature)
    assert by_feature["company"].comparator == "L-infinity"
    assert by_feature["fare"].comparator == "Jensen-Shannon"
    assert str(by_feature["company"]).endswith("> threshold 0.2 (DRIFT)")


def test_measurements_round_trip_through_the_drift_artifact(tmp_path, bench):
    """What the DriftValidator writes is what the DataGate and the run report read back."""
    key, shift = SHIFTS["fare x1.3"]
    new = bench.stats(shift(bench.sample(1000, replace=True), random.Random(1)))
    result, found = drift.compare_statistics(bench.base, new, bench.schema, "train")
    split_dir = tmp_path / "Split-train"
    drift.write_anomalies(str(split_dir / anomalies.ANOMALIES_FILE), result)
    drift.write_tests(str(split_dir / drift.TESTS_FILE), found)

    loaded = drift.load_measurements(str(tmp_path), ["train"])

    assert loaded == found
    ks = next(m for m in loaded if m.feature == key and m.comparator == drift_measures.KS)
    assert ks.exceeded and str(ks).startswith(f"[train] {key}: Kolmogorov-Smirnov distance ")
    assert str(ks).endswith("(DRIFT)")


# ---- the tests themselves -----------------------------------------------------------------------
def test_ks_distance_of_identical_quantiles_is_zero_and_of_disjoint_ones_is_one():
    a = [(0.0, 1.0, 0.5), (1.0, 2.0, 0.5)]
    assert drift_measures.ks_distance(a, a) == 0
    assert drift_measures.ks_distance(a, [(5.0, 6.0, 1.0)]) == pytest.approx(1.0)
    # a point mass at 0 against uniform mass on [0, 1]: sup |F1 - F2| = 1 at x = 0
    assert drift_measures.ks_distance([(0.0, 0.0, 1.0)], [(0.0, 1.0, 1.0)]) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
def test_chi_square_matches_scipy_on_random_tables(seed):
    from scipy.stats import chi2_contingency

    rng = random.Random(seed)
    a = {f"v{i}": rng.randint(20, 400) for i in range(6)}
    b = {f"v{i}": rng.randint(20, 400) for i in range(6)}
    chi2, dof = drift_measures.chi_square(a, b)
    expected = chi2_contingency([list(a.values()), list(b.values())], correction=False)
    assert chi2 == pytest.approx(expected.statistic) and dof == expected.dof


def test_thresholds_shrink_with_sample_size_but_not_below_the_floor():
    test = drift_measures.FeatureTest()
    small = drift_measures.ks_critical(test.alpha, 1000, 15000)
    large = drift_measures.ks_critical(test.alpha, 15000, 15000)
    assert small > large
    assert small == pytest.approx(
        math.sqrt(-0.5 * math.log(test.alpha / 2)) * math.sqrt(16 / 15000)
    )
    assert drift_measures.cramers_v_critical(test.alpha, 3, 1e9) < test.min_distance


def test_every_model_feature_is_tested(bench):
    from modules import features

    found = _gate(bench, bench.sample(1000, replace=True))
    tested = {m.feature for m in found if m.comparator in drift_measures.TESTS}
    # pickup_census_tract is nearly always empty in span 1: tested only when a sample has a value
    assert set(features.RAW_FEATURE_KEYS) - {"pickup_census_tract"} <= tested
    assert tested <= set(features.RAW_FEATURE_KEYS)
