"""Comparing two TFDV statistics: TFDV's comparators from the schema (`drift_comparator` /
`skew_comparator`) plus the sample-size-aware tests of data_stats/measures.py, as plain
measurements. The drift gate (span vs the last accepted span), the skew check of logged requests
and the live skew monitor all measure with this, so they agree on what "shifted" means.
"""

from __future__ import annotations

import dataclasses
import json
import os

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

from data_stats import measures
from data_stats.anomalies import split_protos

# The sample-size-aware tests' results, next to TFDV's SchemaDiff.pb in each Split-<name>/.
TESTS_FILE = "DriftTests.json"

_COMPARATORS = {
    anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY: "L-infinity",
    anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE: "Jensen-Shannon",
    anomalies_pb2.DriftSkewInfo.Measurement.NORMALIZED_ABSOLUTE_DIFFERENCE: (
        "normalized abs difference"
    ),
}


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One comparator's distance between two statistics for one feature and split."""

    split: str
    feature: str
    comparator: str
    distance: float
    threshold: float
    kind: str = "drift"  # or "skew"

    @property
    def exceeded(self) -> bool:
        return self.distance > self.threshold

    def __str__(self) -> str:
        verdict = self.kind.upper() if self.exceeded else "ok"
        sign = ">" if self.exceeded else "<="
        return (
            f"[{self.split}] {self.feature}: {self.comparator} distance {self.distance:.4f} "
            f"{sign} threshold {self.threshold:.4g} ({verdict})"
        )


def measurements(
    proto: anomalies_pb2.Anomalies, split: str, skew: bool = False
) -> list[Measurement]:
    """Every drift (or skew) measurement TFDV recorded, sorted by feature."""
    out = []
    for info in proto.drift_skew_info:
        feature = ".".join(info.path.step)
        for m in info.skew_measurements if skew else info.drift_measurements:
            name = _COMPARATORS.get(
                m.type, anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type)
            )
            out.append(
                Measurement(split, feature, name, m.value, m.threshold, "skew" if skew else "drift")
            )
    return sorted(out, key=lambda m: (m.split, m.feature, m.comparator))


def only_comparator_anomalies(proto: anomalies_pb2.Anomalies) -> anomalies_pb2.Anomalies:
    """The drift/skew part of a TFDV result: schema anomalies are ExampleValidator's to report."""
    out = anomalies_pb2.Anomalies()
    out.CopyFrom(proto)
    out.ClearField("anomaly_info")
    out.ClearField("dataset_anomaly_info")
    for feature, info in proto.anomaly_info.items():
        reasons = [
            r
            for r in info.reason
            if anomalies_pb2.AnomalyInfo.Type.Name(r.type).startswith("COMPARATOR_")
        ]
        if reasons:
            kept = out.anomaly_info[feature]
            kept.CopyFrom(info)
            del kept.reason[:]
            kept.reason.extend(reasons)
            kept.description = " ".join(r.description for r in reasons)
    return out


def compare_statistics(
    base: statistics_pb2.DatasetFeatureStatisticsList,
    new: statistics_pb2.DatasetFeatureStatisticsList,
    schema,
    split: str,
    skew: bool = False,
    tests: dict | None = None,
) -> tuple[anomalies_pb2.Anomalies, list[Measurement]]:
    """`new` against `base` (the previous span's statistics for drift, the training statistics
    for skew): TFDV's comparator result (the schema's drift/skew comparators) and every
    measurement, TFDV's and the sample-size-aware tests', sorted by feature."""
    import tensorflow_data_validation as tfdv

    if skew:
        result = tfdv.validate_statistics(base, schema, serving_statistics=new)
    else:
        result = tfdv.validate_statistics(new, schema, previous_statistics=base)
    result = only_comparator_anomalies(result)
    kind = "skew" if skew else "drift"
    tests = [
        Measurement(split, r.feature, r.test, r.distance, r.threshold, kind)
        for r in measures.compare(base, new, tests)
    ]
    found = measurements(result, split, skew=skew) + tests
    return result, sorted(found, key=order)


def order(m: Measurement) -> tuple:
    """By split and feature; per feature the sample-size-aware test first, TFDV's comparator
    last (so a per-feature dict of the measurements keeps the schema's comparator)."""
    return (m.split, m.feature, m.comparator not in measures.TESTS, m.comparator)


def write_tests(path: str, found: list[Measurement]) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path))
    ours = [dataclasses.asdict(m) for m in found if m.comparator in measures.TESTS]
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(ours, indent=1))


def load_measurements(uri: str, split_names: list[str]) -> list[Measurement]:
    """Drift measurements stored under a DriftValidator output's URI (Split-<name>/): TFDV's
    (SchemaDiff.pb) and the sample-size-aware tests' (DriftTests.json)."""
    found = [
        m for split, proto in split_protos(uri, split_names) for m in measurements(proto, split)
    ]
    for split in split_names:
        path = os.path.join(uri, f"Split-{split}", TESTS_FILE)
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as f:
                found.extend(Measurement(**m) for m in json.loads(f.read()))
    return sorted(found, key=order)


def load_statistics_file(path: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """A StatisticsGen FeatureStats.pb (binary DatasetFeatureStatisticsList)."""
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    with tf.io.gfile.GFile(path, "rb") as f:
        stats.ParseFromString(f.read())
    return stats


def write_anomalies(path: str, proto: anomalies_pb2.Anomalies) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(proto.SerializeToString())
