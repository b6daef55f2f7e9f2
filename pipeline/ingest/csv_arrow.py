"""CSV -> serialized tf.Examples column-wise: Arrow parses, tfx_bsl's C++ coder encodes.

TFX's CSV source parses each line with Python's csv module and builds one tf.train.Example per
row in Python (a dict of Feature protos), twice over: once to infer the column types, once to
convert. That was ExampleGen's cost per row (8.5k rows/s at 1M rows, issue 26). Here a file is
read in blocks by pyarrow's CSV reader with every column as a string, and each block is handled
a column at a time:

- type inference: TFX's own rule (`_InferValueType`: Python `int()` within int64, else
  `float()`, else string; empty cells say nothing) applied to each column's distinct values
  only, highest type wins, over every file of the split;
- conversion: Python `int()` / `float()` on the distinct values only, the same functions TFX
  applies to every cell, so every edge (`" 5"`, `"1_000"`, `"nan"`, `"1e39"` overflowing
  float32 to inf) converts as TFX converts it; empty cells become the same empty value list;
- encoding: `tfx_bsl.coders.example_coder.RecordBatchToExamplesEncoder` (C++).

Both passes read a file in byte ranges cut after a newline (`file_ranges`; without quotes a
newline always ends a record), one Beam element each, so a multi-processing run parses a large
file on every worker; the types of the ranges merge by the same highest-type rule.

The encoder writes a row's features in its own map order, while TFX's ExampleGen assigns a
row to train or eval by a hash of its deterministic (key-sorted) serialization. So each record
is re-serialized deterministically (parse + serialize, both in C): the hash, and so every
row's split, is TFX's, and the bytes written are that canonical form (TFX's executor writes a
non-deterministic serialization of the same Example: equal when parsed).

Files the two parsers could read differently (any double quote, carriage return or NUL byte,
a byte-order mark, a blank first line, duplicate column names) go through TFX's own line
parser and converter unchanged, with the same deterministic serialization.
`tests/pipeline/ingest/test_csv_arrow.py` checks both paths against TFX's on hostile CSVs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import tensorflow as tf
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx_bsl.coders import csv_decoder, example_coder

ColumnType = csv_decoder.ColumnType

# Bytes that make a file take TFX's own parser (see the module docstring).
_STOCK_PARSER_BYTES = (b'"', b"\r", b"\x00")
_BOM = b"\xef\xbb\xbf"
# Arrow reads this much CSV per block (one RecordBatch): memory is a few blocks, not the file.
BLOCK_BYTES = 8 << 20
_SCAN_BYTES = 16 << 20


def needs_stock_parser(path: str, column_names: list[str]) -> bool:
    """True when Arrow's CSV reader and TFX's line parser might split `path` differently."""
    if len(set(column_names)) != len(column_names):
        return True
    with tf.io.gfile.GFile(path, "rb") as f:
        first = True
        while chunk := f.read(_SCAN_BYTES):
            if first and (chunk.startswith(_BOM) or chunk.startswith(b"\n")):
                return True
            first = False
            if any(marker in chunk for marker in _STOCK_PARSER_BYTES):
                return True
    return False


# A file is read in ranges of about this many bytes, cut after a newline: each range is one
# Beam element, so a multi-processing run parses one file on every worker.
RANGE_BYTES = 32 << 20


class FileRange(NamedTuple):
    """Bytes [start, stop) of a CSV file, whole records (stop is -1: the whole file, header
    included, read by TFX's own parser: needs_stock_parser)."""

    path: str
    start: int
    stop: int


def file_ranges(
    path: str, column_names: list[str], range_bytes: int | None = None
) -> list[FileRange]:
    """`path`'s records after its header as ranges of about `range_bytes`, each ending after a
    newline; a file TFX's parser must read (needs_stock_parser) is one whole-file range.
    Without quotes (the Arrow path has none) a newline always ends a record."""
    if needs_stock_parser(path, column_names):
        return [FileRange(path, 0, -1)]
    with tf.io.gfile.GFile(path, "rb") as f:
        size = f.size()
        start = len(f.readline())
        range_bytes = range_bytes or RANGE_BYTES
        ranges = []
        while start < size:
            stop = min(start + range_bytes, size)
            if stop < size:
                f.seek(stop)
                stop += len(f.readline())
            ranges.append(FileRange(path, start, stop))
            start = stop
    return ranges


def _stock_rows(path: str) -> Iterator[list[bytes]]:
    """TFX's parse of `path`: one list of cells per record (blank lines as [])."""
    reader = csv_decoder._CSVRecordReader(",")
    for line in csv_executor._ReadCsvRecordsFromTextFile().process(path):
        yield reader.ReadLine(line)


def _arrow_batches(part: FileRange, column_names: list[str]) -> Iterator[pa.RecordBatch]:
    """The records of one range of a file (file_ranges), every column a (UTF-8 checked)
    string."""
    read = pa_csv.ReadOptions(column_names=column_names, block_size=BLOCK_BYTES)
    parse = pa_csv.ParseOptions(delimiter=",", quote_char=False, ignore_empty_lines=True)
    convert = pa_csv.ConvertOptions(
        column_types={name: pa.string() for name in column_names},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    # The range (RANGE_BYTES at most, plus a line) is read through TensorFlow's GFile, so any
    # filesystem TFX reads (gs://, s3://) works; Arrow then parses it block by block.
    with tf.io.gfile.GFile(part.path, "rb") as f:
        f.seek(part.start)
        data = f.read(part.stop - part.start)
    if not data.strip(b"\n"):
        return
    for batch in pa_csv.open_csv(pa.BufferReader(data), read, parse, convert):
        if batch.num_rows:
            yield batch


def _distinct(column: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(per-row index into the distinct values, the distinct values as binary)."""
    encoded = pc.dictionary_encode(column.cast(pa.binary()))
    return encoded.indices.to_numpy(zero_copy_only=False), encoded.dictionary


# Cells whose type TFX's rule gives without asking Python: plain integers short enough to fit
# int64 (INT), decimals with a point or an exponent, which int() rejects and float() accepts
# (FLOAT). Every
# other distinct cell goes through TFX's own `_InferValueType`.
_PLAIN_INT = r"^-?[0-9]{1,18}$"
_PLAIN_FLOAT = r"^-?(([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+)$"


def _column_type(values: pa.Array) -> ColumnType:
    """TFX's type for a column holding these distinct cells (the highest any cell needs)."""
    plain_int = pc.match_substring_regex(values, _PLAIN_INT)
    plain_float = pc.match_substring_regex(values, _PLAIN_FLOAT)
    empty = pc.equal(pc.binary_length(values), 0)
    known = pc.or_(pc.or_(plain_int, plain_float), empty)
    found = ColumnType.UNKNOWN
    if pc.any(plain_int).as_py():
        found = ColumnType.INT
    if pc.any(plain_float).as_py():
        found = ColumnType.FLOAT
    others = values.filter(pc.invert(known)).to_pylist()
    return max([found, *(csv_decoder._InferValueType(v) for v in others)])


def infer_column_types(path: str, column_names: list[str]) -> dict[str, ColumnType]:
    """Each column's type over `path` by TFX's rule (ColumnType.UNKNOWN: every cell empty)."""
    unknown = dict.fromkeys(column_names, ColumnType.UNKNOWN)  # a file without records
    return merge_column_types(
        [
            unknown,
            *(range_column_types(part, column_names) for part in file_ranges(path, column_names)),
        ]
    )


def range_column_types(part: FileRange, column_names: list[str]) -> dict[str, ColumnType]:
    """Each column's type over one range of a file (file_ranges) by TFX's rule."""
    types = dict.fromkeys(column_names, ColumnType.UNKNOWN)
    if part.stop < 0:
        inferrer = csv_decoder.ColumnTypeInferrer(column_names, skip_blank_lines=True)
        accumulator = inferrer.create_accumulator()
        for cells in _stock_rows(part.path):
            accumulator = inferrer.add_input(accumulator, cells)
        types.update(accumulator)
        return types
    for batch in _arrow_batches(part, column_names):
        for name, column in zip(column_names, batch.columns, strict=True):
            if types[name] != ColumnType.STRING:
                types[name] = max(types[name], _column_type(_distinct(column)[1]))
    return types


def merge_column_types(per_file: list[dict[str, ColumnType]]) -> dict[str, ColumnType]:
    """The split's types: for each column the highest type any file needs."""
    merged: dict[str, ColumnType] = {}
    for types in per_file:
        for name, kind in types.items():
            merged[name] = max(merged.get(name, kind), kind)
    return merged


def _distinct_values(values: list[bytes], kind: ColumnType) -> pa.Array:
    """The distinct cells converted as TFX converts a cell (Python int() / float(); a float
    rounded to float32 as the tf.Example's float_list stores it). Empty cells get a
    placeholder that no row takes."""
    if kind == ColumnType.INT:
        return pa.array([int(v) if v else 0 for v in values], pa.int64())
    if kind == ColumnType.FLOAT:
        doubles = np.array([float(v) if v else 0.0 for v in values], np.float64)
        with np.errstate(over="ignore"):
            return pa.array(doubles.astype(np.float32))
    return pa.array(values, pa.large_binary())


def _list_column(column: pa.Array, kind: ColumnType) -> pa.Array:
    """One CSV column as the list column the encoder turns into one Feature per row: [value],
    [] for an empty cell, and null (a Feature with no kind, as TFX writes) for an UNKNOWN one."""
    rows = len(column)
    if kind == ColumnType.UNKNOWN:
        return pa.nulls(rows, pa.large_list(pa.int64()))
    indices, distinct = _distinct(column)
    values = distinct.to_pylist()
    present = np.array([bool(v) for v in values], dtype=bool)
    has_value = present[indices]
    offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(has_value, out=offsets[1:])
    flat = _distinct_values(values, kind).take(pa.array(indices[has_value]))
    return pa.LargeListArray.from_arrays(pa.array(offsets), flat)


def _canonical(records: list[bytes]) -> list[bytes]:
    """Each serialized Example in deterministic (key-sorted) form: what TFX hashes to split."""
    parse = tf.train.Example.FromString
    return [parse(record).SerializeToString(deterministic=True) for record in records]


def _stock_records(
    path: str, column_names: list[str], types: dict[str, ColumnType]
) -> Iterator[bytes]:
    """TFX's conversion of `path`, deterministically serialized."""
    infos = [csv_decoder.ColumnInfo(name, types[name]) for name in column_names]
    to_example = csv_executor._ParsedCsvToTfExample()
    for cells in _stock_rows(path):
        for example in to_example.process(cells, infos):
            yield example.SerializeToString(deterministic=True)


def file_to_records(
    path: str, column_names: list[str], types: dict[str, ColumnType]
) -> Iterator[bytes]:
    """`path`'s rows as serialized tf.Examples, with the split's column types."""
    for batch in file_to_batches(path, column_names, types):
        yield from batch


def range_to_records(
    part: FileRange, column_names: list[str], types: dict[str, ColumnType]
) -> Iterator[bytes]:
    """One range's rows (file_ranges) as serialized tf.Examples."""
    for batch in range_to_batches(part, column_names, types):
        yield from batch


# TFX's parser's records are grouped this many to a batch (Arrow's blocks are batches already).
STOCK_BATCH_ROWS = 10_000


def file_to_batches(
    path: str, column_names: list[str], types: dict[str, ColumnType]
) -> Iterator[list[bytes]]:
    """`path`'s rows as lists of serialized tf.Examples, in file order (range_to_batches over
    file_ranges)."""
    for part in file_ranges(path, column_names):
        yield from range_to_batches(part, column_names, types)


def range_to_batches(
    part: FileRange, column_names: list[str], types: dict[str, ColumnType]
) -> Iterator[list[bytes]]:
    """One range's rows as lists of serialized tf.Examples (one list per Arrow block of
    BLOCK_BYTES), in file order: what ExampleGen's batched write path carries as one Beam
    element, so Beam's per-element cost is paid per block instead of per row."""
    if part.stop < 0:
        batch: list[bytes] = []
        for record in _stock_records(part.path, column_names, types):
            batch.append(record)
            if len(batch) >= STOCK_BATCH_ROWS:
                yield batch
                batch = []
        if batch:
            yield batch
        return
    encoder = example_coder.RecordBatchToExamplesEncoder()
    for batch in _arrow_batches(part, column_names):
        arrays = [
            _list_column(column, types[name])
            for name, column in zip(column_names, batch.columns, strict=True)
        ]
        encoded = encoder.encode(pa.RecordBatch.from_arrays(arrays, column_names))
        yield _canonical(encoded)
