"""What the app asks the model server, through serving_api/client.py and TF Serving's protocol only.

Raw rows are checked and typed with the dataset spec (modules/dataset_spec.py; the same feature
kinds the pipeline trains on), so a bad row in an uploaded file is reported with its line number
instead of failing the whole batch.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable, Mapping

import pandas as pd
import requests

from explain import shapley
from modules import features, values
from modules.dataset_spec import MULTICLASS, DatasetSpec
from serving_api.client import (
    GrpcClient,
    RestClient,
    ServerUnreachable,
    ServingClientError,
    predict_rows,
)

PROBABILITY_COLUMN = "probability"
CLASS_COLUMN = "class"
METRICS_PATH = "/monitoring/prometheus/metrics"


class ServerUnavailable(Exception):
    """The model server did not answer or refused the request; the message is user-facing."""


@dataclasses.dataclass(frozen=True)
class Prediction:
    probability: float  # binary: of the positive class; multiclass: of the most likely class
    version: str
    label: str
    protocol: str
    latency_ms: float
    # Multiclass: class name -> probability (the spec's class names); else empty.
    scores: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def predicted_class(self) -> str | None:
        return max(self.scores, key=self.scores.get) if self.scores else None


def _client(
    protocol: str, host: str, port: int, spec: DatasetSpec | None = None
) -> RestClient | GrpcClient:
    return (
        GrpcClient(host, port, timeout=10.0, spec=spec)
        if protocol == "grpc"
        else RestClient(host, port, timeout=10.0)
    )


def _explain(exc: Exception, host: str, port: int) -> ServerUnavailable:
    if isinstance(exc, ServingClientError):
        return ServerUnavailable(f"the model server refused the request: {exc.summary}")
    if isinstance(exc, ServerUnreachable | requests.RequestException) or "UNAVAILABLE" in str(exc):
        return ServerUnavailable(
            f"no model server answers at {host}:{port}: start one with `make serve` "
            "(or `mlops ui`, which starts it when none answers)"
        )
    return ServerUnavailable(f"model server error: {exc}")


def resolved_version(
    host: str, rest_port: int, model: str, version: int | None, label: str | None
) -> str:
    """The version the server resolves a request to (REST metadata's model_spec)."""
    try:
        meta = RestClient(host, rest_port, timeout=5.0).metadata(model, version, label or None)
    except (ServingClientError, ServerUnreachable, requests.RequestException, ValueError) as e:
        raise _explain(e, host, rest_port) from None
    return str(meta["model_spec"]["version"])


def predict_one(
    row: Mapping[str, object],
    protocol: str,
    host: str,
    port: int,
    rest_port: int,
    model: str,
    version: int | None = None,
    label: str | None = None,
    spec: DatasetSpec | None = None,
) -> Prediction:
    """One row through the chosen protocol, encoded per `spec` (default: the active dataset);
    latency is the client-side round trip."""
    spec = spec or features.SPEC
    client = _client(protocol, host, port, spec)
    started = time.perf_counter()
    try:
        result = predict_rows(client, model, [row], version=version, label=label or None, spec=spec)
    except Exception as e:  # noqa: BLE001 - any transport failure is shown, not raised
        raise _explain(e, host, port) from None
    finally:
        if isinstance(client, GrpcClient):
            client.close()
    latency = (time.perf_counter() - started) * 1e3
    answered = resolved_version(host, rest_port, model, version, label)
    scores = _scores(result[0], spec)
    return Prediction(_probability(result[0]), answered, label or "", protocol, latency, scores)


def _probability(output: Mapping[str, object]) -> float:
    """The positive class's probability (binary), the top class's (multiclass) or the value."""
    value = output.get("probabilities", next(iter(output.values())))
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, list):
        return float(max(value))
    return float(value)


def _scores(output: Mapping[str, object], spec: DatasetSpec) -> dict[str, float]:
    if spec.task != MULTICLASS:
        return {}
    value = output.get("probabilities", next(iter(output.values())))
    while isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    return {name: float(p) for name, p in zip(spec.classes, value, strict=False)}


# ---- why: per-prediction attributions -------------------------------------------------------
def _score_of(output: Mapping[str, object], class_index: int | None) -> float:
    """The number an explanation attributes: the positive class's probability (binary), the
    value (regression), or class `class_index`'s probability (multiclass)."""
    value = output.get("probabilities", next(iter(output.values())))
    while isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    if isinstance(value, list):
        return float(value[class_index or 0])
    return float(value)


def explain_one(
    row: Mapping[str, object],
    baseline: Mapping[str, object],
    protocol: str,
    host: str,
    port: int,
    model: str,
    version: int | None = None,
    label: str | None = None,
    spec: DatasetSpec | None = None,
    class_index: int | None = None,
    permutations: int = shapley.DEFAULT_PERMUTATIONS,
) -> shapley.Attributions:
    """Sampled Shapley attributions of the served model's prediction for `row`, relative to
    `baseline` (explain/shapley.py): every path row goes to the server in ONE predict request,
    through the chosen protocol, to the version given (pass the one that answered the
    prediction, so a version change in between cannot mix two models)."""
    spec = spec or features.SPEC
    client = _client(protocol, host, port, spec)

    def predict(rows: list[dict[str, object]]) -> list[float]:
        try:
            result = predict_rows(
                client,
                model,
                rows,
                version=version,
                label=label or None,
                batch_size=len(rows),
                spec=spec,
            )
        except Exception as e:  # noqa: BLE001 - any transport failure is shown, not raised
            raise _explain(e, host, port) from None
        return [_score_of(r, class_index) for r in result]

    try:
        return shapley.sampled_shapley(
            predict, row, baseline, spec.raw_feature_keys, permutations=permutations
        )
    except ValueError as e:
        raise ServerUnavailable(f"cannot explain this prediction: {e}") from None
    finally:
        if isinstance(client, GrpcClient):
            client.close()


def attribution_frame(
    attributions: shapley.Attributions, row: Mapping[str, object], baseline: Mapping[str, object]
) -> pd.DataFrame:
    """One line per feature, largest effect first: its value, the baseline's, its attribution."""
    frame = pd.DataFrame(
        {
            "feature": list(attributions.features),
            "value": [str(row[k]) for k in attributions.features],
            "baseline": [str(baseline[k]) for k in attributions.features],
            "attribution": list(attributions.values),
        }
    )
    order = frame["attribution"].abs().sort_values(ascending=False, kind="mergesort").index
    return frame.loc[order].reset_index(drop=True)


# ---- batch scoring -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BadRow:
    line: int
    reason: str


def read_upload(
    content: bytes, name: str = "upload", spec: DatasetSpec | None = None
) -> pd.DataFrame:
    """An uploaded CSV as strings (typed later, per row); ValueError says why it is unusable."""
    raw_keys = (spec or features.SPEC).raw_feature_keys
    import csv
    import io

    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{name} is not UTF-8 text (byte {e.start})") from None
    rows, lines = [], []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for r in reader:
            if r:  # blank lines are skipped, but the line numbers stay the file's
                rows.append(r)
                lines.append(reader.line_num)
    except csv.Error as e:
        raise ValueError(f"{name} is not a readable CSV (line {reader.line_num}): {e}") from None
    if not rows:
        raise ValueError(f"{name} is empty: expected a header row")
    header = [h.strip() for h in rows[0]]
    if not any(k in header for k in raw_keys):
        raise ValueError(
            f"{name} has no model feature columns: expected a header with " + ", ".join(raw_keys)
        )
    if len(set(header)) != len(header):
        raise ValueError(f"{name} has duplicated columns in its header")
    if len(rows) == 1:
        raise ValueError(f"{name} has no data rows")
    width = len(header)
    # Short or long rows keep their line: padded or cut here, reported by check_rows.
    data = [(r + [""] * width)[:width] for r in rows[1:]]
    frame = pd.DataFrame(data, columns=header, dtype=str)
    frame.attrs["widths"] = [len(r) for r in rows[1:]]
    frame.attrs["lines"] = lines[1:]
    return frame


def check_rows(
    frame: pd.DataFrame, spec: DatasetSpec | None = None
) -> tuple[list[int], list[BadRow]]:
    """Indexes of rows that encode, and the others with their CSV line number and reason."""
    spec = spec or features.SPEC
    widths = frame.attrs.get("widths") or [len(frame.columns)] * len(frame)
    lines = frame.attrs.get("lines") or [i + 2 for i in range(len(frame))]
    good, bad = [], []
    for i, row in enumerate(frame.to_dict("records")):
        line = lines[i]
        reasons = []
        if widths[i] != len(frame.columns):
            reasons.append(f"{widths[i]} values, expected {len(frame.columns)}")
        for key in spec.raw_feature_keys:
            value = row.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
                continue
            reason = _bad_value(key, value, spec)
            if reason:
                reasons.append(reason)
        if reasons:
            bad.append(BadRow(line, "; ".join(reasons)))
        else:
            good.append(i)
    return good, bad


def _bad_value(key: str, value: object, spec: DatasetSpec | None = None) -> str | None:
    """Why a cell cannot be scored: modules/values.py's rule (finite in float32, whole and within
    int64), so a row the pipeline would quarantine is never sent to the model."""
    kind = (spec or features.SPEC).raw_dtype(key)
    if kind == "bytes":
        return None
    problem = values.text_problem(str(value), kind)
    return f"{key}: {problem}" if problem else None


# ---- the scored CSV people download ----------------------------------------------------------
# OWASP's CSV-injection rule: a cell starting with one of these is a formula to a spreadsheet.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def neutralise_cell(value: object) -> object:
    """`value` as a spreadsheet shows it without evaluating it: text that starts like a formula
    gets a leading single quote; numbers, and text that is a plain number (-87.6), stay as they
    are."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    if _PLAIN_NUMBER.fullmatch(value):
        return value
    return "'" + value


def scored_csv(frame: pd.DataFrame) -> bytes:
    """The scored rows as the CSV the web app offers for download, every cell (and column name)
    neutralised: the upload's text goes back to whoever opens the file in a spreadsheet."""
    safe = frame.applymap(neutralise_cell)
    safe.columns = [neutralise_cell(str(c)) for c in frame.columns]
    return safe.to_csv(index=False).encode()


def score_frame(
    frame: pd.DataFrame,
    protocol: str,
    host: str,
    port: int,
    model: str,
    chunk_size: int = 100,
    progress: Callable[[float], None] | None = None,
    spec: DatasetSpec | None = None,
) -> tuple[pd.DataFrame, list[BadRow]]:
    """Score the rows that encode, in chunks; returns (good rows + probability, bad rows).
    Multiclass: also the predicted class (column `class`)."""
    spec = spec or features.SPEC
    good, bad = check_rows(frame, spec)
    scored = frame.iloc[good].copy()
    rows = [
        {k: (None if _missing(v) else v) for k, v in r.items()} for r in scored.to_dict("records")
    ]
    client = _client(protocol, host, port, spec)
    probabilities: list[float] = []
    classes: list[str | None] = []
    try:
        for start in range(0, len(rows), chunk_size):
            chunk = rows[start : start + chunk_size]
            try:
                result = predict_rows(client, model, chunk, batch_size=chunk_size, spec=spec)
            except Exception as e:  # noqa: BLE001
                raise _explain(e, host, port) from None
            probabilities.extend(_probability(r) for r in result)
            for r in result:
                scores = _scores(r, spec)
                classes.append(max(scores, key=scores.get) if scores else None)
            if progress:
                progress(min(1.0, (start + len(chunk)) / max(1, len(rows))))
    finally:
        if isinstance(client, GrpcClient):
            client.close()
    scored[PROBABILITY_COLUMN] = probabilities
    if spec.task == MULTICLASS:
        scored[CLASS_COLUMN] = classes
    if progress and not rows:
        progress(1.0)
    lines = frame.attrs.get("lines") or [i + 2 for i in range(len(frame))]
    scored.insert(0, "line", [lines[i] for i in good])
    return scored.reset_index(drop=True), bad


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


# ---- status and metrics ----------------------------------------------------------------------
def version_status(host: str, rest_port: int, model: str, labels: tuple[str, ...]) -> pd.DataFrame:
    """The server's state per version (REST status API) and which probed labels point to it."""
    client = RestClient(host, rest_port, timeout=5.0)
    try:
        status = client.status(model)
    except (ServingClientError, ServerUnreachable, requests.RequestException, ValueError) as e:
        raise _explain(e, host, rest_port) from None
    by_label: dict[str, list[str]] = {}
    for label in labels:
        try:
            for v in client.status(model, label=label)["model_version_status"]:
                by_label.setdefault(v["version"], []).append(label)
        except (ServingClientError, ServerUnreachable, requests.RequestException, ValueError):
            continue  # label not configured
    rows = [
        {
            "version": int(v["version"]),
            "state": v["state"],
            "labels": ", ".join(by_label.get(v["version"], [])),
            "error": v.get("status", {}).get("error_message", ""),
        }
        for v in status["model_version_status"]
    ]
    return pd.DataFrame(rows, columns=["version", "state", "labels", "error"])


@dataclasses.dataclass
class MetricsSample:
    taken: float
    requests: pd.DataFrame  # model_name, version, method, protocol, status, count
    latency_buckets: pd.DataFrame  # model_name, version, method, protocol, le, count


def scrape(host: str, rest_port: int) -> MetricsSample:
    """One read of the server's Prometheus endpoint, parsed with prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://{host}:{rest_port}{METRICS_PATH}"
    try:
        response = requests.get(url, timeout=5.0)
    except requests.RequestException as e:
        raise _explain(e, host, rest_port) from None
    if response.status_code != 200:
        raise ServerUnavailable(f"{url} answered HTTP {response.status_code}: metrics are off?")
    counts, buckets = [], []
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            if s.name == "tfserving_request_count_total":
                counts.append({**s.labels, "count": s.value})
            elif s.name == "tfserving_request_latency_seconds_bucket":
                buckets.append({**s.labels, "le": float(s.labels["le"]), "count": s.value})
    keys = ["model_name", "version", "method", "protocol"]
    return MetricsSample(
        time.time(),
        pd.DataFrame(counts, columns=[*keys, "status", "count"]),
        pd.DataFrame(buckets, columns=[*keys, "le", "count"]),
    )


def rates(before: MetricsSample, after: MetricsSample) -> pd.DataFrame:
    """Requests per second and errors per second by model/version/status between two samples."""
    keys = ["model_name", "version", "method", "protocol", "status"]
    seconds = max(after.taken - before.taken, 1e-6)
    merged = after.requests.merge(before.requests, on=keys, how="left", suffixes=("", "_before"))
    merged["count_before"] = merged["count_before"].fillna(0.0)
    merged["per_second"] = (merged["count"] - merged["count_before"]) / seconds
    return merged[[*keys, "count", "per_second"]]


def latency_percentiles(
    sample: MetricsSample,
    before: MetricsSample | None = None,
    quantiles: tuple[float, ...] = (0.5, 0.9, 0.99),
) -> pd.DataFrame:
    """Latency percentiles (ms) per model/version/method from the histogram buckets, linearly
    interpolated inside a bucket as Prometheus' histogram_quantile does; over the interval
    since `before` when given, else since the server started."""
    keys = ["model_name", "version", "method", "protocol"]
    frame = sample.latency_buckets
    if before is not None and not before.latency_buckets.empty:
        frame = frame.merge(
            before.latency_buckets, on=[*keys, "le"], how="left", suffixes=("", "_before")
        )
        frame["count"] = frame["count"] - frame["count_before"].fillna(0.0)
    rows = []
    for group, buckets in frame.groupby(keys):
        buckets = buckets.sort_values("le")
        total = buckets["count"].iloc[-1]
        if total <= 0:
            continue
        row = dict(zip(keys, group, strict=True)) | {"requests": int(total)}
        for q in quantiles:
            row[f"p{int(q * 100)}_ms"] = _quantile(buckets, q * total) * 1e3
        rows.append(row)
    return pd.DataFrame(
        rows, columns=[*keys, "requests", *(f"p{int(q * 100)}_ms" for q in quantiles)]
    )


def _quantile(buckets: pd.DataFrame, rank: float) -> float:
    lower_le, lower_count = 0.0, 0.0
    for le, count in zip(buckets["le"], buckets["count"], strict=True):
        if count >= rank:
            if math.isinf(le):
                return lower_le
            if count == lower_count:
                return le
            return lower_le + (le - lower_le) * (rank - lower_count) / (count - lower_count)
        lower_le, lower_count = le, count
    return lower_le
