"""Training/serving skew of logged requests: what `mlops data check-skew` and the live skew
monitor (`mlops monitor`) both measure.

The model server logs requests as tf.Examples (`mlops serve --request_log_dir DIR`). Their
statistics are compared with the training statistics under the schema's skew comparators and the
sample-size-aware tests the drift gate uses, and the requests are checked against the schema's
SERVING environment. Unreadable records are skipped and counted, never fatal.
"""

from __future__ import annotations

import dataclasses
import os

from google.protobuf.message import DecodeError

from data_stats.measures import quantile_resolution, statistics_of_examples, statistics_options
from data_stats.schema import load_schema, schema_columns

MAX_REPORTED_SKIPS = 5
_KINDS = {"INT": "int64_list", "FLOAT": "float_list", "BYTES": "bytes_list"}


class SkewCheckError(RuntimeError):
    """check-skew could not run (no readable requests, no training statistics, ...)."""


@dataclasses.dataclass
class RequestLogContents:
    """The readable requests of a request log, and what was skipped and why."""

    examples: list[bytes]
    files: int
    skipped: int = 0
    reasons: list[str] = dataclasses.field(default_factory=list)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped += count
        if len(self.reasons) < MAX_REPORTED_SKIPS:
            self.reasons.append(reason)


def request_files(requests_dir: str) -> list[str]:
    import tensorflow as tf

    return sorted(tf.io.gfile.glob(os.path.join(requests_dir, "*.tfrecord")))


def read_request_log(requests_dir: str, column_types: dict[str, str]) -> RequestLogContents:
    """Every record that is a tf.Example whose features have their schema kinds (INT ->
    int64_list, ...). A record that does not parse, holds no feature or gives a feature another
    kind (which would make the whole batch undecodable) is skipped and counted; a file whose
    framing breaks (truncated, corrupt) is read up to the break."""
    files = request_files(requests_dir)
    if not files:
        raise SkewCheckError(f"no logged requests (*.tfrecord) in {requests_dir}")
    out = RequestLogContents([], len(files))
    kinds = schema_kinds(column_types)
    for path in files:
        read_request_file(path, kinds, out)
    return out


def schema_kinds(column_types: dict[str, str]) -> dict[str, str]:
    """Feature name -> the tf.Example list kind its schema type takes (INT -> int64_list, ...)."""
    return {name: _KINDS[t] for name, t in column_types.items() if t in _KINDS}


def read_request_file(
    path: str, kinds: dict[str, str], out: RequestLogContents, start: int = 0, complete: bool = True
) -> int:
    """Append the readable records of one log file, from record `start` on, to `out` (the rest
    skipped and counted, as `read_request_log` says); return the number of records read so far
    (the next `start`). A file still being written (`complete=False`, the server's `.open`
    file) may end in a record half written: that end is left for the next read, not counted."""
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    name = os.path.basename(path)
    consumed = start
    try:
        for record in tf.data.TFRecordDataset(path).skip(start).as_numpy_iterator():
            index, consumed = consumed, consumed + 1
            try:
                example = example_pb2.Example.FromString(record)
            except DecodeError:
                out.skip(f"{name} record {index}: not a tf.Example")
                continue
            problem = _kind_problem(example, kinds)
            if problem:
                out.skip(f"{name} record {index}: {problem}")
                continue
            out.examples.append(record)
    except tf.errors.OpError as e:  # DataLossError: corrupt or truncated framing
        if complete:
            where = max(consumed - 1, 0)
            out.skip(f"{name} after record {where}: unreadable ({e.message.splitlines()[0]})")
    return consumed


def _kind_problem(example, kinds: dict[str, str]) -> str:
    present = example.features.feature
    if not present:
        return "no features"
    for key, feature in present.items():
        kind = feature.WhichOneof("kind")
        if kind is None:
            continue
        expected = kinds.setdefault(key, kind)  # a feature the schema does not know: first kind
        if kind != expected:
            return f"{key} is {kind}, expected {expected}"
    return ""


def latest_training_statistics(metadata: str, pipeline_name: str, split: str = "train") -> str:
    """FeatureStats.pb of the newest StatisticsGen output of `pipeline_name` in ML Metadata."""
    from metadata.store import MetadataError, open_store

    try:
        uri = open_store(metadata).latest_statistics_uri(pipeline_name)
    except MetadataError as e:
        raise SkewCheckError(str(e)) from None
    if uri is None:
        raise SkewCheckError(f"no statistics of {pipeline_name} in {metadata}")
    return os.path.join(uri, f"Split-{split}", "FeatureStats.pb")


@dataclasses.dataclass
class SkewResult:
    skew: list  # data_stats.compare.Measurement, kind "skew"
    anomalies: list  # data_stats.anomalies.Anomaly of the requests (SERVING environment)
    requests: RequestLogContents

    @property
    def skewed(self) -> list:
        return [m for m in self.skew if m.exceeded]


def check_skew(requests_dir: str, training_statistics: str, schema_path: str) -> SkewResult:
    """The logged requests' statistics against the training statistics: the schema's skew
    comparators and the sample-size-aware tests (data_stats.compare, as the
    drift gate), and the requests against the schema's SERVING environment."""
    import tensorflow as tf

    from data_stats.compare import load_statistics_file

    requests = read_request_log(requests_dir, schema_columns(schema_path))
    if not requests.examples:
        raise SkewCheckError(
            f"no readable request in {requests_dir} ({requests.skipped} record(s) skipped)"
        )
    if not tf.io.gfile.exists(training_statistics):
        raise SkewCheckError(f"no training statistics at {training_statistics}")
    skew, anomalies = skew_of_examples(
        requests.examples, load_statistics_file(training_statistics), load_schema(schema_path)
    )
    return SkewResult(skew, anomalies, requests)


def skew_of_examples(examples: list[bytes], training, schema) -> tuple[list, list]:
    """(skew measurements, request anomalies) of serialized tf.Examples against the training
    statistics: what check-skew and the live skew monitor (`mlops monitor`) both report."""
    import tensorflow_data_validation as tfdv

    from data_stats.anomalies import records
    from data_stats.compare import compare_statistics

    # The requests' quantiles at the training statistics' resolution: TFDV's Jensen-Shannon on
    # quantiles histograms of different bucket counts measures the bucketing, not the data.
    resolution = quantile_resolution(training)
    options = statistics_options(
        **({"num_quantiles_histogram_buckets": resolution} if resolution else {})
    )
    serving = statistics_of_examples(examples, options)
    _, skew = compare_statistics(training, serving, schema, "serving", skew=True)
    requests_anomalies = tfdv.validate_statistics(serving, schema, environment="SERVING")
    return skew, records("serving", requests_anomalies)
