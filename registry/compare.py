"""Is the canary worse than stable? The model server's per-version metrics, judged once.

`mlops models compare stable canary` reads what the alert rules read
(deploy/monitoring/alerts.yml, `CanaryWorseThanStable`): per version, the inference requests and
their failures (`tfserving_request_count_total`, every non-OK status), the latency histogram
(`tfserving_request_latency_seconds_bucket`) and the predicted-score histogram
(`tfserving_prediction_score_*`), either straight from a server's Prometheus endpoint (totals
since it started) or from a Prometheus server (`increase()` over a window, summed over replicas).

The three thresholds the alert rules also use have their defaults here and nowhere else in
Python; tests/serving/test_canary.py checks that alerts.yml carries the same numbers. Two checks are
this command's own, because a one-off comparison has no `for:` duration to wait out noise:
a latency floor (the canary's p99 must also be `p99_min_delta_ms` slower) and a sample-size-aware
Kolmogorov-Smirnov test on the two score histograms (data_stats/measures.py's critical value).
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from data_stats.measures import ks_critical

# Inference methods: the alert rules' `method=~"predict|classify|regress|multi_inference"`.
INFERENCE_METHODS = ("predict", "classify", "regress", "multi_inference")
REQUESTS = "tfserving_request_count_total"
LATENCY_BUCKET = "tfserving_request_latency_seconds_bucket"
SCORE_BUCKET = "tfserving_prediction_score_bucket"
SCORE_SUM = "tfserving_prediction_score_sum"
SCORE_COUNT = "tfserving_prediction_score_count"
VERSION_LABEL = "tfserving_model_version_label"


class CompareError(Exception):
    """The comparison could not be made (no metrics, unknown label, too little traffic)."""


@dataclass(frozen=True)
class Thresholds:
    """When the canary counts as worse. The first three are the alert rules' thresholds."""

    # canary's failure ratio (every non-OK answer) > stable's + this (alerts.yml: `> 0.01`)
    max_failure_ratio_increase: float = 0.01
    # canary's p99 latency > this x stable's (alerts.yml: `> 1.5 *`) ...
    max_p99_ratio: float = 1.5
    # |canary's mean score - stable's| > this (alerts.yml: `> 0.1`)
    max_mean_score_shift: float = 0.1
    # ... and at least this many ms slower (below it, bucket width and scheduling noise)
    p99_min_delta_ms: float = 10.0
    # KS distance of the score histograms > max(this, the critical value at alpha)
    max_score_ks: float = 0.1
    # significance of the KS test and of the p99 tail test (more than 1% of the canary's
    # requests slower than the p99 limit, by a one-sided binomial test)
    alpha: float = 1e-3
    # fewer inference requests than this on either side: not enough traffic to compare
    min_requests: int = 100


@dataclass
class VersionFigures:
    requests: float = 0.0
    failures: float = 0.0
    latency: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    scores: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    score_sum: float = 0.0
    score_count: float = 0.0


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' histogram_quantile on cumulative buckets (le -> count, +Inf included)."""
    edges = sorted(buckets)
    if not edges or not math.isinf(edges[-1]):
        return None
    total = buckets[edges[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for le in edges:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return lower  # in the +Inf bucket: the largest finite bound, as Prometheus
            if count == below:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


def histogram_cdf(buckets: Mapping[float, float], x: float) -> float:
    """P(X <= x) from cumulative buckets, linear inside a bucket (as histogram_quantile)."""
    total = buckets.get(math.inf, 0.0)
    if total <= 0:
        return 0.0
    lower, below = 0.0, 0.0
    for le in sorted(buckets):
        count = buckets[le]
        if x < le:
            if math.isinf(le):
                return below / total
            return (below + (count - below) * (x - lower) / (le - lower)) / total
        lower, below = le, count
    return 1.0


def slow_tail_p_value(buckets: Mapping[float, float], limit: float, q: float = 0.99) -> float:
    """One-sided binomial p-value of 'more than 1 - q of these requests took over `limit`'."""
    from scipy.stats import binom

    n = buckets.get(math.inf, 0.0)
    above = round(n * (1 - histogram_cdf(buckets, limit)))
    if n <= 0 or above <= 0:
        return 1.0
    return float(binom.sf(above - 1, round(n), 1 - q))


def histogram_ks(a: Mapping[float, float], b: Mapping[float, float]) -> float:
    """sup |Fa - Fb| over the bucket bounds of two cumulative histograms with the same buckets
    (exact for binned data: both CDFs are only known at the bounds)."""
    na, nb = a.get(math.inf, 0.0), b.get(math.inf, 0.0)
    if na <= 0 or nb <= 0:
        return 0.0
    return max(abs(a.get(le, 0.0) / na - b.get(le, 0.0) / nb) for le in set(a) | set(b))


def figures_by_version(samples: Iterable[Sample], model: str) -> dict[str, VersionFigures]:
    out: dict[str, VersionFigures] = {}
    for s in samples:
        if s.labels.get("model_name", model) != model or not s.labels.get("version"):
            continue
        f = out.setdefault(s.labels["version"], VersionFigures())
        method = s.labels.get("method")
        if s.name in (REQUESTS, LATENCY_BUCKET) and method not in INFERENCE_METHODS:
            continue
        if s.name == REQUESTS:
            f.requests += s.value
            if s.labels.get("status") != "OK":
                f.failures += s.value
        elif s.name == LATENCY_BUCKET:
            le = float(s.labels["le"])
            f.latency[le] = f.latency.get(le, 0.0) + s.value
        elif s.name == SCORE_BUCKET:
            le = float(s.labels["le"])
            f.scores[le] = f.scores.get(le, 0.0) + s.value
        elif s.name == SCORE_SUM:
            f.score_sum += s.value
        elif s.name == SCORE_COUNT:
            f.score_count += s.value
    return out


def labels_from(samples: Iterable[Sample], model: str) -> dict[str, str]:
    return {
        s.labels["label"]: s.labels["version"]
        for s in samples
        if s.name == VERSION_LABEL and s.labels.get("model_name") == model and s.value > 0
    }


# ---- sources -------------------------------------------------------------------------------
def _get(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        raise CompareError(f"{url} answered HTTP {e.code}") from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise CompareError(f"no metrics at {url}: {reason}") from None


def server_samples(server: str, metrics_path: str, timeout: float = 10.0) -> list[Sample]:
    """Everything the model server's Prometheus endpoint exports now."""

    base = server if "://" in server else f"http://{server}"
    url = base.rstrip("/") + metrics_path
    text = _get(url, timeout).decode("utf-8", errors="replace")
    try:
        return [
            Sample(s.name, s.labels, s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]
    except ValueError as e:
        raise CompareError(f"{url} is not a Prometheus exposition: {e}") from None


def prometheus_samples(
    url: str, model: str, window: str | None, timeout: float = 10.0
) -> list[Sample]:
    """The same series from a Prometheus server: increase() over `window` (else the current
    totals), summed over replicas and protocols."""
    selector = f'{{model_name="{model}"}}'
    inference = f'{{model_name="{model}", method=~"{"|".join(INFERENCE_METHODS)}"}}'

    def over(metric: str, sel: str) -> str:
        return f"increase({metric}{sel}[{window}])" if window else f"{metric}{sel}"

    queries = {
        REQUESTS: f"sum by (version, method, status) ({over(REQUESTS, inference)})",
        LATENCY_BUCKET: f"sum by (version, method, le) ({over(LATENCY_BUCKET, inference)})",
        SCORE_BUCKET: f"sum by (version, le) ({over(SCORE_BUCKET, selector)})",
        SCORE_SUM: f"sum by (version) ({over(SCORE_SUM, selector)})",
        SCORE_COUNT: f"sum by (version) ({over(SCORE_COUNT, selector)})",
        VERSION_LABEL: f"max by (version, label) ({VERSION_LABEL}{selector})",
    }
    base = url if "://" in url else f"http://{url}"
    out = []
    for name, query in queries.items():
        api = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
        try:
            body = json.loads(_get(api, timeout))
        except ValueError:
            raise CompareError(f"{base} did not answer a Prometheus query with JSON") from None
        if body.get("status") != "success":
            raise CompareError(f"Prometheus at {base} refused {query}: {body.get('error')}")
        for r in body["data"]["result"]:
            value = float(r["value"][1])
            if math.isfinite(value):
                out.append(Sample(name, {**r["metric"], "model_name": model}, value))
    return out


# ---- the comparison ------------------------------------------------------------------------
@dataclass
class Signal:
    name: str
    baseline: float | None
    candidate: float | None
    limit: str
    worse: bool | None  # None: not measurable (e.g. no scores)


@dataclass
class Comparison:
    model: str
    baseline: str  # e.g. "stable (version 1)"
    candidate: str
    requests: tuple[float, float]
    signals: list[Signal]

    @property
    def worse(self) -> list[Signal]:
        return [s for s in self.signals if s.worse]

    def to_json(self) -> dict:
        return {**asdict(self), "worse": [s.name for s in self.worse]}


def _resolve(name: str, labels: Mapping[str, str]) -> tuple[str, str]:
    """(version, description) for a label or a version number."""
    if name.isdigit():
        return str(int(name)), f"version {int(name)}"
    if name not in labels:
        known = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"
        raise CompareError(f"label {name!r} names no version (labels: {known})")
    return labels[name], f"{name} (version {labels[name]})"


def compare(
    samples: list[Sample],
    model: str,
    baseline: str,
    candidate: str,
    thresholds: Thresholds = Thresholds(),  # noqa: B008 - frozen, immutable default
    labels: Mapping[str, str] | None = None,
) -> Comparison:
    """Judge `candidate` against `baseline` (labels or versions). `labels` (label -> version)
    stands in when the metrics carry no tfserving_model_version_label (e.g. from the config)."""
    label_map = labels_from(samples, model) or dict(labels or {})
    b_version, b_desc = _resolve(baseline, label_map)
    c_version, c_desc = _resolve(candidate, label_map)
    if b_version == c_version:
        raise CompareError(f"{b_desc} and {c_desc} are the same version: nothing to compare")
    by_version = figures_by_version(samples, model)
    b, c = by_version.get(b_version), by_version.get(c_version)
    t = thresholds
    for desc, f in ((b_desc, b), (c_desc, c)):
        n = f.requests if f else 0
        if n < t.min_requests:
            raise CompareError(
                f"{desc} of {model} has {n:g} inference requests, fewer than --min-requests "
                f"{t.min_requests}: not enough traffic to compare"
            )
    signals = []
    b_ratio, c_ratio = b.failures / b.requests, c.failures / c.requests
    signals.append(
        Signal(
            "failure ratio",
            b_ratio,
            c_ratio,
            f"canary <= stable + {t.max_failure_ratio_increase:g}",
            c_ratio - b_ratio > t.max_failure_ratio_increase,
        )
    )
    b_p99, c_p99 = histogram_quantile(0.99, b.latency), histogram_quantile(0.99, c.latency)
    p99_worse = None
    if b_p99 is not None and c_p99 is not None:
        limit = max(t.max_p99_ratio * b_p99, b_p99 + t.p99_min_delta_ms / 1e3)
        p99_worse = c_p99 > limit and slow_tail_p_value(c.latency, limit) < t.alpha
    signals.append(
        Signal(
            "p99 latency",
            b_p99,
            c_p99,
            f"canary <= {t.max_p99_ratio:g} x stable or within {t.p99_min_delta_ms:g} ms "
            f"(significant at alpha {t.alpha:g})",
            p99_worse,
        )
    )
    if b.score_count > 0 and c.score_count > 0:
        b_mean, c_mean = b.score_sum / b.score_count, c.score_sum / c.score_count
        signals.append(
            Signal(
                "mean score",
                b_mean,
                c_mean,
                f"|canary - stable| <= {t.max_mean_score_shift:g}",
                abs(c_mean - b_mean) > t.max_mean_score_shift,
            )
        )
        ks = histogram_ks(b.scores, c.scores)
        critical = ks_critical(t.alpha, int(b.score_count), int(c.score_count))
        limit = max(t.max_score_ks, critical)
        signals.append(
            Signal(
                "score distribution (KS)",
                None,
                ks,
                f"<= {limit:.3f} (max of {t.max_score_ks:g} and the critical value "
                f"{critical:.3f} at alpha {t.alpha:g})",
                ks > limit,
            )
        )
    else:
        for name in ("mean score", "score distribution (KS)"):
            signals.append(Signal(name, None, None, "no predicted scores on one side", None))
    return Comparison(model, b_desc, c_desc, (b.requests, c.requests), signals)


def render(result: Comparison) -> str:
    def fmt(v: float | None, name: str) -> str:
        if v is None:
            return "-"
        if "ratio" in name:
            return f"{v:.2%}"
        if "latency" in name:
            return f"{v * 1e3:.1f} ms"
        return f"{v:.4f}"

    lines = [
        f"{result.model}: {result.candidate} vs {result.baseline}, "
        f"{result.requests[1]:g} vs {result.requests[0]:g} inference requests",
        f"{'signal':<26}{'baseline':>12}{'candidate':>12}  {'verdict':<8} limit",
    ]
    for s in result.signals:
        verdict = {True: "WORSE", False: "ok", None: "n/a"}[s.worse]
        lines.append(
            f"{s.name:<26}{fmt(s.baseline, s.name):>12}{fmt(s.candidate, s.name):>12}  "
            f"{verdict:<8} {s.limit}"
        )
    worse = result.worse
    if worse:
        detail = "; ".join(
            f"{s.name} {fmt(s.candidate, s.name)} vs {fmt(s.baseline, s.name)}" for s in worse
        )
        lines.append(f"verdict: {result.candidate} is WORSE than {result.baseline}: {detail}")
    else:
        lines.append(f"verdict: {result.candidate} is not worse than {result.baseline}")
    return "\n".join(lines)
