"""Read the ExampleValidator's anomalies back as plain records.

Shared by the data gate (which stops the pipeline) and the runner's report (which prints
what stopped it), so both see the same anomalies.
"""

from __future__ import annotations

import dataclasses
import os

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


def load_anomalies(uri: str, split_names: list[str]) -> list[Anomaly]:
    """All anomalies recorded under an ExampleAnomalies artifact's URI (Split-<name>/), per split."""
    found: list[Anomaly] = []
    for split in split_names:
        path = os.path.join(uri, f"Split-{split}", ANOMALIES_FILE)
        if not tf.io.gfile.exists(path):
            continue
        proto = anomalies_pb2.Anomalies()
        with tf.io.gfile.GFile(path, "rb") as f:
            proto.ParseFromString(f.read())
        found.extend(records(split, proto))
    return found


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
