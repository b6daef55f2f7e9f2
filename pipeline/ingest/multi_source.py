"""ExampleGen components for sources beside the default CSV (see pipeline/ingest/sources.py).

SourcesExampleGen   one or several SourceSpecs -> one Examples artifact (train/eval 4:1 by hash).
                    Its driver resolves every source's span before the cache check (files: TFX's
                    span-{SPAN} matching and file fingerprint; PostgreSQL: max(span_column) and
                    the span's row count), so new data re-runs it and unchanged data is cached.
                    With several sources each row gets a `source` feature (its source's label)
                    and the artifact a `sources` custom property listing them.
ParquetExecutor     FileBasedExampleGen's executor for Parquet. TFX 1.16's own
                    (custom_executors.parquet_executor, via utils.dict_to_example) writes a 0 or
                    0.0 as a missing value; this one keeps zeros and writes NULL as an empty list
                    of the column's kind, exactly as CsvExampleGen writes an empty cell.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import tensorflow as tf
from tfx import types
from tfx.components.example_gen import base_example_gen_executor, driver
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import proto_utils

from pipeline.ingest import sources as sources_lib
from pipeline.ingest.example_shuffle import BoundedShuffleWriteMixin

SOURCES_KEY = "sources"
METRICS_NAMESPACE = "example_gen_sources"


# ---- rows -> tf.Example --------------------------------------------------------------------------
def _arrow_kind(arrow_type) -> str:
    import pyarrow as pa

    if pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type):
        return "int64"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "float"
    return "bytes"


def _feature(kind: str, value: Any) -> tf.train.Feature:
    if kind == "int64":
        return tf.train.Feature(
            int64_list=tf.train.Int64List(value=[] if value is None else [int(value)])
        )
    if kind == "float":
        return tf.train.Feature(
            float_list=tf.train.FloatList(value=[] if value is None else [float(value)])
        )
    if value is None:
        values = []
    elif isinstance(value, bytes):
        values = [value]
    else:
        values = [str(value).encode("utf-8")]
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def record_batch_to_examples(batch) -> Iterator[tf.train.Example]:
    """One tf.Example per row of a pyarrow Table/RecordBatch, typed by its Arrow schema."""
    columns = [
        (name, _arrow_kind(batch.schema.field(name).type), batch.column(name).to_pylist())
        for name in batch.schema.names
    ]
    for row in range(batch.num_rows):
        yield tf.train.Example(
            features=tf.train.Features(
                feature={name: _feature(kind, values[row]) for name, kind, values in columns}
            )
        )


@beam.ptransform_fn
def ReadParquet(pipeline: beam.Pipeline, file_pattern: str):  # noqa: N802
    return (
        pipeline
        | "ReadParquetBatched" >> beam.io.ReadFromParquetBatched(file_pattern)
        | "ToTFExample" >> beam.FlatMap(record_batch_to_examples)
    )


class ParquetExecutor(BoundedShuffleWriteMixin, base_example_gen_executor.BaseExampleGenExecutor):
    """FileBasedExampleGen executor for Parquet files (zero-safe, see the module docstring)."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802
        @beam.ptransform_fn
        def _ParquetToExample(pipeline, exec_properties, split_pattern):  # noqa: N802
            base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
            return pipeline | ReadParquet(os.path.join(base, split_pattern))

        return _ParquetToExample


def _add_source(example: tf.train.Example, label: bytes) -> tf.train.Example:
    tagged = tf.train.Example()
    tagged.CopyFrom(example)
    tagged.features.feature[sources_lib.SOURCE_FEATURE].bytes_list.value.append(label)
    return tagged


def read_source(pipeline: beam.Pipeline, spec: sources_lib.SourceSpec, resolved: dict, name: str):
    """One source's rows as tf.Examples (`resolved`: its span and resolved file pattern)."""
    if spec.kind == "csv":
        from tfx.components.example_gen.csv_example_gen.executor import _CsvToExample

        return pipeline | name >> _CsvToExample(
            {standard_component_specs.INPUT_BASE_KEY: spec.path}, resolved["pattern"]
        )
    if spec.kind == "parquet":
        return pipeline | name >> ReadParquet(os.path.join(spec.path, resolved["pattern"]))
    if spec.kind == "tfrecord":
        return (
            pipeline
            | name >> beam.io.ReadFromTFRecord(os.path.join(spec.path, resolved["pattern"]))
            | f"Parse[{name}]" >> beam.Map(tf.train.Example.FromString)
        )
    if spec.kind == "postgresql":
        from pipeline.ingest.postgres_source import ReadPostgres

        return pipeline | name >> ReadPostgres(spec, resolved["span"])
    raise sources_lib.SourceError(f"{spec.kind} sources are not read by SourcesExampleGen")


def resolve(spec: sources_lib.SourceSpec) -> dict:
    """{"span", "pattern", "fingerprint"} of one source now."""
    if spec.kind in sources_lib.FILE_KINDS:
        span, pattern, fingerprint = sources_lib.resolve_file_source(spec)
        return {"span": span, "pattern": pattern, "fingerprint": fingerprint}
    from pipeline.ingest.postgres_source import resolve_span

    span, fingerprint = resolve_span(spec)
    return {"span": span, "pattern": "", "fingerprint": fingerprint}


def resolve_all(specs: tuple[sources_lib.SourceSpec, ...]) -> list[dict]:
    return [resolve(s) for s in specs]


# ---- the component -------------------------------------------------------------------------------
class SourcesExampleGenSpec(types.ComponentSpec):
    PARAMETERS = {
        SOURCES_KEY: ExecutionParameter(type=str),
        # Filled in by the driver: each source's span, resolved pattern and fingerprint.
        "resolved_sources": ExecutionParameter(type=str, optional=True),
        standard_component_specs.INPUT_CONFIG_KEY: ExecutionParameter(type=example_gen_pb2.Input),
        standard_component_specs.OUTPUT_CONFIG_KEY: ExecutionParameter(type=example_gen_pb2.Output),
        standard_component_specs.OUTPUT_DATA_FORMAT_KEY: ExecutionParameter(type=int),
        standard_component_specs.OUTPUT_FILE_FORMAT_KEY: ExecutionParameter(type=int),
    }
    INPUTS = {}
    OUTPUTS = {
        standard_component_specs.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)
    }


class SourcesDriver(driver.Driver):
    """Resolves every source's span and fingerprint before the cache lookup: the run's span is
    the highest of them; the fingerprint joins theirs."""

    def resolve_exec_properties(self, exec_properties, pipeline_info, component_info):
        del pipeline_info, component_info
        specs = sources_lib.decode_sources(exec_properties[SOURCES_KEY])
        resolved = resolve_all(specs)
        exec_properties["resolved_sources"] = json.dumps(resolved, sort_keys=True)
        exec_properties[example_gen_utils.SPAN_PROPERTY_NAME] = max(r["span"] for r in resolved)
        exec_properties[example_gen_utils.VERSION_PROPERTY_NAME] = None
        exec_properties[example_gen_utils.FINGERPRINT_PROPERTY_NAME] = "\n".join(
            r["fingerprint"] for r in resolved
        )
        return exec_properties


@beam.ptransform_fn
def _read_sources(pipeline, exec_properties, split_pattern):
    """Reads every configured source; with several, each row carries its source's label."""
    del split_pattern
    specs = sources_lib.decode_sources(exec_properties[SOURCES_KEY])
    resolved_text = exec_properties.get("resolved_sources")
    # Kubeflow runs no custom driver: resolve here then.
    resolved = json.loads(resolved_text) if resolved_text else resolve_all(specs)
    tag = len(specs) > 1
    parts = []
    for index, (spec, where) in enumerate(zip(specs, resolved, strict=True)):
        name = f"Read[{index}:{spec.kind}]"
        examples = read_source(pipeline, spec, where, name)
        if tag:
            examples = examples | f"Tag[{index}]" >> beam.Map(
                _add_source, spec.label.encode("utf-8")
            )
        parts.append(examples)
    return parts[0] if len(parts) == 1 else parts | "Merge" >> beam.Flatten()


class SourcesExecutor(BoundedShuffleWriteMixin, base_example_gen_executor.BaseExampleGenExecutor):
    """Reads every source, tags rows with their source when there are several, splits by hash."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802
        """Every source's rows as tf.Examples, tagged with their source when there are several
        (the split pattern is unused: sources name their own rows)."""
        return _read_sources

    def GenerateExamplesByBeam(self, pipeline, exec_properties):  # noqa: N802
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config
        )
        merged = pipeline | "ReadSources" >> self.GetInputSourceToExamplePTransform()(
            exec_properties, ""
        )
        buckets = []
        total = 0
        for split in output_config.split_config.splits:
            total += split.hash_buckets
            buckets.append(total)
        splits = merged | "SplitData" >> beam.Partition(
            base_example_gen_executor._PartitionFn,  # noqa: SLF001 - TFX's own hash split
            len(buckets),
            buckets,
            output_config.split_config,
        )
        return {split.name: splits[i] for i, split in enumerate(output_config.split_config.splits)}

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802
        super().Do(input_dict, output_dict, exec_properties)
        specs = sources_lib.decode_sources(exec_properties[SOURCES_KEY])
        listing = json.dumps([{"name": s.label, "from": s.describe()} for s in specs])
        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY]
        )
        examples.set_string_custom_property(sources_lib.SOURCES_PROPERTY, listing)
        if example_gen_utils.SPAN_PROPERTY_NAME not in exec_properties:
            span = max(r["span"] for r in resolve_all(specs))
            examples.set_int_custom_property(example_gen_utils.SPAN_PROPERTY_NAME, span)


class SourcesExampleGen(base_beam_component.BaseBeamComponent):
    """ExampleGen over SourceSpecs: PostgreSQL, or several sources into one artifact."""

    SPEC_CLASS = SourcesExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(SourcesExecutor)
    DRIVER_CLASS = SourcesDriver

    def __init__(self, sources: tuple[sources_lib.SourceSpec, ...]) -> None:
        sources_lib.check_combination(tuple(sources))
        spec = SourcesExampleGenSpec(
            sources=sources_lib.encode_sources(sources),
            input_config=example_gen_pb2.Input(
                splits=[example_gen_pb2.Input.Split(name="single_split", pattern="")]
            ),
            output_config=sources_lib.output_config(),
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            examples=types.Channel(type=standard_artifacts.Examples),
        )
        super().__init__(spec=spec)
