"""Drift between spans and skew between training and serving data, measured by TFDV with the
comparators the curated schema carries (`drift_comparator` / `skew_comparator`) and, on top of the
same TFDV statistics, by the sample-size-aware tests of pipeline/drift_measures.py (TFDV's
fixed-threshold comparators alone stop same-distribution samples or miss real shifts at realistic
span sizes; figures in docs/continuous_training.md).

TFX 1.16's ExampleValidator only checks statistics against the schema. The DriftValidator
component compares the new span's statistics with the last accepted span's (picked from the
statistics every earlier run's DataGate accepted, which create_pipeline feeds it as `history`) and
writes the drift part of TFDV's result as an ExampleAnomalies artifact; the DataGate stops the
run on it and the run report prints one line per measured feature.
"""

import dataclasses
import json
import os

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2
from tfx import v1 as tfx
from tfx.components.statistics_gen import executor as statistics_gen_executor
from tfx.dsl.component.experimental.annotations import OutputDict
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils

from metadata.store import DRIFT_VALIDATOR, PREVIOUS_SPAN_PROPERTY
from pipeline import drift_measures
from pipeline.anomalies import ANOMALIES_FILE, split_protos

__all__ = ["DRIFT_VALIDATOR", "PREVIOUS_SPAN_PROPERTY", "DriftValidator", "Measurement"]

SPAN_PROPERTY = "span"
# The train split: the data the model learns from, and 4/5 of the span. The eval split is a hash
# subset of the same span, too small on test-sized data (80 rows) for stable distances.
DRIFT_SPLITS = "train"
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
        for r in drift_measures.compare(base, new, tests)
    ]
    found = measurements(result, split, skew=skew) + tests
    return result, sorted(found, key=_order)


def _order(m: Measurement) -> tuple:
    """By split and feature; per feature the sample-size-aware test first, TFDV's comparator
    last (so a per-feature dict of the measurements keeps the schema's comparator)."""
    return (m.split, m.feature, m.comparator not in drift_measures.TESTS, m.comparator)


def write_tests(path: str, found: list[Measurement]) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path))
    ours = [dataclasses.asdict(m) for m in found if m.comparator in drift_measures.TESTS]
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
    return sorted(found, key=_order)


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


def previous_span_statistics(current, history):
    """The drift baseline: the newest statistics of the highest span below `current`'s span in
    `history`, or None. create_pipeline passes the DataGate's accepted statistics as `history`,
    so this is the last span that passed the gate, never a rejected one."""
    earlier = [a for a in history if a.span < current.span]
    if not earlier:
        return None
    return max(earlier, key=lambda a: (a.span, a.mlmd_artifact.create_time_since_epoch, a.id))


# ---- the pipeline components ---------------------------------------------------------------------
_Stats = tfx.types.standard_artifacts.ExampleStatistics


def span_of(artifact) -> int:
    """An artifact's span: TFX 1.16's ExampleGen records it as a custom property."""
    if artifact.has_custom_property(SPAN_PROPERTY):
        return artifact.get_int_custom_property(SPAN_PROPERTY)
    return artifact.span


class SpanStatisticsGenExecutor(statistics_gen_executor.Executor):
    """StatisticsGen whose statistics carry the examples' span (the stock one copies the unset
    `span` property, 0), so the DriftValidator can tell spans apart."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX API
        result = super().Do(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        for statistics in output_dict["statistics"]:
            statistics.span = span_of(examples)
        return result


@component
def DriftValidator(  # noqa: N802 - TFX components are named like classes
    statistics: tfx.dsl.components.InputArtifact[_Stats],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
    drift: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    history: tfx.dsl.components.InputArtifact[list[_Stats]] = None,
    splits: tfx.dsl.components.Parameter[str] = DRIFT_SPLITS,
    feature_tests: tfx.dsl.components.Parameter[str] = "",
) -> OutputDict(drifted_features=int, previous_span=int):
    """Compare the statistics of `splits` (comma-separated) with the previous span's (the
    highest span in `history` below the current one) under the schema's drift comparators and
    the sample-size-aware tests (pipeline/drift_measures.py).
    `feature_tests` (drift_measures.tests_config of the dataset spec; '' the default dataset's)
    says which features the sample-size-aware tests check and how sensitively.
    Without a previous span (the first run) there is nothing to compare with: pass."""
    from tfx.components.statistics_gen import stats_artifact_utils
    from tfx.utils import io_utils

    wanted = [s.strip() for s in splits.split(",") if s.strip()]
    splits = [s for s in artifact_utils.decode_split_names(statistics.split_names) if s in wanted]
    drift.split_names = artifact_utils.encode_split_names(splits)
    drift.span = statistics.span
    previous_span = -1
    drifted: set[str] = set()
    previous_statistics = previous_span_statistics(statistics, history or [])
    if previous_statistics is not None:
        previous_span = previous_statistics.span
        schema_proto = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema.uri))
        previous_splits = set(artifact_utils.decode_split_names(previous_statistics.split_names))
        for split in splits:
            if split not in previous_splits:
                continue
            result, found = compare_statistics(
                stats_artifact_utils.load_statistics(previous_statistics, split).proto(),
                stats_artifact_utils.load_statistics(statistics, split).proto(),
                schema_proto,
                split,
                tests=drift_measures.tests_from_config(feature_tests),
            )
            write_anomalies(os.path.join(drift.uri, f"Split-{split}", ANOMALIES_FILE), result)
            write_tests(os.path.join(drift.uri, f"Split-{split}", TESTS_FILE), found)
            drifted |= {m.feature for m in found if m.exceeded}
    drift.set_int_custom_property(PREVIOUS_SPAN_PROPERTY, previous_span)
    return {"drifted_features": len(drifted), "previous_span": previous_span}
