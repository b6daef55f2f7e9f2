"""Prometheus metrics and the access log, shared by both protocol adapters.

A private registry keeps test processes and multiple servers from colliding. Model labels only
take names the repository knows (unknown names count as "unknown"), so a client cannot blow up
the label cardinality by asking for made-up models.

Everything a rollout is judged on is labelled by model_name and version: requests and errors
(`tfserving_request_count_total`, errors are `status!="OK"`), latency
(`tfserving_request_latency_seconds`), and the predicted scores
(`tfserving_prediction_score`). `tfserving_model_version_label` maps TF Serving's version labels
(stable, canary, ...) to versions, so alert rules and dashboards select a label by joining on it
(deploy/monitoring/, docs/monitoring.md).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: N811
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

access_log = logging.getLogger("serving.access")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))  # 0.05 ... 1.0
# Outputs read as "the predicted score", first match wins: predict's probabilities, the positive
# (last) class of classify's scores, regress's outputs. Other outputs are not scores.
SCORE_OUTPUTS = ("probabilities", "scores", "outputs")


def score_column(outputs: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The per-row predicted score of a response (see SCORE_OUTPUTS), or None."""
    for name in SCORE_OUTPUTS:
        arr = outputs.get(name)
        if arr is not None and arr.dtype.kind == "f" and arr.ndim in (1, 2) and arr.size:
            return arr if arr.ndim == 1 else arr[:, -1]
    return None


class _BulkHistogram:
    """A labelled histogram fed a whole response at a time: one numpy pass per response
    instead of one locked observe() per row (a 1000-row batch would cost milliseconds)."""

    def __init__(self, name: str, documentation: str, labels: list[str], buckets: tuple) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self._edges = np.asarray(buckets, dtype=np.float64)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, ...], list] = {}  # labels -> [bucket counts, sum]

    def observe_many(self, label_values: tuple[str, ...], values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        if not values.size:
            return
        counts = np.bincount(np.searchsorted(self._edges, values), minlength=len(self._edges) + 1)
        with self._lock:
            entry = self._series.setdefault(label_values, [np.zeros(len(self._edges) + 1), 0.0])
            entry[0] += counts
            entry[1] += float(values.sum())

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labels)

    def describe(self):
        yield self._family()

    def collect(self):
        family = self._family()
        with self._lock:
            series = [(k, v[0].copy(), v[1]) for k, v in self._series.items()]
        for label_values, counts, total in series:
            cumulative = np.cumsum(counts)
            buckets = [
                (repr(float(e)), float(c)) for e, c in zip(self._edges, cumulative, strict=False)
            ]
            buckets.append(("+Inf", float(cumulative[-1])))
            family.add_metric(list(label_values), buckets, total)
        yield family


class _VersionLabels:
    """tfserving_model_version_label{model_name, version, label} 1 for each configured label,
    read from the live config at scrape time (labels change on config reload)."""

    def __init__(self, version_labels: Callable[[], Mapping[str, Mapping[str, int]]]) -> None:
        self._labels = version_labels

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "tfserving_model_version_label",
            "1 for each TF Serving version label (model config version_labels) and its version.",
            labels=["model_name", "version", "label"],
        )

    def describe(self):
        yield self._family()

    def collect(self):
        family = self._family()
        for model, labels in sorted(self._labels().items()):
            for label, version in sorted(labels.items()):
                family.add_metric([model, str(version), label], 1)
        yield family


class Metrics:
    def __init__(
        self,
        known_models: Callable[[], Iterable[str]] = lambda: (),
        version_labels: Callable[[], Mapping[str, Mapping[str, int]]] = dict,
    ) -> None:
        self.registry = CollectorRegistry()
        self._known = known_models
        self.requests = Counter(
            "tfserving_request_count",
            "Requests by model, version, API method, protocol and status code.",
            ["model_name", "version", "method", "protocol", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tfserving_request_latency_seconds",
            "Server-side request latency.",
            ["model_name", "version", "method", "protocol"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "tfserving_batch_size",
            "Examples per model call after dynamic batching.",
            ["model_name", "version", "signature"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.version_state = Gauge(
            "tfserving_model_version_state",
            "ModelVersionStatus.State of each known version (30 = AVAILABLE, 50 = END).",
            ["model_name", "version"],
            registry=self.registry,
        )
        self.scores = _BulkHistogram(
            "tfserving_prediction_score",
            "Predicted score per row (probabilities, positive-class scores, regress outputs).",
            ["model_name", "version"],
            SCORE_BUCKETS,
        )
        self.registry.register(self.scores)
        self.registry.register(_VersionLabels(version_labels))
        self.warmup_records = Counter(
            "tfserving_model_warmup_requests",
            "Warmup requests replayed (assets.extra/tf_serving_warmup_requests) before AVAILABLE.",
            ["model_name", "version"],
            registry=self.registry,
        )
        self.warmup_seconds = Gauge(
            "tfserving_model_warmup_seconds",
            "Time spent replaying a version's warmup requests.",
            ["model_name", "version"],
            registry=self.registry,
        )
        self.access_log_enabled = False
        # (model, version, method, protocol, status) -> (request counter, latency histogram)
        # children; bounded like the labels themselves (known model names only).
        self._children: dict[tuple[str, ...], tuple] = {}

    def model_label(self, name: str) -> str:
        return name if name in self._known() else "unknown"

    def observe(
        self,
        protocol: str,
        method: str,
        model: str,
        version: int | None,
        status: str,
        started: float,
        detail: str = "",
    ) -> None:
        elapsed = time.perf_counter() - started
        model = self.model_label(model)
        v = str(version) if version is not None else ""
        key = (model, v, method, protocol, status)
        children = self._children.get(key)
        if children is None:  # labels() validates and locks: once per series, not per request
            children = self._children[key] = (
                self.requests.labels(model, v, method, protocol, status),
                self.latency.labels(model, v, method, protocol),
            )
        children[0].inc()
        children[1].observe(elapsed)
        if self.access_log_enabled:
            access_log.info(
                "%s %s model=%s version=%s status=%s latency_ms=%.2f %s",
                protocol,
                method,
                model,
                v or "-",
                status,
                elapsed * 1e3,
                detail,
            )

    def on_batch(self, key: tuple, size: int) -> None:
        servable, signature = key[0], key[1]
        self.batch_size.labels(servable.name, str(servable.version), signature).observe(size)

    def on_outputs(self, servable, outputs: Mapping[str, np.ndarray]) -> None:
        """Record a response's predicted scores under its model and version."""
        scores = score_column(outputs)
        if scores is not None:
            self.scores.observe_many((servable.name, str(servable.version)), scores)

    def on_warmup(self, servable, result) -> None:
        """serving.warmup.WarmupResult of a version that has just been warmed up."""
        labels = (servable.name, str(servable.version))
        self.warmup_records.labels(*labels).inc(result.records)
        self.warmup_seconds.labels(*labels).set(result.seconds)

    def on_version_state(self, model: str, version: int, state: int) -> None:
        self.version_state.labels(model, str(version)).set(state)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def enable_access_log(self, target: str, with_pid: bool = False) -> None:
        """`-` logs to stderr, anything else is a file path (appended). `with_pid`: each line
        names the process that answered (`--workers` N > 1 share one log)."""
        handler = (
            logging.StreamHandler(sys.stderr) if target == "-" else logging.FileHandler(target)
        )
        fmt = "%(asctime)s pid=%(process)d %(message)s" if with_pid else "%(asctime)s %(message)s"
        handler.setFormatter(logging.Formatter(fmt))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
        access_log.propagate = False
        self.access_log_enabled = True


__all__ = [
    "CONTENT_TYPE",
    "SCORE_BUCKETS",
    "Metrics",
    "score_column",
]
