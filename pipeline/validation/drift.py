"""Drift between spans and skew between training and serving data, measured by TFDV with the
comparators the curated schema carries (`drift_comparator` / `skew_comparator`) and, on top of the
same TFDV statistics, by the sample-size-aware tests of data_stats/measures.py (TFDV's
fixed-threshold comparators alone stop same-distribution samples or miss real shifts at realistic
span sizes; figures in docs/continuous_training.md).

TFX 1.16's ExampleValidator only checks statistics against the schema. The DriftValidator
component compares the new span's statistics with the last accepted span's (picked from the
statistics every earlier run's DataGate accepted, which create_pipeline feeds it as `history`) and
writes the drift part of TFDV's result as an ExampleAnomalies artifact; the DataGate stops the
run on it and the run report prints one line per measured feature.
"""

import os

from tfx.components.statistics_gen import executor as statistics_gen_executor
from tfx.dsl.component.experimental.annotations import (
    InputArtifact,
    OutputArtifact,
    OutputDict,
    Parameter,
)
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts

from data_stats import measures as drift_measures
from data_stats.anomalies import ANOMALIES_FILE
from data_stats.compare import TESTS_FILE, compare_statistics, write_anomalies, write_tests
from metadata.store import DRIFT_VALIDATOR, PREVIOUS_SPAN_PROPERTY
from pipeline import batched_tfxio

__all__ = ["DRIFT_VALIDATOR", "PREVIOUS_SPAN_PROPERTY", "DriftValidator"]

SPAN_PROPERTY = "span"
# The train split: the data the model learns from, and 4/5 of the span. The eval split is a hash
# subset of the same span, too small on test-sized data (80 rows) for stable distances.
DRIFT_SPLITS = "train"


def previous_span_statistics(current, history):
    """The drift baseline: the newest statistics of the highest span below `current`'s span in
    `history`, or None. create_pipeline passes the DataGate's accepted statistics as `history`,
    so this is the last span that passed the gate, never a rejected one."""
    earlier = [a for a in history if a.span < current.span]
    if not earlier:
        return None
    return max(earlier, key=lambda a: (a.span, a.mlmd_artifact.create_time_since_epoch, a.id))


# ---- the pipeline components ---------------------------------------------------------------------
_Stats = standard_artifacts.ExampleStatistics


def span_of(artifact) -> int:
    """An artifact's span: TFX 1.16's ExampleGen records it as a custom property."""
    if artifact.has_custom_property(SPAN_PROPERTY):
        return artifact.get_int_custom_property(SPAN_PROPERTY)
    return artifact.span


class SpanStatisticsGenExecutor(statistics_gen_executor.Executor):
    """StatisticsGen whose statistics carry the examples' span (the stock one copies the unset
    `span` property, 0), so the DriftValidator can tell spans apart; it reads gzipped splits a
    batch of records per Beam element (pipeline/batched_tfxio.py), TFDV computes as before."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX API
        with batched_tfxio.batched_split_reads():
            result = super().Do(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        for statistics in output_dict["statistics"]:
            statistics.span = span_of(examples)
        return result


@component
def DriftValidator(  # noqa: N802 - TFX components are named like classes
    statistics: InputArtifact[_Stats],
    schema: InputArtifact[standard_artifacts.Schema],
    drift: OutputArtifact[standard_artifacts.ExampleAnomalies],
    history: InputArtifact[list[_Stats]] = None,
    splits: Parameter[str] = DRIFT_SPLITS,
    feature_tests: Parameter[str] = "",
) -> OutputDict(drifted_features=int, previous_span=int):
    """Compare the statistics of `splits` (comma-separated) with the previous span's (the
    highest span in `history` below the current one) under the schema's drift comparators and
    the sample-size-aware tests (data_stats/measures.py).
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
