"""The streaming CSV ExampleGen executor writes exactly the examples TFX's own executor writes."""

from __future__ import annotations

import glob
import json
import os

import pytest

from pipeline.config import in_memory_beam_args
from pipeline.testing.samples import write_sample


def _run(executor_cls, data_root, out) -> dict[str, list[bytes]]:
    import tensorflow as tf
    from google.protobuf import json_format
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts

    examples = standard_artifacts.Examples()
    examples.uri = str(out)
    output_config = example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[
                example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=4),
                example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1),
            ]
        )
    )
    input_config = example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name="single_split", pattern="span-1/*.csv")]
    )
    properties = {
        "input_base": str(data_root),
        "input_config": json_format.MessageToJson(input_config),
        "output_config": json_format.MessageToJson(output_config),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
        "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
    }
    context = BaseBeamExecutor.Context(beam_pipeline_args=in_memory_beam_args())
    executor_cls(context).Do({}, {"examples": [examples]}, properties)
    found = {}
    for split in json.loads(examples.split_names):
        files = glob.glob(os.path.join(str(out), f"Split-{split}", "*"))
        # Compared as Examples (deterministically serialized): TFX's executor writes its
        # protos' own serialization, this project's the key-sorted one (csv_arrow.py).
        found[split] = sorted(
            tf.train.Example.FromString(r.numpy()).SerializeToString(deterministic=True)
            for r in tf.data.TFRecordDataset(files, compression_type="GZIP")
        )
    return found


@pytest.mark.slow
def test_streaming_executor_writes_the_stock_examples(tmp_path):
    from tfx.components.example_gen.csv_example_gen.executor import Executor

    from pipeline.ingest.csv_example_gen import StreamingCsvExampleGenExecutor

    data = write_sample(tmp_path / "data", rows=600)
    # A second file in the span: both are read, once per pass.
    second = data / "span-1" / "more.csv"
    lines = (data / "span-1" / "data.csv").read_text().splitlines(keepends=True)
    second.write_text(lines[0] + "".join(lines[1:101]))
    stock = _run(Executor, data, tmp_path / "stock")
    streaming = _run(StreamingCsvExampleGenExecutor, data, tmp_path / "streaming")
    assert set(stock) == {"train", "eval"}
    assert streaming == stock
    assert sum(len(v) for v in stock.values()) == 700


def test_pipeline_uses_the_streaming_executor_and_no_compiled_keras_metrics(tmp_path):
    from pipeline.config import PipelineConfig
    from pipeline.ingest.csv_example_gen import StreamingCsvExampleGenExecutor
    from pipeline.pipeline import create_pipeline, eval_config

    config = PipelineConfig(output_dir=str(tmp_path))
    nodes = {c.id: c for c in create_pipeline(config).components}
    assert nodes["CsvExampleGen"].executor_spec.executor_class is StreamingCsvExampleGenExecutor
    options = eval_config(config).options
    assert options.HasField("include_default_metrics")
    assert not options.include_default_metrics.value
