"""`mlops data add-span` and the span-folder scan as gates (pipeline/ingest/spans.py): values that
are no valid number (modules/values.py), span numbers beyond what ML Metadata stores, folders
ExampleGen would trip over, a UTF-8 byte order mark. Each refusal is one report naming the line and
column (or the folder), writes nothing, and leaves the data root usable for the next command.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_support import Exit
from mlops.cli import main as mlops_main
from modules import values
from pipeline.ingest import sources, spans
from pipeline.ingest.sources import SourceSpec
from pipeline.testing.samples import write_sample
from tests.paths import PROJECT_ROOT

SCHEMA = str(PROJECT_ROOT / "schema" / "schema.pbtxt")
COLUMNS = spans.schema_columns(SCHEMA)
FLOAT_COLUMNS = [c for c, kind in COLUMNS.items() if kind == "FLOAT"]
INT_COLUMNS = [c for c, kind in COLUMNS.items() if kind == "INT"]


def _sample(tmp_path: Path, rows: int = 6) -> tuple[Path, list[str], list[list[str]]]:
    root = write_sample(tmp_path / "data", rows=rows)
    with open(root / "span-1" / "data.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        return root, header, list(reader)


def _csv_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def _add(path: Path, root: Path, *args: str):
    return CliRunner().invoke(
        mlops_main, ["data", "add-span", str(path), "--data-root", str(root), *args]
    )


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# ---- numbers ----
@pytest.mark.parametrize(
    "column, cell",
    [
        ("fare", "nan"),
        ("fare", "NaN"),
        ("tips", "inf"),
        ("tips", "-inf"),
        ("trip_miles", "Infinity"),
        ("fare", "1e50"),
        ("fare", "1e400"),
        ("fare", "-3.5e38"),
        ("trip_seconds", "9223372036854775808"),
        ("trip_start_timestamp", "-9223372036854775809"),
    ],
)
def test_add_span_refuses_invalid_numbers_naming_line_and_column(tmp_path, column, cell):
    root, header, rows = _sample(tmp_path)
    rows[2][header.index(column)] = cell
    bad = tmp_path / "bad.csv"
    bad.write_bytes(_csv_bytes(header, rows))
    before = _tree(root)

    result = _add(bad, root)

    assert result.exit_code == Exit.REJECTED, result.output
    assert f"line 4: {column}: " in result.output
    assert _tree(root) == before
    assert _add(tmp_path / "data" / "span-1" / "data.csv", root).exit_code == 0  # still usable


@pytest.mark.parametrize("column, cell", [("fare", "3.4028234e38"), ("trip_seconds", "0")])
def test_add_span_takes_boundary_values_the_dtype_holds(tmp_path, column, cell):
    root, header, rows = _sample(tmp_path)
    rows[0][header.index(column)] = cell
    good = tmp_path / "good.csv"
    good.write_bytes(_csv_bytes(header, rows))
    result = _add(good, root)
    assert result.exit_code == 0, result.output


# ---- byte order mark ----
def test_a_utf8_bom_is_dropped_not_reported_as_a_column(tmp_path):
    root, header, rows = _sample(tmp_path)
    plain = _csv_bytes(header, rows)
    bom = tmp_path / "bom.csv"
    bom.write_bytes(spans.BOM + plain)

    result = _add(bom, root)

    assert result.exit_code == 0, result.output
    assert "\ufeff" not in result.output
    assert (root / "span-2" / "data.csv").read_bytes() == plain


# ---- span numbers and folders ----
@pytest.mark.parametrize("span", ["99999999999999999999", str(2**63), "-1"])
def test_add_span_refuses_span_numbers_ml_metadata_cannot_store(tmp_path, span):
    root, header, rows = _sample(tmp_path)
    new = tmp_path / "new.csv"
    new.write_bytes(_csv_bytes(header, rows))
    before = _tree(root)

    result = _add(new, root, "--span", span)

    assert result.exit_code == Exit.REJECTED, result.output
    assert f"span {span} is outside 0..{spans.MAX_SPAN}" in result.output
    assert _tree(root) == before
    assert _add(new, root, "--span", str(spans.MAX_SPAN)).exit_code == 0
    # The highest span taken, there is no next one: refused in one line, not span-2**63.
    result = _add(new, root)
    assert result.exit_code == Exit.REJECTED and "no next span" in result.output


@pytest.mark.parametrize(
    "folder", ["span-99999999999999999999", "span-abc", "span-1_0", "span-\u0663", "span-+4"]
)
def test_a_folder_examplegen_cannot_use_is_named_in_one_line(tmp_path, folder):
    root, header, rows = _sample(tmp_path)
    (root / folder).mkdir()
    (root / folder / "data.csv").write_bytes(_csv_bytes(header, rows))

    for problem in (
        spans.layout_error(root),
        sources.preflight_problem([SourceSpec(kind="csv", path=str(root))]),
    ):
        assert problem and "\n" not in problem and folder in problem
    result = _add(tmp_path / "data" / "span-1" / "data.csv", root)
    assert result.exit_code == Exit.REJECTED and folder in result.output
    assert spans.list_spans(root) == [1]
    # Moved out of the data root, every command works again.
    (root / folder).rename(tmp_path / "moved")
    assert spans.layout_error(root) is None
    assert _add(tmp_path / "moved" / "data.csv", root).exit_code == 0


# ---- fuzz: add-span over hostile cells ----
_INVALID_FLOAT_CELLS = st.one_of(
    st.sampled_from(["nan", "NaN", "-nan", "inf", "+inf", "-Infinity", "1e39", "1e400", "-1e50"]),
    st.floats(min_value=3.41e38, allow_infinity=False).map(repr),
    st.floats(max_value=-3.41e38, allow_infinity=False).map(repr),
)
_INVALID_INT_CELLS = st.one_of(
    st.integers(min_value=2**63, max_value=2**80).map(str),
    st.integers(max_value=-(2**63) - 1, min_value=-(2**80)).map(str),
    st.sampled_from(["nan", "inf", "1e3", "2.5", "0x10"]),
)
_VALID_CELLS = st.one_of(
    st.floats(width=32, allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["0", "-0", "3.4028234e38", "-3.4028234e38", "1e-45", ""]),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    bom=st.booleans(),
    invalid=st.lists(
        st.one_of(
            st.tuples(st.sampled_from(FLOAT_COLUMNS), _INVALID_FLOAT_CELLS),
            st.tuples(st.sampled_from(INT_COLUMNS), _INVALID_INT_CELLS),
        ),
        max_size=3,
    ),
    valid=st.lists(st.tuples(st.sampled_from(FLOAT_COLUMNS), _VALID_CELLS), max_size=3),
    line=st.integers(min_value=0, max_value=5),
)
def test_fuzz_add_span_never_writes_an_invalid_number(tmp_path_factory, bom, invalid, valid, line):
    """Any mix of valid and invalid cells, with or without a byte order mark: the span is added
    exactly when every cell is valid, and a refusal names each bad cell's line and column."""
    tmp_path = tmp_path_factory.mktemp("fuzz")
    root, header, rows = _sample(tmp_path)
    for column, cell in valid:
        rows[line][header.index(column)] = cell
    for column, cell in invalid:
        rows[line][header.index(column)] = cell
    final = {c: rows[line][header.index(c)] for c, _ in invalid}
    bad = {c: v for c, v in final.items() if values.text_problem(v, _dtype(c))}
    new = tmp_path / "new.csv"
    new.write_bytes((spans.BOM if bom else b"") + _csv_bytes(header, rows))

    result = _add(new, root)

    if bad:
        assert result.exit_code == Exit.REJECTED, result.output
        for column in bad:
            assert f"line {line + 2}: {column}: " in result.output
        assert spans.list_spans(root) == [1]
    else:
        assert result.exit_code == 0, result.output
        written = (root / "span-2" / "data.csv").read_bytes()
        assert not written.startswith(spans.BOM)


def _dtype(column: str) -> str:
    return values.INT64 if COLUMNS[column] == "INT" else values.FLOAT


def test_an_invisible_character_in_a_column_name_is_shown_escaped(tmp_path):
    root, header, rows = _sample(tmp_path)
    header[1] = "\ufeff" + header[1]  # a BOM that is not at the start of the file
    bad = tmp_path / "bad.csv"
    bad.write_bytes(_csv_bytes(header, rows))
    result = _add(bad, root)
    assert result.exit_code == Exit.REJECTED
    assert f"'\\ufeff{header[1][1:]}'" in result.output
