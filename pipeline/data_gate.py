"""DataGate: the component that stops the pipeline when the data failed validation.

TFX 1.16's ExampleValidator only records anomalies; nothing downstream reads them, so a bad
span would still be trained on and pushed. The gate fails its execution instead, which stops
the run (locally and on Kubeflow) before Transform, Trainer and Pusher; the runner then
prints the report. It fails on schema anomalies (ExampleValidator) and on drift beyond the
schema's comparator thresholds or the sample-size-aware tests against the previous span
(DriftValidator, pipeline/drift.py and pipeline/drift_measures.py).
"""

from tfx import v1 as tfx
from tfx.dsl.component.experimental.annotations import OutputDict
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils

from pipeline.anomalies import load_anomalies
from pipeline.drift import PREVIOUS_SPAN_PROPERTY, load_measurements

_Anomalies = tfx.types.standard_artifacts.ExampleAnomalies


class DataAnomaliesError(RuntimeError):
    """Raised by the gate; its message lists every anomaly and every drifted feature."""


@component
def DataGate(  # noqa: N802 - TFX components are named like classes
    anomalies: tfx.dsl.components.InputArtifact[_Anomalies],
    drift: tfx.dsl.components.InputArtifact[_Anomalies] = None,
) -> OutputDict(anomaly_count=int, drift_count=int):
    """Pass when no split has anomalies or drift; otherwise fail with the list."""
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    found = load_anomalies(anomalies.uri, splits)
    drifted = []
    if drift is not None:
        drift_splits = artifact_utils.decode_split_names(drift.split_names)
        drifted = [m for m in load_measurements(drift.uri, drift_splits) if m.exceeded]
    if found or drifted:
        parts = []
        if found:
            lines = "\n".join(f"  {a}" for a in found)
            parts.append(
                f"ExampleValidator found {len(found)} anomalies in {anomalies.uri}:\n{lines}"
            )
        if drifted:
            previous = drift.get_int_custom_property(PREVIOUS_SPAN_PROPERTY)
            lines = "\n".join(f"  {m}" for m in drifted)
            parts.append(f"Drift against span {previous} beyond the thresholds:\n{lines}")
        raise DataAnomaliesError("\n".join(parts))
    return {"anomaly_count": 0, "drift_count": 0}
