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


def _stock_rows(path: str) -> Iterator[list[bytes]]:
    """TFX's parse of `path`: one list of cells per record (blank lines as [])."""
    reader = csv_decoder._CSVRecordReader(",")
    for line in csv_executor._ReadCsvRecordsFromTextFile().process(path):
        yield reader.ReadLine(line)


def _arrow_batches(path: str, column_names: list[str]) -> Iterator[pa.RecordBatch]:
    """`path`'s records after its header, every column a (UTF-8 checked) string."""
    read = pa_csv.ReadOptions(column_names=column_names, skip_rows=1, block_size=BLOCK_BYTES)
    parse = pa_csv.ParseOptions(delimiter=",", quote_char=False, ignore_empty_lines=True)
    convert = pa_csv.ConvertOptions(
        column_types={name: pa.string() for name in column_names},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    # Arrow streams a local file block by block; another filesystem's file (gs://, s3://) is
    # read through TensorFlow's GFile into memory first.
    source = path
    if "://" in path:
        with tf.io.gfile.GFile(path, "rb") as f:
            source = pa.BufferReader(f.read())
    for batch in pa_csv.open_csv(source, read, parse, convert):
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
    types = dict.fromkeys(column_names, ColumnType.UNKNOWN)
    if needs_stock_parser(path, column_names):
        inferrer = csv_decoder.ColumnTypeInferrer(column_names, skip_blank_lines=True)
        accumulator = inferrer.create_accumulator()
        for cells in _stock_rows(path):
            accumulator = inferrer.add_input(accumulator, cells)
        types.update(accumulator)
        return types
    for batch in _arrow_batches(path, column_names):
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


def _canonical(records: list[bytes]) -> Iterator[bytes]:
    """Each serialized Example in deterministic (key-sorted) form: what TFX hashes to split."""
    parse = tf.train.Example.FromString
    for record in records:
        yield parse(record).SerializeToString(deterministic=True)


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
    if needs_stock_parser(path, column_names):
        yield from _stock_records(path, column_names, types)
        return
    encoder = example_coder.RecordBatchToExamplesEncoder()
    for batch in _arrow_batches(path, column_names):
        arrays = [
            _list_column(column, types[name])
            for name, column in zip(column_names, batch.columns, strict=True)
        ]
        encoded = encoder.encode(pa.RecordBatch.from_arrays(arrays, column_names))
        yield from _canonical(encoded)
