"""One skew check of the request window per served version, and its Prometheus metrics.

Every check compares the window's statistics with each served version's training statistics using
`monitoring.skew_check.skew_of_examples`, the measures of `mlops data check-skew` (the schema's skew
comparators and the sample-size-aware Kolmogorov-Smirnov / chi-square tests), and replaces the
exported snapshot in one step, so a scrape never sees half a check. Series:

    mlops_feature_skew_distance{model_name, version, feature, comparator}
    mlops_feature_skew_threshold{model_name, version, feature, comparator}
    mlops_skew_monitor_window_rows{model_name}                 requests in the window
    mlops_skew_monitor_last_check_timestamp_seconds{model_name} start of the last completed check
    mlops_skew_monitor_skipped_records_total{model_name}       unreadable log records
    mlops_skew_monitor_check_errors_total{model_name}          checks that could not run

The threshold is per version: the tests' thresholds depend on both row counts.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily

from monitoring.baseline import BaselineError, TrainingStatistics, served_versions
from monitoring.request_window import RequestWindow
from monitoring.skew_check import skew_of_examples

log = logging.getLogger(__name__)

# The schema's skew_comparator distance of logged requests vs the served version's training data,
# and the threshold it is judged against, both labelled model_name, version, feature, comparator.
# The alert rules read the threshold from the metric: the schema stays the one place thresholds
# live.
SKEW_DISTANCE_METRIC = "mlops_feature_skew_distance"
SKEW_THRESHOLD_METRIC = "mlops_feature_skew_threshold"
WINDOW_ROWS_METRIC = "mlops_skew_monitor_window_rows"
LAST_CHECK_METRIC = "mlops_skew_monitor_last_check_timestamp_seconds"
SKIPPED_METRIC = "mlops_skew_monitor_skipped_records"  # _total appended by prometheus-client
ERRORS_METRIC = "mlops_skew_monitor_check_errors"
# data_stats.compare.Measurement.comparator -> the `comparator` label: TFDV's schema field
# names for its comparators, snake case for the sample-size-aware tests.
COMPARATOR_LABELS = {
    "Kolmogorov-Smirnov": "kolmogorov_smirnov",
    "chi-square (Cramer's V)": "cramers_v",
    "L-infinity": "infinity_norm",
    "Jensen-Shannon": "jensen_shannon_divergence",
    "normalized abs difference": "normalized_abs_difference",
}


def comparator_label(name: str) -> str:
    return COMPARATOR_LABELS.get(name, name.lower().replace(" ", "_"))


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """One check: window rows, per version the skew measurements (data_stats.compare.Measurement)
    and request anomalies; `measured` is False when the window held fewer than min_rows."""

    time: float
    rows: int
    measured: bool
    skew: dict[str, list]
    anomalies: dict[str, list]
    statistics: dict[str, str]

    @property
    def skewed(self) -> dict[str, list]:
        return {v: [m for m in found if m.exceeded] for v, found in self.skew.items()}


class SkewMonitor:
    """The request window against each served version's training statistics."""

    def __init__(
        self,
        window: RequestWindow,
        baseline: TrainingStatistics,
        schema,
        model_name: str,
        *,
        server: str | None = None,
        versions: tuple[str, ...] = (),
        min_rows: int = 1,
    ) -> None:
        self.window, self.baseline, self.schema = window, baseline, schema
        self.model_name, self.server, self.versions = model_name, server, tuple(versions)
        self.min_rows = min_rows
        self.last: CheckResult | None = None
        self._lock = threading.Lock()
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        self._skipped = Counter(
            SKIPPED_METRIC, "Unreadable request log records skipped", labels, registry=self.registry
        ).labels(model_name)
        self._errors = Counter(
            ERRORS_METRIC, "Skew checks that could not run", labels, registry=self.registry
        ).labels(model_name)
        self._skipped_seen = 0
        self.registry.register(self)

    # ---- one check ---------------------------------------------------------------------------
    def check(self) -> CheckResult:
        """Read the new requests, compare the window with every served version's training
        statistics, publish the result. Raises BaselineError (counted) when it cannot."""

        started = time.time()  # the check covers what was logged until now
        try:
            new = self.window.update()
            self._count_skipped()
            versions = self.versions or tuple(served_versions(self.server, self.model_name))
            rows = len(self.window.examples)
            last = self.last
            if not new and last is not None and last.measured and tuple(last.skew) == versions:
                # Nothing logged since: the same window, the same answer (no TFDV pass).
                result = dataclasses.replace(last, time=started)
                with self._lock:
                    self.last = result
                return result
            skew, anomalies, statistics = {}, {}, {}
            measured = rows >= self.min_rows
            if measured:
                examples = list(self.window.examples)
                for version in versions:
                    path, training = self.baseline.for_version(version)
                    statistics[version] = path
                    skew[version], anomalies[version] = skew_of_examples(
                        examples, training, self.schema
                    )
        except BaselineError:
            self._errors.inc()
            raise
        except Exception as e:  # noqa: BLE001 - a check fails, the monitor goes on
            self._errors.inc()
            raise BaselineError(f"{type(e).__name__}: {e}") from e
        result = CheckResult(started, rows, measured, skew, anomalies, statistics)
        with self._lock:
            self.last = result
        return result

    def _count_skipped(self) -> None:
        new = self.window.skipped - self._skipped_seen
        if new > 0:
            self._skipped.inc(new)
            self._skipped_seen = self.window.skipped

    # ---- prometheus-client collector ----------------------------------------------------------
    def describe(self):
        return []

    def collect(self):
        with self._lock:
            result = self.last
        labels = ["model_name", "version", "feature", "comparator"]
        distance = GaugeMetricFamily(
            SKEW_DISTANCE_METRIC,
            "Distance between the live request window and the served version's training data",
            labels=labels,
        )
        threshold = GaugeMetricFamily(
            SKEW_THRESHOLD_METRIC,
            "The distance beyond which the feature counts as skewed (schema comparator or test)",
            labels=labels,
        )
        rows = GaugeMetricFamily(
            WINDOW_ROWS_METRIC, "Readable requests in the window", labels=["model_name"]
        )
        last = GaugeMetricFamily(
            LAST_CHECK_METRIC, "Unix time of the last completed check", labels=["model_name"]
        )
        if result is not None:
            for version, found in result.skew.items():
                for m in found:
                    key = [self.model_name, version, m.feature, comparator_label(m.comparator)]
                    distance.add_metric(key, m.distance)
                    threshold.add_metric(key, m.threshold)
            rows.add_metric([self.model_name], result.rows)
            last.add_metric([self.model_name], result.time)
        yield from (distance, threshold, rows, last)
