"""TFX's Transform executor with faster record I/O; what tf.Transform computes is unchanged.

Why: at 1M rows Transform was the slowest stage (4,625 rows/s), and a profile of TFX's executor
(docs/performance.md, "Issue 26, third pass") put much of its time in per-record Python I/O,
not in tf.Transform: Beam's pure-Python TFRecord reader (framing and CRC per record, then
BatchElements batching records one Beam element at a time) and Beam's TFRecord sink, which
makes a zlib call per record after a Beam element per serialized example.

FastIOTransformExecutor changes exactly two steps of TFX's TransformProcessor:

- reading: each split's TFXIO is pipeline/batched_tfxio.py's BatchedTFExampleRecord, TFX's own
  TFExampleRecord (same schema, projection, decoder, raw-record column) whose BeamSource reads
  each input file with TensorFlow's C++ TFRecord reader a batch of records at a time: one Beam
  element per batch instead of one per record.
- writing (TFRecord materialization only): the transformed RecordBatches are encoded by TFX's
  own `_RecordBatchToExamplesFn` and written by TensorFlow's TFRecordWriter, one gzip stream
  per bundle, into a temporary directory; the files are then renamed to Beam's shard names
  (`<prefix>-SSSSS-of-NNNNN.gz`) in the split's directory. Readers glob the split directory and
  parse the records: they see the same examples.

Anything else (another payload or file format, a data view, Parquet materialization) goes
through TFX's code unchanged. TFX's executor calls its module's `TransformProcessor` by name,
so Do() swaps in the subclass for the duration of the call only (tfx_cache_fix.py is the
other narrow patch of TFX in this project).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import types
from tfx.components.transform import executor as tfx_transform
from tfx.components.transform import labels

from pipeline import batched_tfxio, tfrecord_shards


class _EncodeAndWriteShards(tfrecord_shards.BundleWriter):
    """(transformed RecordBatch, unary pass-through features) -> tf.Examples encoded by TFX's
    own _RecordBatchToExamplesFn, written into one gzipped file per bundle under `temp_dir`
    (pipeline/tfrecord_shards.py)."""

    def __init__(self, schema: schema_pb2.Schema, temp_dir: str) -> None:
        super().__init__(temp_dir)
        self._schema = schema
        self._encoder = None

    def setup(self) -> None:
        self._encoder = tfx_transform.TransformProcessor._RecordBatchToExamplesFn(self._schema)  # noqa: SLF001

    def records(self, data_batch: tuple[pa.RecordBatch, dict[str, pa.Array]]) -> Iterator[bytes]:
        for _, example in self._encoder.process(data_batch):
            yield example


class FastIOTransformProcessor(tfx_transform.TransformProcessor):
    """TFX's TransformProcessor with the batched reader and the per-bundle gzip writer."""

    def _CreateTFXIO(self, dataset, schema: schema_pb2.Schema):  # noqa: N802 - TFX's name
        return batched_tfxio.batched(super()._CreateTFXIO(dataset, schema))

    @staticmethod
    @beam.ptransform_fn
    def _EncodeAndWrite(  # noqa: N802 - TFX's name
        pcoll: beam.PCollection, schema: schema_pb2.Schema, file_format: str, output_path: str
    ) -> beam.PCollection:
        if file_format != labels.FORMAT_TFRECORD:
            return pcoll | "Stock" >> tfx_transform.TransformProcessor._EncodeAndWrite(  # noqa: SLF001
                schema=schema, file_format=file_format, output_path=output_path
            )
        writer = _EncodeAndWriteShards(schema, tfrecord_shards.temp_dir_beside(output_path))
        return pcoll | "WriteShards" >> tfrecord_shards.WriteShards(writer, output_path)


@contextlib.contextmanager
def _fast_io_processor() -> Iterator[None]:
    """TFX's executor module builds `TransformProcessor()` by name inside Do(): the subclass
    stands in for it while one Do() runs, and the module is restored after."""
    stock = tfx_transform.TransformProcessor
    tfx_transform.TransformProcessor = FastIOTransformProcessor
    try:
        yield
    finally:
        tfx_transform.TransformProcessor = stock


class FastIOTransformExecutor(tfx_transform.Executor):
    """TFX's Transform executor with FastIOTransformProcessor's reader and writer."""

    def Do(  # noqa: N802 - TFX API
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        with _fast_io_processor():
            super().Do(input_dict, output_dict, exec_properties)
