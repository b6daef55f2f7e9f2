"""DataGate: the component that stops the pipeline when the data failed validation, and the one
record of which spans passed it.

TFX 1.16's ExampleValidator only records anomalies; nothing downstream reads them, so a bad span
would still be trained on and pushed. The gate fails its execution instead, which stops the run
(locally and on Kubeflow) before Transform, Trainer and Pusher; the runner then prints the report.
It fails on schema anomalies (ExampleValidator) and on drift beyond the schema's comparator
thresholds or the sample-size-aware tests against the last accepted span (DriftValidator,
pipeline/validation/drift.py and data_stats/measures.py), and when the RowCleaner quarantined more
than `max_quarantine_fraction` of the rows (pipeline/validation/row_cleaner.py; at or below it the
run goes on with the clean rows).

When the gate passes it publishes `accepted_statistics`: a copy of the span's statistics (a few
KB), carrying the span. A failed execution publishes no outputs, so the resolved channel of these
artifacts across runs holds exactly the spans that passed the gate: create_pipeline feeds it to
the DriftValidator as its history, and a rejected span can never become the drift baseline.
"""

import os

from tfx.dsl.component.experimental.annotations import (
    InputArtifact,
    OutputArtifact,
    OutputDict,
    Parameter,
)
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts

from data_stats.anomalies import load_anomalies
from data_stats.compare import load_measurements
from pipeline.validation.drift import PREVIOUS_SPAN_PROPERTY
from pipeline.validation.quarantine import CleaningSummary, artifact_properties
from pipeline.validation.row_cleaner import QuarantinedExamples

_Anomalies = standard_artifacts.ExampleAnomalies
_Stats = standard_artifacts.ExampleStatistics

# Output key of the accepted statistics; create_pipeline's history channel names it.
ACCEPTED_STATISTICS = "accepted_statistics"
# Custom property on an accepted-statistics artifact: the StatisticsGen output it copies.
SOURCE_STATISTICS_URI = "source_statistics_uri"


class DataAnomaliesError(RuntimeError):
    """Raised by the gate; its message lists every anomaly and every drifted feature."""


def copy_statistics(source, dest) -> None:
    """Copy an ExampleStatistics artifact's split files, span and split names onto `dest`."""

    import tensorflow as tf

    dest.split_names = source.split_names
    dest.span = source.span
    dest.set_string_custom_property(SOURCE_STATISTICS_URI, source.uri)
    for split in artifact_utils.decode_split_names(source.split_names):
        src_dir = artifact_utils.get_split_uri([source], split)
        dst_dir = artifact_utils.get_split_uri([dest], split)
        tf.io.gfile.makedirs(dst_dir)
        for name in tf.io.gfile.listdir(src_dir):
            src = os.path.join(src_dir, name)
            if not tf.io.gfile.isdir(src):
                tf.io.gfile.copy(src, os.path.join(dst_dir, name), overwrite=True)


@component
def DataGate(  # noqa: N802 - TFX components are named like classes
    anomalies: InputArtifact[_Anomalies],
    statistics: InputArtifact[_Stats],
    accepted_statistics: OutputArtifact[_Stats],
    max_quarantine_fraction: Parameter[float],
    drift: InputArtifact[_Anomalies] = None,
    quarantine: InputArtifact[QuarantinedExamples] = None,
) -> OutputDict(anomaly_count=int, drift_count=int, quarantined_rows=int):
    """Pass when no split has anomalies or drift, publishing the span's statistics as accepted;
    otherwise fail with the list (and publish nothing)."""
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    found = load_anomalies(anomalies.uri, splits)
    drifted = []
    if drift is not None:
        drift_splits = artifact_utils.decode_split_names(drift.split_names)
        drifted = [m for m in load_measurements(drift.uri, drift_splits) if m.exceeded]
    cleaning = None
    if quarantine is not None:
        cleaning = CleaningSummary.from_properties(artifact_properties(quarantine), quarantine.uri)
    too_many = cleaning is not None and cleaning.exceeds(max_quarantine_fraction)
    if found or drifted or too_many:
        parts = []
        if too_many:
            figures = cleaning.describe(max_quarantine_fraction)
            parts.append(
                f"Row cleaning quarantined too many rows: {figures}\n"
                f"  quarantined rows and reasons: {cleaning.uri} (`mlops data quarantine`)"
            )
        if found:
            lines = "\n".join(f"  {a}" for a in found)
            parts.append(
                f"ExampleValidator found {len(found)} anomalies in {anomalies.uri}:\n{lines}"
            )
        if drifted:
            previous = drift.get_int_custom_property(PREVIOUS_SPAN_PROPERTY)
            lines = "\n".join(f"  {m}" for m in drifted)
            parts.append(
                f"Drift against span {previous} (the last accepted span) beyond the schema's "
                f"thresholds:\n{lines}"
            )
        raise DataAnomaliesError("\n".join(parts))
    copy_statistics(statistics, accepted_statistics)
    quarantined = cleaning.quarantined if cleaning is not None else 0
    return {"anomaly_count": 0, "drift_count": 0, "quarantined_rows": quarantined}
