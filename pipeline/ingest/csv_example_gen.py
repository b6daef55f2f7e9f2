"""CsvExampleGen's executor, minus its one buffer that grows with the input.

TFX 1.16's CSV source parses every line, infers the column types with a CombineGlobally over
those parsed lines, and converts the same parsed lines to tf.Examples with the types as a side
input. The conversion cannot start before the inference has seen the last line, so Beam keeps
every parsed line until then: the DirectRunner buffers the whole parsed span in memory
(about a fifth of ExampleGen's memory growth with rows, measured in docs/performance.md).

Here the conversion reads and parses the files a second time, from its own file list, and so
streams: the type inference follows the stock rule over all lines, the examples are the same,
and parsing twice costs less than holding the span. Both passes work a column at a time
(Arrow's CSV reader, tfx_bsl's C++ example encoder: pipeline/ingest/csv_arrow.py) instead of
building one Python dict of protos per row, and on byte ranges of the files (csv_arrow.file_ranges)
rather than whole files, so Beam's multi-processing mode parses one large file on every worker.
The executor's elements are lists of records, one per Arrow block (the batched write path of
pipeline/ingest/example_shuffle.py).
"""

from __future__ import annotations

import os
from typing import Any

import apache_beam as beam
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.dsl.io import fileio
from tfx.types import standard_component_specs
from tfx.utils import io_utils

from pipeline.ingest import csv_arrow
from pipeline.ingest.example_shuffle import BoundedShuffleWriteMixin


@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
class StreamingCsvToExample(beam.PTransform):
    """CSV files -> serialized tf.Examples, as TFX's _CsvToExample, without buffering the
    parsed lines, parsed and encoded column-wise (pipeline/ingest/csv_arrow.py)."""

    def __init__(self, exec_properties: dict[str, Any], split_pattern: str) -> None:
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        self._csv_pattern = os.path.join(input_base, split_pattern)

    def _to_records(self, column_names: list[str], column_types: Any) -> beam.PTransform:
        return beam.FlatMap(_range_to_records, column_names, column_types)

    def expand(self, pipeline: beam.Pipeline) -> beam.PCollection:
        csv_files = fileio.glob(self._csv_pattern)
        if not csv_files:
            raise RuntimeError(f"Split pattern {self._csv_pattern} does not match any files.")
        column_names = io_utils.load_csv_column_names(csv_files[0])
        for csv_file in csv_files[1:]:
            if io_utils.load_csv_column_names(csv_file) != column_names:
                raise RuntimeError(
                    f"Files in same split {self._csv_pattern} have different header."
                )
        # Ranges of about csv_arrow.RANGE_BYTES (plain tuples: Beam's coder for a NamedTuple
        # would be a schema'd row): in multi-processing mode one file is read by every worker.
        ranges = [tuple(r) for path in csv_files for r in csv_arrow.file_ranges(path, column_names)]
        column_types = beam.pvalue.AsSingleton(
            pipeline
            | "CreateRanges" >> beam.Create(ranges)
            | "InferColumnTypes" >> beam.Map(_range_column_types, column_names)
            | "MergeColumnTypes"
            >> beam.CombineGlobally(lambda per_file: csv_arrow.merge_column_types(list(per_file)))
        )
        return (
            pipeline
            | "CreateRangesAgain" >> beam.Create(ranges)
            | "ToTFExample" >> self._to_records(column_names, column_types)
        )


def _range_column_types(part: tuple, column_names: list[str]) -> dict:
    return csv_arrow.range_column_types(csv_arrow.FileRange(*part), column_names)


def _range_to_records(part: tuple, column_names: list[str], types: dict) -> Any:
    return csv_arrow.range_to_records(csv_arrow.FileRange(*part), column_names, types)


def _range_to_batches(part: tuple, column_names: list[str], types: dict) -> Any:
    return csv_arrow.range_to_batches(csv_arrow.FileRange(*part), column_names, types)


@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(list[bytes])
class StreamingCsvToExampleBatches(StreamingCsvToExample):
    """StreamingCsvToExample with one element per Arrow block: a list of serialized
    tf.Examples (csv_arrow.range_to_batches), for the batched write path."""

    def _to_records(self, column_names: list[str], column_types: Any) -> beam.PTransform:
        return beam.FlatMap(_range_to_batches, column_names, column_types)


class StreamingCsvExampleGenExecutor(BoundedShuffleWriteMixin, csv_executor.Executor):
    """TFX's CsvExampleGen executor with the streaming CSV source, written after a shuffle that
    spills to disk instead of TFX's in-memory Reshuffle (pipeline/ingest/example_shuffle.py),
    a block of rows per Beam element (the mixin's batched path)."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return StreamingCsvToExample

    def GetInputSourceToBatchesPTransform(self) -> beam.PTransform:
        return StreamingCsvToExampleBatches
