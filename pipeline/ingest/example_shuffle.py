"""ExampleGen's write step with a shuffle whose memory does not grow with the split.

Why: TFX's `beam.Reshuffle()` is a GroupByKey the DirectRunner holds in memory, so ExampleGen's
peak grew with the split; here each record goes to one of `BUCKETS` temporary files under the
output artifact and each bucket is shuffled on its own (docs/design.md, "ExampleGen's shuffle").
"""

from __future__ import annotations

import os
import random
import struct
import uuid
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from pipeline.ingest.digests import record_digest

# 64 buckets: a split of 5M taxi rows (~2 GiB of serialized examples) is shuffled ~32 MiB at a
# time; a 15k-row split writes 64 small files, which costs well under a second.
BUCKETS = 64
TEMP_DIR_NAME = ".shuffle-tmp"
_LENGTH = struct.Struct("<I")
_FLUSH_BYTES = 1 << 20


def read_records(path: str) -> list[bytes]:
    """The records of one temporary bucket file (length-prefixed, see _Scatter)."""
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    records, offset = [], 0
    while offset < len(data):
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        records.append(data[offset : offset + length])
        offset += length
    return records


class _Scatter(beam.DoFn):
    """Appends each record to its bucket's file (one file per bucket per bundle); emits
    (bucket, file) for every file it wrote, when the bundle ends."""

    def __init__(self, temp_dir: str, buckets: int) -> None:
        self._temp_dir = temp_dir
        self._buckets = buckets

    def start_bundle(self) -> None:
        self._pending: dict[int, bytearray] = {}
        self._files: dict[int, tuple[str, Any]] = {}

    def _flush(self, bucket: int) -> None:
        import tensorflow as tf

        if bucket not in self._files:
            path = os.path.join(self._temp_dir, f"{bucket:05d}-{uuid.uuid4().hex}")
            self._files[bucket] = (path, tf.io.gfile.GFile(path, "wb"))
        self._files[bucket][1].write(bytes(self._pending[bucket]))
        self._pending[bucket] = bytearray()

    def process(self, record: bytes) -> Iterator:
        bucket = record_digest(record) % self._buckets
        pending = self._pending.setdefault(bucket, bytearray())
        pending += _LENGTH.pack(len(record))
        pending += record
        if len(pending) >= _FLUSH_BYTES:
            self._flush(bucket)
        return ()  # records leave in finish_bundle, by bucket file

    def finish_bundle(self) -> Iterator:
        for bucket, pending in self._pending.items():
            if pending:
                self._flush(bucket)
        for bucket, (path, handle) in self._files.items():
            handle.close()
            yield GlobalWindows.windowed_value((bucket, path))


class _ShuffledBucket(beam.DoFn):
    """Every record of one bucket (all its files), in a random order seeded by the bucket."""

    def process(self, bucket_files: tuple[int, list[str]]) -> Iterator[bytes]:
        bucket, paths = bucket_files
        records = [r for path in paths for r in read_records(path)]
        records.sort()  # the files' order depends on bundles; the shuffle's must not
        random.Random(bucket).shuffle(records)
        yield from records


class BoundedShuffle(beam.PTransform):
    """Serialized records -> the same records in random order, memory bounded by one bucket."""

    def __init__(self, temp_dir: str, buckets: int = BUCKETS) -> None:
        super().__init__()
        self._temp_dir = temp_dir
        self._buckets = buckets

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        import tensorflow as tf

        tf.io.gfile.makedirs(self._temp_dir)
        return (
            records
            | "Scatter" >> beam.ParDo(_Scatter(self._temp_dir, self._buckets))
            | "FilesByBucket" >> beam.GroupByKey()
            | "ShuffleEachBucket" >> beam.ParDo(_ShuffledBucket())
        )


class BoundedShuffleWriteMixin:
    """BaseExampleGenExecutor.Do (TFX 1.16) with each split written after a BoundedShuffle
    instead of TFX's Reshuffle; everything else (split names, payload and file format
    properties) as TFX does it. Put it first among an ExampleGen executor's bases."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX API
        import tensorflow as tf
        from tfx.components.example_gen import utils, write_split
        from tfx.proto import example_gen_pb2
        from tfx.types import artifact_utils
        from tfx.types import standard_component_specs as keys
        from tfx.utils import proto_utils

        payload_format = exec_properties.get(keys.OUTPUT_DATA_FORMAT_KEY)
        if payload_format == example_gen_pb2.PayloadFormat.FORMAT_PARQUET:
            return super().Do(input_dict, output_dict, exec_properties)
        self._log_startup(input_dict, output_dict, exec_properties)
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[keys.INPUT_CONFIG_KEY], input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[keys.OUTPUT_CONFIG_KEY], output_config)
        examples = artifact_utils.get_single_instance(output_dict[keys.EXAMPLES_KEY])
        examples.split_names = artifact_utils.encode_split_names(
            utils.generate_output_split_names(input_config, output_config)
        )
        file_format = exec_properties.get(
            keys.OUTPUT_FILE_FORMAT_KEY, example_gen_pb2.FILE_FORMAT_UNSPECIFIED
        )
        temp_root = os.path.join(examples.uri, TEMP_DIR_NAME)
        with self._make_beam_pipeline() as pipeline:
            splits = self.GenerateExamplesByBeam(pipeline, exec_properties)
            for name, split in splits.items():
                out = artifact_utils.get_split_uri(output_dict[keys.EXAMPLES_KEY], name)
                _ = (
                    split
                    | f"MaybeSerialize[{name}]" >> beam.ParDo(write_split.MaybeSerialize())
                    | f"Shuffle[{name}]" >> BoundedShuffle(os.path.join(temp_root, name))
                    | f"Write[{name}]"
                    >> beam.io.WriteToTFRecord(
                        os.path.join(out, write_split.DEFAULT_TF_RECORD_FILE_NAME),
                        file_name_suffix=".gz",
                    )
                )
        tf.io.gfile.rmtree(temp_root)
        _set_formats(output_dict[keys.EXAMPLES_KEY], payload_format, file_format)
        return None


def _set_formats(artifacts: list, payload_format: Any, file_format: Any) -> None:
    from tfx.components.example_gen import write_split
    from tfx.components.util import examples_utils

    for artifact in artifacts:
        if payload_format:
            examples_utils.set_payload_format(artifact, payload_format)
        if file_format:
            examples_utils.set_file_format(artifact, write_split.to_file_format_str(file_format))
