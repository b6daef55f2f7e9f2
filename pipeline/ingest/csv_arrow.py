"""CSV -> serialized tf.Examples column-wise: Arrow parses, Arrow kernels assemble the bytes.

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
- encoding: each distinct cell's serialized Feature is built once (NumPy varints and float32
  bytes), gathered per row and joined row-wise by Arrow's `take` and
  `binary_join_element_wise`, under the map entries' headers, in key order (see below).

Both passes read a file in byte ranges cut after a newline (`file_ranges`; without quotes a
newline always ends a record), one Beam element each, so a multi-processing run parses a large
file on every worker; the types of the ranges merge by the same highest-type rule.

TFX's ExampleGen assigns a row to train or eval by a hash of its deterministic (key-sorted)
serialization, so the bytes built here are exactly that serialization (features sorted by
key, every length a varint, an empty cell's empty list and an all-empty column's kind-less
Feature as protobuf writes them): the hash, and so every row's split, is TFX's, and the bytes
written are that canonical form (TFX's executor writes a non-deterministic serialization of
the same Example: equal when parsed). This replaced tfx_bsl's C++ encoder, whose map order
needed a parse and re-serialize per row: 2.9 s -> 1.05 s per 100k taxi rows
(docs/performance.md).

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
from tfx_bsl.coders import csv_decoder

ColumnType = csv_decoder.ColumnType

# Bytes that make a file take TFX's own parser (see the module docstring).
_STOCK_PARSER_BYTES = (b'"', b"\r", b"\x00")
_BOM = b"\xef\xbb\xbf"
# Arrow reads this much CSV per block (one RecordBatch): memory is a few blocks, not the file.
# 4 MiB rather than 8: a multi-processing worker's ExampleGen peak is ~85 MiB lower at the same
# rows/s (docs/performance.md, ninth pass); 2 MiB saved ~30 MiB more but cost ~15% of the rows/s.
BLOCK_BYTES = 4 << 20
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


def _pylist(values: pa.Array) -> list:
    """A binary array's values as Python bytes (through NumPy: pyarrow 10's to_pylist builds a
    scalar per value, ten times slower)."""
    return values.to_numpy(zero_copy_only=False).tolist()


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
    others = _pylist(values.filter(pc.invert(known)))
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


def _varint(n: int) -> bytes:
    """Protocol buffers' base-128 varint of a non-negative int."""
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _varints(values: np.ndarray) -> pa.Array:
    """Each int64 as the varint a protocol buffer's int64 field holds (negatives as their
    64-bit two's complement: ten bytes), as a binary array."""
    unsigned = values.astype(np.int64).view(np.uint64)
    groups = np.zeros((len(unsigned), 10), dtype=np.uint8)
    lengths = np.ones(len(unsigned), dtype=np.int64)
    rest = unsigned.copy()
    for k in range(10):
        groups[:, k] = (rest & np.uint64(0x7F)).astype(np.uint8)
        rest >>= np.uint64(7)
        more = rest > 0
        groups[more, k] |= 0x80
        lengths += more
    return _ragged(groups, lengths)


def _ragged(matrix: np.ndarray, lengths: np.ndarray) -> pa.Array:
    """Row i's first lengths[i] bytes of a uint8 matrix, as a binary array."""
    mask = np.arange(matrix.shape[1]) < lengths[:, None]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = np.ascontiguousarray(matrix[mask])
    return pa.Array.from_buffers(
        pa.binary(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def _field(tag: int, payload: pa.Array) -> pa.Array:
    """Each payload as a length-delimited protocol buffer field `tag`: tag byte, varint length,
    payload."""
    lengths = pc.binary_length(payload).to_numpy(zero_copy_only=False)
    tag_byte = pa.scalar(bytes([tag << 3 | 2]), pa.binary())
    return pc.binary_join_element_wise(tag_byte, _varints(lengths), payload, b"")


# A Feature's list field: bytes_list (1), float_list (2), int64_list (3) (example.proto).
_LIST_FIELD = {ColumnType.STRING: 1, ColumnType.FLOAT: 2, ColumnType.INT: 3}


def _feature_payloads(distinct: pa.Array, kind: ColumnType) -> pa.Array:
    """The serialized Feature of each distinct cell (binary): its one value as TFX converts it
    (the list empty for an empty cell), deterministically serialized."""
    present = pc.greater(pc.binary_length(distinct), 0)
    if kind == ColumnType.STRING:
        lists = _field(1, distinct)
    else:
        converted = _distinct_values(_pylist(distinct), kind)
        if kind == ColumnType.INT:
            packed = _varints(converted.to_numpy(zero_copy_only=False))
        else:
            floats = converted.to_numpy(zero_copy_only=False).astype("<f4").view(np.uint8)
            packed = _ragged(floats.reshape(-1, 4), np.full(len(distinct), 4))
        lists = _field(1, packed)
    lists = pc.if_else(present, lists, pa.scalar(b"", pa.binary()))
    return _field(_LIST_FIELD[kind], lists)


def _deterministic_examples(
    batch: pa.RecordBatch, column_names: list[str], types: dict[str, ColumnType]
) -> list[bytes]:
    """The rows of a batch of string columns as serialized tf.Examples, byte for byte the
    deterministic serialization of the Example TFX builds for each row: a Features map whose
    entries (key, Feature) come sorted by key, each Feature built once per distinct cell of its
    column and gathered per row by Arrow (no per-row Python, no proto parse)."""
    rows = batch.num_rows
    entries = []
    for name in sorted(column_names, key=str.encode):
        column = batch.column(column_names.index(name))
        kind = types[name]
        if kind == ColumnType.UNKNOWN:  # every cell empty: a Feature with no list (TFX's)
            indices, features = np.zeros(rows, dtype=np.int64), pa.array([b""], pa.binary())
        else:
            indices, distinct = _distinct(column)
            features = _feature_payloads(distinct, kind)
        key = pa.scalar(b"\n" + _varint(len(name.encode())) + name.encode(), pa.binary())
        entry = pc.binary_join_element_wise(key, _field(2, features), b"")
        entries.append(_field(1, entry).take(pa.array(indices)))
    features_map = pc.binary_join_element_wise(*entries, b"")
    return _pylist(_field(1, features_map))


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
    for batch in _arrow_batches(part, column_names):
        yield _deterministic_examples(batch, column_names, types)
