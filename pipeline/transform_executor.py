"""TFX's Transform executor with faster record I/O; what tf.Transform computes is unchanged.

Why: at 1M rows Transform was the slowest stage (4,625 rows/s), and a profile of TFX's executor
(docs/performance.md, "Issue 26, third pass") put much of its time in per-record Python I/O,
not in tf.Transform: Beam's pure-Python TFRecord reader (framing and CRC per record, then
BatchElements batching records one Beam element at a time) and Beam's TFRecord sink, which
makes a zlib call per record after a Beam element per serialized example.

FastIOTransformExecutor changes exactly two steps of TFX's TransformProcessor:

- reading: each split's TFXIO is TFX's own TFExampleRecord (same schema, projection, decoder,
  raw-record column) except that its BeamSource reads each input file with TensorFlow's C++
  TFRecord reader, `batch_size` records at a time, and decodes each batch with the same
  tfx_bsl decoder into the same Arrow RecordBatches: one Beam element per batch instead of one
  per record. A gzipped TFRecord file cannot be split, so Beam's reader also read each file in
  one worker: the parallelism is the same.
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
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import types
from tfx.components.transform import executor as tfx_transform
from tfx.components.transform import labels
from tfx_bsl.coders import example_coder
from tfx_bsl.tfxio import record_based_tfxio, tf_example_record

from pipeline import tfrecord_shards

# Records per decoded batch: tfx_bsl's cap for its adaptive batching (batch_util._BATCH_SIZE_CAP),
# which the stock reader reaches on any split of more than a few thousand rows.
READ_BATCH_SIZE = 1000


def _gzip_files(file_patterns: list[str]) -> list[str] | None:
    """The files the patterns match, sorted, or None when any is not a gzipped TFRecord file
    (what TFX's ExampleGen and the RowCleaner write) or nothing matches: the stock reader then
    handles (or rejects) them as it always did."""
    files = sorted({f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)})
    if not files or not all(f.endswith(".gz") for f in files):
        return None
    return files


class _ReadAndDecode(beam.DoFn):
    """A gzipped TFRecord file -> its records in order, decoded `batch_size` at a time to Arrow
    RecordBatches by tfx_bsl's ExamplesToRecordBatchDecoder (what _DecodeBatchExamplesDoFn
    does), with the raw records appended as a column when the TFXIO asks for one."""

    def __init__(
        self, schema: schema_pb2.Schema | None, raw_record_column: str | None, batch_size: int
    ) -> None:
        self._schema_bytes = schema.SerializeToString() if schema is not None else None
        self._raw_record_column = raw_record_column
        self._batch_size = batch_size
        self._decoder = None

    def setup(self) -> None:
        args = [self._schema_bytes] if self._schema_bytes is not None else []
        self._decoder = example_coder.ExamplesToRecordBatchDecoder(*args)

    def process(self, path: str) -> Iterator[pa.RecordBatch]:
        for records in tfrecord_shards.record_batches(path, self._batch_size):
            decoded = self._decoder.DecodeBatch(records)
            if self._raw_record_column is None:
                yield decoded
            else:
                yield record_based_tfxio.AppendRawRecordColumn(
                    decoded, self._raw_record_column, records
                )


class BatchedTFExampleRecord(tf_example_record.TFExampleRecord):
    """TFX's TFXIO for tf.Examples in gzipped TFRecord files, read in batches (see module doc).
    Everything but BeamSource (schemas, tensor representations, projection, the TF dataset
    readers) is TFExampleRecord's."""

    def __init__(
        self,
        file_pattern: list[str] | str,
        files: list[str],
        schema: schema_pb2.Schema | None = None,
        raw_record_column_name: str | None = None,
        telemetry_descriptors: list[str] | None = None,
        batch_size: int = READ_BATCH_SIZE,
    ) -> None:
        super().__init__(
            file_pattern=file_pattern,
            schema=schema,
            raw_record_column_name=raw_record_column_name,
            telemetry_descriptors=telemetry_descriptors,
        )
        self._files = list(files)
        self._read_batch_size = batch_size

    @classmethod
    def replacing(cls, stock: tf_example_record.TFExampleRecord) -> tf_example_record.TFXIO:
        """This reader in place of TFX's `stock` one, or `stock` itself when its files are not
        all gzipped TFRecord files."""
        files = _gzip_files(stock._file_pattern)  # noqa: SLF001 - the same TFXIO's own fields
        if files is None:
            return stock
        return cls(
            file_pattern=stock._file_pattern,  # noqa: SLF001
            files=files,
            schema=stock._schema,  # noqa: SLF001
            raw_record_column_name=stock.raw_record_column_name,
            telemetry_descriptors=stock.telemetry_descriptors,
        )

    def _ProjectImpl(self, tensor_names: list[str]) -> tf_example_record.TFXIO:  # noqa: N802
        projected = super()._ProjectImpl(tensor_names)
        return BatchedTFExampleRecord(
            file_pattern=self._file_pattern,
            files=self._files,
            schema=projected._schema,  # noqa: SLF001 - TFX's projection, as TFX computes it
            raw_record_column_name=self.raw_record_column_name,
            telemetry_descriptors=self.telemetry_descriptors,
            batch_size=self._read_batch_size,
        )

    def BeamSource(self, batch_size: int | None = None) -> beam.PTransform:  # noqa: N802
        """PCollection[pa.RecordBatch] of every file's records; `batch_size` as TFX passes it
        (None: tfx_bsl's adaptive batching, whose cap this reader uses)."""
        files = self._files
        decode = _ReadAndDecode(
            self._GetSchemaForDecoding(),
            self.raw_record_column_name,
            batch_size or self._read_batch_size,
        )

        @beam.typehints.with_input_types(Any)
        @beam.typehints.with_output_types(pa.RecordBatch)
        def read(pcoll_or_pipeline: Any) -> beam.PCollection:
            return (
                pcoll_or_pipeline
                | "Files" >> beam.Create(files)
                | "ReadAndDecode" >> beam.ParDo(decode)
            )

        return beam.ptransform_fn(read)()


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
        stock = super()._CreateTFXIO(dataset, schema)
        if type(stock) is not tf_example_record.TFExampleRecord:
            return stock
        return BatchedTFExampleRecord.replacing(stock)

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
