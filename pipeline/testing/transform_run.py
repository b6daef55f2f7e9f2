"""The Transform executor alone, outside a pipeline: what bench/transform_bench.py and the
executor's tests run, so both compare TFX's stock executor and this project's on the same
input (ExampleGen then the RowCleaner, as in the pipeline) with the pipeline's own Transform
arguments (pipeline.pipeline.transform_component)."""

from __future__ import annotations

import collections
import glob
import os
import shutil
from pathlib import Path

from pipeline.config import PipelineConfig, in_memory_beam_args


def prepare_examples(
    data_root: str, out_root: str, config: PipelineConfig, beam_args: list[str] | None = None
) -> str:
    """CsvExampleGen (the project's executor, the pipeline's split) over data_root/span-1, then
    the RowCleaner with the curated schema; returns the cleaned Examples' URI."""
    from google.protobuf import json_format
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts

    from pipeline.ingest.csv_example_gen import StreamingCsvExampleGenExecutor
    from pipeline.ingest.sources import output_config
    from pipeline.validation import quarantine as q
    from pipeline.validation.row_cleaner import Executor as RowCleanerExecutor
    from pipeline.validation.row_cleaner import QuarantinedExamples

    context = BaseBeamExecutor.Context(beam_pipeline_args=beam_args or in_memory_beam_args())
    raw = standard_artifacts.Examples()
    raw.uri = os.path.join(out_root, "raw_examples")
    input_config = example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name="single_split", pattern="span-1/*")]
    )
    StreamingCsvExampleGenExecutor(context).Do(
        {},
        {"examples": [raw]},
        {
            "input_base": data_root,
            "input_config": json_format.MessageToJson(input_config),
            "output_config": json_format.MessageToJson(output_config()),
            "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
        },
    )
    cleaned = standard_artifacts.Examples()
    cleaned.uri = os.path.join(out_root, "examples")
    quarantined = QuarantinedExamples()
    quarantined.uri = os.path.join(out_root, "quarantine")
    RowCleanerExecutor(context).Do(
        {"examples": [raw], "schema": [schema_artifact(config, out_root)]},
        {q.CLEANED_EXAMPLES: [cleaned], q.QUARANTINE: [quarantined]},
        {},
    )
    return cleaned.uri


def schema_artifact(config: PipelineConfig, out_root: str):
    """The curated schema as a Schema artifact (a directory holding schema.pbtxt)."""
    from tfx.types import standard_artifacts

    schema = standard_artifacts.Schema()
    schema.uri = os.path.join(out_root, "schema")
    os.makedirs(schema.uri, exist_ok=True)
    shutil.copy(config.schema_path, os.path.join(schema.uri, "schema.pbtxt"))
    return schema


def run_transform(
    executor_cls: type,
    examples_uri: str,
    out_root: str,
    config: PipelineConfig,
    beam_args: list[str] | None = None,
) -> dict[str, str]:
    """One Transform executor over the Examples at examples_uri (splits train and eval), with
    the exec properties the pipeline's Transform node carries. Returns the output URIs by key."""
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.types import Channel, standard_artifacts

    from modules import dataset_spec
    from pipeline.pipeline import transform_component, user_code_config

    spec = dataset_spec.load(config.dataset)
    component = transform_component(
        config,
        Channel(type=standard_artifacts.Examples),
        Channel(type=standard_artifacts.Schema),
        user_code_config(config, spec),
    )
    exec_properties = {k: v for k, v in component.exec_properties.items() if v is not None}
    examples = standard_artifacts.Examples()
    examples.uri = examples_uri
    examples.split_names = '["train", "eval"]'
    outputs = {}
    for key, channel in component.outputs.items():
        artifact = channel.type()
        artifact.uri = os.path.join(out_root, key)
        os.makedirs(artifact.uri, exist_ok=True)
        outputs[key] = [artifact]
    context = BaseBeamExecutor.Context(
        beam_pipeline_args=beam_args or in_memory_beam_args(),
        tmp_dir=os.path.join(out_root, ".temp"),
    )
    executor_cls(context).Do(
        {"examples": [examples], "schema": [schema_artifact(config, out_root)]},
        outputs,
        exec_properties,
    )
    return {key: artifacts[0].uri for key, artifacts in outputs.items()}


def transformed_rows(transformed_examples_uri: str, split: str) -> collections.Counter:
    """The materialized split's examples, parsed, as a multiset of canonical rows (the order of
    records across shards is Beam's, not the data's)."""
    import tensorflow as tf

    rows: collections.Counter = collections.Counter()
    files = sorted(glob.glob(os.path.join(transformed_examples_uri, f"Split-{split}", "*")))
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
        example = tf.train.Example.FromString(record)
        row = []
        for name, feature in sorted(example.features.feature.items()):
            kind = feature.WhichOneof("kind")
            row.append((name, kind, tuple(getattr(feature, kind).value) if kind else ()))
        rows[tuple(row)] += 1
    return rows


def float_gap(a: collections.Counter, b: collections.Counter) -> float | None:
    """The largest difference between the float values of two multisets of rows, relative to
    the value (absolute below 1), or None when anything else differs (ints, bytes, which
    features, how many rows). Rows are paired by their non-float values, and within those by
    their floats in sorted order."""

    def grouped(rows: collections.Counter) -> dict:
        groups = collections.defaultdict(list)
        for row in rows.elements():
            exact = tuple((n, k, v if k != "float_list" else len(v)) for n, k, v in row)
            floats = tuple(x for _, k, v in row if k == "float_list" for x in v)
            groups[exact].append(floats)
        return groups

    left, right = grouped(a), grouped(b)
    if left.keys() != right.keys():
        return None
    gap = 0.0
    for key, xs in left.items():
        ys = right[key]
        if len(xs) != len(ys):
            return None
        for x, y in zip(sorted(xs), sorted(ys), strict=True):
            gap = max([gap, *(abs(u - v) / max(1.0, abs(u)) for u, v in zip(x, y, strict=True))])
    return gap


def graph_files(transform_graph_uri: str) -> dict[str, bytes]:
    """Every file of a transform_graph output except the SavedModel's graph protos and
    variables (which embed unique names and temp paths): the metadata (schemas) and the assets
    (vocabularies), by path relative to the output."""
    root = Path(transform_graph_uri)
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "variables" not in p.parts and p.suffix != ".pb"
    }
