"""The column-wise CSV path gives exactly TFX's column types and tf.Examples on hostile CSVs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Cells that sit on an edge of TFX's type rule or of float32, or that parse differently by
# hand: signs, padding, underscores, int64 bounds, float32 max / min subnormal and beyond,
# non-finite words, unicode, blanks.
EDGE_CELLS = [
    "",
    "0",
    "-0",
    "+5",
    " 7",
    "8 ",
    "1_000",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "3.4028234663852886e38",
    "3.4028235e38",
    "3.4028236e38",
    "-3.5e38",
    "1e-46",
    "1.4e-45",
    "0.1",
    ".5",
    "5.",
    "1E5",
    "nan",
    "-inf",
    "Infinity",
    "é",
    "日本",
    "a b",
    " ",
    "١٢",
]
QUOTED_CELLS = ['"a,b"', '"say ""hi"""', '"multi\nline"', '""']
# tmp_path is shared by a test's examples: each writes the same file name afresh.
FIXTURE = [HealthCheck.function_scoped_fixture]
PLAIN = st.text(
    alphabet=st.characters(blacklist_characters=',"\r\n\x00', blacklist_categories=("Cs",)),
    max_size=6,
)


def _stock(path: Path) -> tuple[dict, list[bytes]]:
    """TFX's own CSV ExampleGen steps on one file: (column types, deterministic records)."""
    from tfx.components.example_gen.csv_example_gen import executor as csv_executor
    from tfx.utils import io_utils
    from tfx_bsl.coders import csv_decoder

    names = io_utils.load_csv_column_names(str(path))
    reader = csv_decoder._CSVRecordReader(",")
    rows = [
        reader.ReadLine(line)
        for line in csv_executor._ReadCsvRecordsFromTextFile().process(str(path))
    ]
    inferrer = csv_decoder.ColumnTypeInferrer(names, skip_blank_lines=True)
    accumulator = inferrer.create_accumulator()
    for row in rows:
        accumulator = inferrer.add_input(accumulator, row)
    infos = inferrer.extract_output(accumulator)
    to_example = csv_executor._ParsedCsvToTfExample()
    records = [
        example.SerializeToString(deterministic=True)
        for row in rows
        for example in to_example.process(row, infos)
    ]
    return {i.name: i.type for i in infos}, records


def _arrow(path: Path) -> tuple[dict, list[bytes]]:
    from tfx.utils import io_utils

    from pipeline.ingest import csv_arrow

    names = io_utils.load_csv_column_names(str(path))
    types = csv_arrow.merge_column_types([csv_arrow.infer_column_types(str(path), names)])
    return types, list(csv_arrow.file_to_records(str(path), names, types))


def _write(path: Path, columns: int, rows: list[list[str]], blank_after: set[int]) -> Path:
    lines = [",".join(f"c{i}" for i in range(columns))]
    for n, row in enumerate(rows):
        lines.append(",".join(row))
        if n in blank_after:
            lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _table(cells: st.SearchStrategy) -> st.SearchStrategy:
    return st.integers(1, 4).flatmap(
        lambda columns: st.tuples(
            st.just(columns),
            st.lists(st.lists(cells, min_size=columns, max_size=columns), max_size=8),
            st.sets(st.integers(0, 7), max_size=2),
        )
    )


def _same(tmp_path: Path, table, arrow_expected: bool) -> None:
    from pipeline.ingest import csv_arrow

    columns, rows, blank_after = table
    # One column: a row of one empty cell is a blank line, which both parsers skip.
    path = _write(tmp_path / "data.csv", columns, rows, blank_after)
    names = [f"c{i}" for i in range(columns)]
    assert csv_arrow.needs_stock_parser(str(path), names) is not arrow_expected
    stock_types, stock_records = _stock(path)
    arrow_types, arrow_records = _arrow(path)
    assert arrow_types == stock_types
    assert arrow_records == stock_records


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(table=_table(st.one_of(st.sampled_from(EDGE_CELLS), PLAIN)))
def test_arrow_path_equals_tfx_on_hostile_cells(tmp_path, table):
    _same(tmp_path, table, arrow_expected=True)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(table=_table(st.one_of(st.sampled_from(EDGE_CELLS + QUOTED_CELLS), PLAIN)))
def test_quoted_files_take_tfx_parser_with_the_same_result(tmp_path, table):
    columns, rows, _ = table
    quoted = any('"' in cell for row in rows for cell in row)
    _same(tmp_path, table, arrow_expected=not quoted)


def test_float32_edges_and_empty_columns_by_hand(tmp_path):
    import tensorflow as tf

    path = _write(
        tmp_path / "data.csv",
        3,
        [["3.4028236e38", "", "1"], ["1e-46", "", ""], ["-0", "", "9223372036854775808"]],
        set(),
    )
    types, records = _arrow(path)
    assert (types, records) == _stock(path)
    first = tf.train.Example.FromString(records[0]).features.feature
    assert first["c0"].float_list.value[0] == float("inf")
    assert first["c1"].WhichOneof("kind") is None  # every cell empty: TFX's Feature()
    assert first["c2"].bytes_list.value == [b"1"]  # beyond int64 makes the column a string


def test_a_row_with_too_few_cells_is_an_error_on_both_paths(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n3\n")
    with pytest.raises(ValueError):
        _stock(path)
    with pytest.raises(Exception, match="Expected 2 columns"):
        _arrow(path)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(table=_table(st.one_of(st.sampled_from(EDGE_CELLS), PLAIN)), range_bytes=st.integers(1, 40))
def test_a_file_read_in_small_ranges_gives_tfx_types_and_records(tmp_path, table, range_bytes):
    """file_ranges cuts after newlines only and covers every byte after the header once; the
    ranges' types merged and their records in order are TFX's for the whole file."""
    from pipeline.ingest import csv_arrow

    columns, rows, blank_after = table
    path = _write(tmp_path / "data.csv", columns, rows, blank_after)
    names = [f"c{i}" for i in range(columns)]
    data = path.read_bytes()
    ranges = csv_arrow.file_ranges(str(path), names, range_bytes)
    header = data.index(b"\n") + 1
    assert b"".join(data[r.start : r.stop] for r in ranges) == data[header:]
    assert all(data[r.stop - 1 : r.stop] == b"\n" for r in ranges)
    types = csv_arrow.merge_column_types(
        [dict.fromkeys(names, csv_arrow.ColumnType.UNKNOWN)]
        + [csv_arrow.range_column_types(r, names) for r in ranges]
    )
    records = [rec for r in ranges for rec in csv_arrow.range_to_records(r, names, types)]
    assert (types, records) == _stock(path)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=30))
def test_varints_are_protobufs_int64_encoding(values):
    import numpy as np
    import tensorflow as tf

    from pipeline.ingest import csv_arrow

    packed = csv_arrow._varints(np.array(values, dtype=np.int64)).to_pylist()
    serialized = tf.train.Int64List(value=values).SerializeToString()
    # Int64List: field 1, packed: tag, varint length, then the values' varints back to back.
    assert b"".join(packed) == serialized[1 + len(csv_arrow._varint(len(b"".join(packed)))) :]


def test_long_names_and_cells_need_multi_byte_lengths_and_match_tfx(tmp_path):
    """Lengths past 127 and 16383 bytes take two- and three-byte varints in the hand-built
    serialization: a 200-character column name, a 20,000-byte cell, many columns."""
    long_name = "n" * 200
    names = [long_name] + [f"c{i:03d}" for i in range(40)]
    rows = [
        ["x" * 20_000] + [str(7**j) for j in range(40)],
        [""] + [f"{j}.5" for j in range(40)],
        ["y"] + ["" for _ in range(40)],
    ]
    path = tmp_path / "data.csv"
    path.write_text("\n".join([",".join(names)] + [",".join(r) for r in rows]) + "\n")
    assert _arrow(path) == _stock(path)
