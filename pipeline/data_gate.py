"""DataGate: the component that stops the pipeline when ExampleValidator found anomalies.

TFX 1.16's ExampleValidator only records anomalies; nothing downstream reads them, so a bad
span would still be trained on and pushed. The gate fails its execution instead, which stops
the run (locally and on Kubeflow) before Transform, Trainer and Pusher; the runner then
prints the report.
"""

from tfx import v1 as tfx
from tfx.dsl.component.experimental.annotations import OutputDict
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils

from pipeline.anomalies import load_anomalies


class DataAnomaliesError(RuntimeError):
    """Raised by the gate; its message lists every anomaly."""


@component
def DataGate(  # noqa: N802 - TFX components are named like classes
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
) -> OutputDict(anomaly_count=int):
    """Pass when no split has anomalies; otherwise fail with the list."""
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    found = load_anomalies(anomalies.uri, splits)
    if found:
        lines = "\n".join(f"  {a}" for a in found)
        raise DataAnomaliesError(
            f"ExampleValidator found {len(found)} anomalies in {anomalies.uri}:\n{lines}"
        )
    return {"anomaly_count": 0}
