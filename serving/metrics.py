"""Prometheus metrics and the access log, shared by both protocol adapters.

A private registry keeps test processes and multiple servers from colliding. Model labels only
take names the repository knows (unknown names count as "unknown"), so a client cannot blow up
the label cardinality by asking for made-up models.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: N811
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

access_log = logging.getLogger("serving.access")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self, known_models: Callable[[], Iterable[str]] = lambda: ()) -> None:
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
        self.access_log_enabled = False

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
        self.requests.labels(model, v, method, protocol, status).inc()
        self.latency.labels(model, v, method, protocol).observe(elapsed)
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

    def on_version_state(self, model: str, version: int, state: int) -> None:
        self.version_state.labels(model, str(version)).set(state)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def enable_access_log(self, target: str) -> None:
        """`-` logs to stderr, anything else is a file path (appended)."""
        handler = (
            logging.StreamHandler(sys.stderr) if target == "-" else logging.FileHandler(target)
        )
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
        access_log.propagate = False
        self.access_log_enabled = True


__all__ = ["CONTENT_TYPE", "Metrics"]
