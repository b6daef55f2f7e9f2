"""Read the ExampleValidator's anomalies back as plain records.

Shared by the data gate (which stops the pipeline) and the runner's report (which prints
what stopped it), so both see the same anomalies.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2

ANOMALIES_FILE = "SchemaDiff.pb"


@dataclasses.dataclass(frozen=True)
class Anomaly:
    split: str
    feature: str
    kind: str
    description: str

    def __str__(self) -> str:
        return f"[{self.split}] {self.feature}: {self.kind} - {self.description}"


def split_protos(uri: str, split_names: list[str]) -> Iterator[tuple[str, anomalies_pb2.Anomalies]]:
    """(split, Anomalies proto) for each split recorded under an ExampleAnomalies artifact's URI
    (Split-<name>/SchemaDiff.pb); splits without a file are skipped."""
    for split in split_names:
        path = os.path.join(uri, f"Split-{split}", ANOMALIES_FILE)
        if not tf.io.gfile.exists(path):
            continue
        proto = anomalies_pb2.Anomalies()
        with tf.io.gfile.GFile(path, "rb") as f:
            proto.ParseFromString(f.read())
        yield split, proto


def load_anomalies(uri: str, split_names: list[str]) -> list[Anomaly]:
    """All anomalies recorded under an ExampleAnomalies artifact's URI, per split."""
    return [a for split, proto in split_protos(uri, split_names) for a in records(split, proto)]


def records(split: str, proto: anomalies_pb2.Anomalies) -> list[Anomaly]:
    """One record per anomalous feature (and one for dataset-level anomalies)."""
    records = []
    for feature, info in sorted(proto.anomaly_info.items()):
        kinds = [anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason] or ["UNKNOWN"]
        description = info.description or "; ".join(r.description for r in info.reason)
        records.append(Anomaly(split, feature, ",".join(kinds), description))
    if proto.HasField("dataset_anomaly_info"):
        info = proto.dataset_anomaly_info
        kinds = [anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason]
        records.append(Anomaly(split, "<dataset>", ",".join(kinds), info.description))
    return records
