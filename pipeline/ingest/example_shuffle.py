"""ExampleGen's write step with a shuffle whose memory does not grow with the split.

Why: TFX's `beam.Reshuffle()` is a GroupByKey the DirectRunner holds in memory, so ExampleGen's
peak grew with the split; here each record goes to one of `BUCKETS` temporary files under the
output artifact and each bucket is shuffled on its own (docs/design.md, "ExampleGen's shuffle").
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import struct
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.transforms.window import GlobalWindows

from pipeline import tfrecord_shards
from pipeline.ingest.digests import batch_digests, record_digest

# 64 buckets: a split of 5M taxi rows (~2 GiB of serialized examples) is shuffled ~32 MiB at a
# time; a 15k-row split writes 64 small files, which costs well under a second.
BUCKETS = 64
TEMP_DIR_NAME = ".shuffle-tmp"
_LENGTH = struct.Struct("<I")
# Each bucket file is appended to in pieces of this size: a worker holds up to this much per
# bucket per split (64 x 2 x 1 MiB was ~95 MiB of a worker's ExampleGen peak, 256 KiB keeps
# ~25 MiB at the same speed; docs/performance.md, ninth pass).
_FLUSH_BYTES = 256 << 10


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

    def _append(self, bucket: int, data: bytes) -> None:
        pending = self._pending.setdefault(bucket, bytearray())
        pending += data
        if len(pending) >= _FLUSH_BYTES:
            self._flush(bucket)

    def _flush(self, bucket: int) -> None:
        import tensorflow as tf

        if bucket not in self._files:
            path = os.path.join(self._temp_dir, f"{bucket:05d}-{uuid.uuid4().hex}")
            self._files[bucket] = (path, tf.io.gfile.GFile(path, "wb"))
        self._files[bucket][1].write(bytes(self._pending[bucket]))
        self._pending[bucket] = bytearray()

    def process(self, record: bytes) -> Iterator:
        self._append(record_digest(record) % self._buckets, _LENGTH.pack(len(record)) + record)
        return ()  # records leave in finish_bundle, by bucket file

    def finish_bundle(self) -> Iterator:
        for bucket, pending in self._pending.items():
            if pending:
                self._flush(bucket)
        for bucket, (path, handle) in self._files.items():
            handle.close()
            yield GlobalWindows.windowed_value((bucket, path))


class _ScatterBatches(_Scatter):
    """_Scatter for elements that are lists of records (the batched write path)."""

    def process(self, records: list[bytes]) -> Iterator:
        buckets = batch_digests(records) % np.uint64(self._buckets)
        order = np.argsort(buckets, kind="stable")
        ordered = buckets[order]
        starts = np.flatnonzero(np.diff(ordered, prepend=np.uint64(self._buckets)))
        pack = _LENGTH.pack
        for start, stop in zip(starts, [*starts[1:], len(order)], strict=True):
            chunk = [records[i] for i in order[start:stop]]
            data = b"".join(itertools.chain.from_iterable((pack(len(r)), r) for r in chunk))
            self._append(int(ordered[start]), data)
        return ()


def shuffled_bucket(bucket: int, paths: list[str]) -> list[bytes]:
    """Every record of one bucket (all its files), in a random order seeded by the bucket."""
    records = [r for path in paths for r in read_records(path)]
    records.sort()  # the files' order depends on bundles; the shuffle's must not
    random.Random(bucket).shuffle(records)
    return records


class _ShuffledBucket(beam.DoFn):
    """Every record of one bucket (all its files), in a random order seeded by the bucket."""

    def process(self, bucket_files: tuple[int, list[str]]) -> Iterator[bytes]:
        yield from shuffled_bucket(*bucket_files)


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


class _WriteShuffledBuckets(tfrecord_shards.BundleWriter):
    """Each bucket's records, shuffled (shuffled_bucket), into one gzipped TFRecord file per
    bundle under `temp_dir`, through TensorFlow's C++ writer (one zlib stream per file, not
    Beam's Python framing and zlib call per record). tfrecord_shards.WriteShards publishes the
    files of the bundles that completed (a retried bundle's partial file is not among them)."""

    def records(self, bucket_files: tuple[int, list[str]]) -> list[bytes]:
        return shuffled_bucket(*bucket_files)


def split_indices(records: Sequence[bytes], cumulative_buckets: Sequence[int]) -> np.ndarray:
    """The output split of each serialized record, as TFX's base ExampleGen executor picks it
    (_PartitionFn without a partition feature: sha256 of the record's bytes as a big-endian
    integer, modulo the total hash buckets, bisected into the cumulative bucket counts), for a
    whole batch: one hashlib call per record, the bisection vectorised."""
    total = cumulative_buckets[-1]
    hashed = np.fromiter(
        (int.from_bytes(hashlib.sha256(r).digest(), "big") % total for r in records),
        dtype=np.int64,
        count=len(records),
    )
    return np.searchsorted(np.asarray(cumulative_buckets, dtype=np.int64), hashed, side="right")


class _SplitBatches(beam.DoFn):
    """A batch of serialized records -> one sub-batch per output split (tagged by its index)."""

    def __init__(self, cumulative_buckets: list[int]) -> None:
        self._cumulative = cumulative_buckets

    def process(self, records: list[bytes]) -> Iterator:
        splits = split_indices(records, self._cumulative)
        for index in range(len(self._cumulative)):
            chosen = np.flatnonzero(splits == index)
            if len(chosen):
                yield beam.pvalue.TaggedOutput(str(index), [records[i] for i in chosen])


class BoundedShuffleWriteMixin:
    """BaseExampleGenExecutor.Do (TFX 1.16) with each split written after a BoundedShuffle
    instead of TFX's Reshuffle; everything else (split names, payload and file format
    properties) as TFX does it. Put it first among an ExampleGen executor's bases.

    An executor whose source can produce lists of serialized records (one Beam element per
    list: GetInputSourceToBatchesPTransform) gets the batched path: TFX's hash split applied
    to a list at a time (split_indices), the lists scattered to the bucket files, and each
    bucket shuffled and written by TensorFlow's gzip TFRecord writer (_WriteShuffledBuckets,
    tfrecord_shards.WriteShards). Beam's per-element cost (about 10 us a row across TFX's
    Partition, the scatter and WriteToTFRecord) is then paid per list; the rows, their splits
    and the file names are the ones the per-record path writes."""

    def GetInputSourceToBatchesPTransform(self) -> Any:  # noqa: N802 - TFX's naming
        """A PTransform like GetInputSourceToExamplePTransform's whose elements are lists of
        serialized records, or None (the per-record path)."""
        return None

    def _batches_by_beam(
        self, pipeline: beam.Pipeline, exec_properties: dict, input_config: Any, output_config: Any
    ) -> dict[str, beam.PCollection] | None:
        """GenerateExamplesByBeam (TFX 1.16) for a batch source: the split name -> its lists
        of records; None when there is no batch source or the split is by a feature."""
        from tfx.components.example_gen import utils

        source = self.GetInputSourceToBatchesPTransform()
        split_config = output_config.split_config
        if source is None or split_config.HasField("partition_feature_name"):
            return None
        names = utils.generate_output_split_names(input_config, output_config)
        exec_properties["_beam_pipeline_args"] = self._beam_pipeline_args or []
        if not split_config.splits:
            return {
                name: pipeline
                | f"InputToRecordBatches[{split.name}]" >> source(exec_properties, split.pattern)
                for name, split in zip(names, input_config.splits, strict=True)
            }
        if len(input_config.splits) != 1:
            raise ValueError("input must have only one split when output split is specified.")
        cumulative = list(itertools.accumulate(s.hash_buckets for s in split_config.splits))
        tags = [str(i) for i in range(len(cumulative))]
        parts = (
            pipeline
            | "InputToRecordBatches" >> source(exec_properties, input_config.splits[0].pattern)
            | "SplitData" >> beam.ParDo(_SplitBatches(cumulative)).with_outputs(*tags)
        )
        return {name: parts[tag] for name, tag in zip(names, tags, strict=True)}

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
            batches = self._batches_by_beam(pipeline, exec_properties, input_config, output_config)
            if batches is not None:
                for name, split in batches.items():
                    buckets_dir = os.path.join(temp_root, name, "buckets")
                    tf.io.gfile.makedirs(buckets_dir)
                    out = artifact_utils.get_split_uri(output_dict[keys.EXAMPLES_KEY], name)
                    writer = _WriteShuffledBuckets(os.path.join(temp_root, name, "out"))
                    _ = (
                        split
                        | f"Scatter[{name}]" >> beam.ParDo(_ScatterBatches(buckets_dir, BUCKETS))
                        | f"FilesByBucket[{name}]" >> beam.GroupByKey()
                        | f"Write[{name}]"
                        >> tfrecord_shards.WriteShards(
                            writer, os.path.join(out, write_split.DEFAULT_TF_RECORD_FILE_NAME)
                        )
                    )
            else:
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
