"""Gzipped TFRecord files read a batch at a time, and written a Beam bundle at a time,
published under Beam's shard names.

Why: Beam's `WriteToTFRecord` takes one element per record and frames and compresses each in
Python (a zlib call per record), and `ReadFromTFRecord` reads each record through Python
framing and CRC code. The RowCleaner and Transform read with TensorFlow's C++ reader, a batch
of records per Beam element (`record_batches`); ExampleGen, the RowCleaner and Transform write with
TensorFlow's C++ writer instead, one gzip stream per bundle (docs/performance.md, issue 26). What
every reader relies on stays Beam's: the files of a split are `<prefix>-SSSSS-of-NNNNN.gz` and
nothing else (the Trainer, StatisticsGen and the Evaluator glob the split's directory), and an
empty split still has one empty file. Files are written to a temporary directory and renamed
once every bundle is done, as Beam's sink does.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

SHARD_SUFFIX = ".gz"
# A file a BundleWriter is still writing (or wrote, until `publish` renames it).
TEMP_SUFFIX = ".tfrecord.gz"
_GZIP = "GZIP"


def records(path: str) -> Iterator[bytes]:
    """The records of one TFRecord file, compressed as its extension says (Beam's AUTO).

    Gzipped and plain files go through TensorFlow's C++ reader (the one tf.data uses; it checks
    each record's CRCs as Beam's does), about 2.5 µs a record here against about 35 µs for
    beam.io.ReadFromTFRecord's Python reader; other compressions through Beam's."""
    from apache_beam.io.filesystem import CompressionTypes

    compression = CompressionTypes.detect_compression_type(path)
    if compression in (CompressionTypes.GZIP, CompressionTypes.UNCOMPRESSED):
        import tensorflow as tf

        kind = _GZIP if compression == CompressionTypes.GZIP else ""
        yield from tf.compat.v1.io.tf_record_iterator(path, tf.io.TFRecordOptions(kind))
        return
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.io.tfrecordio import _TFRecordUtil

    with FileSystems.open(path, compression_type=compression) as f:
        while (record := _TFRecordUtil.read_record(f)) is not None:
            yield record


def record_batches(path: str, size: int) -> Iterator[list[bytes]]:
    """The records of one TFRecord file in lists of up to `size`, in the file's order."""
    batch: list[bytes] = []
    for record in records(path):
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def shard_names(prefix: str, count: int) -> list[str]:
    """Beam's names for `count` shards: `<prefix>-00000-of-0000N.gz`, ..."""
    return [f"{prefix}-{i:05d}-of-{count:05d}{SHARD_SUFFIX}" for i in range(count)]


def publish(paths: Iterable[str], prefix: str, temp_dir: str | None = None) -> list[str]:
    """Renames the written files to `shard_names(prefix, ...)` (one empty file when there are
    none, as Beam writes for an empty PCollection), then removes `temp_dir`; returns the names."""
    import tensorflow as tf

    tf.io.gfile.makedirs(os.path.dirname(prefix))
    paths = sorted(paths)
    names = shard_names(prefix, max(len(paths), 1))
    if not paths:
        tf.io.TFRecordWriter(names[0], _GZIP).close()
    for path, name in zip(paths, names, strict=False):
        tf.io.gfile.rename(path, name, overwrite=True)
    if temp_dir and tf.io.gfile.exists(temp_dir):
        tf.io.gfile.rmtree(temp_dir)
    return names


class BundleWriter(beam.DoFn):
    """Writes the serialized records `records(element)` gives for each element into one gzipped
    TFRecord file per bundle under `temp_dir` (memory: one element); emits that file's path when
    the bundle ends. Subclasses say how an element becomes records."""

    def __init__(self, temp_dir: str) -> None:
        self.temp_dir = temp_dir

    def records(self, element: Any) -> Iterable[bytes]:
        """The serialized records of one element (default: the element is a list of them)."""
        return element

    def start_bundle(self) -> None:
        self._writer: Any = None
        self._path: str | None = None

    def process(self, element: Any) -> Iterator:
        if self._writer is None:
            import tensorflow as tf

            tf.io.gfile.makedirs(self.temp_dir)
            self._path = os.path.join(self.temp_dir, f"{uuid.uuid4().hex}{TEMP_SUFFIX}")
            self._writer = tf.io.TFRecordWriter(self._path, _GZIP)
        write = self._writer.write
        for record in self.records(element):
            write(record)
        return ()

    def finish_bundle(self) -> Iterator:
        if self._writer is not None:
            self._writer.close()
            yield GlobalWindows.windowed_value(self._path)
        self._writer = self._path = None


class WriteShards(beam.PTransform):
    """Elements -> `writer`'s files, published as `prefix`'s shards once every bundle is done
    (`prefix`: the split directory joined with the file name stem, as WriteToTFRecord takes it)."""

    def __init__(self, writer: BundleWriter, prefix: str) -> None:
        super().__init__()
        self._writer, self._prefix = writer, prefix

    def expand(self, elements: beam.PCollection) -> beam.PCollection:
        return (
            elements
            | "WriteFiles" >> beam.ParDo(self._writer)
            | "Written" >> beam.combiners.ToList()
            | "Publish" >> beam.Map(publish, self._prefix, self._writer.temp_dir)
        )


def temp_dir_beside(prefix: str) -> str:
    """A fresh temporary directory in the shards' own directory (same filesystem: the renames
    are moves, not copies)."""
    return os.path.join(os.path.dirname(prefix), f".temp-{uuid.uuid4().hex}")
