"""Data spans on disk: the span-N/ layout ExampleGen reads, and adding a validated span.

    data/taxi/span-1/data.csv, span-2/data.csv, ...   CsvExampleGen reads the highest span

`mlops data add-span new.csv` checks a CSV against the curated schema (header: every column the
schema knows, nothing else, a UTF-8 byte order mark dropped; types: every non-empty value a valid
value of its column's type as modules/values.py defines it, so NaN, inf and 1e50 in a FLOAT column
are refused) and only then writes it as span-(N+1)/data.csv, atomically: the span directory is
renamed into place once complete, so a run started meanwhile never sees half a span. A rejected
file writes nothing.

Span numbers are 0..MAX_SPAN (int64, what ML Metadata stores) in ASCII digits, checked where they
are parsed: `--span`, the next span after the latest, and the folder scan before a run (a span-*
folder ExampleGen would fail on, span-abc or span-99999999999999999999, is named in one line
before anything runs or is written, instead of failing every run inside TFX).
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import os
import re
import shutil
from pathlib import Path

from data_stats.schema import schema_columns as _schema_columns
from modules import values
from pipeline.ingest.sources import SOURCE_FEATURE

SPAN_PREFIX = "span-"
# ASCII digits only: Python's \d and int() also take other scripts' digits, '+' and '_'.
SPAN_DIR = re.compile(r"^span-([0-9]+)$")
SPAN_FILE = "data.csv"
# The highest span number: ML Metadata stores an artifact's span as int64.
MAX_SPAN = values.INT64_MAX
BOM = b"\xef\xbb\xbf"
MAX_REPORTED_ERRORS = 10


class SpanRejected(ValueError):
    """The CSV does not match the schema; the message lists why."""


def span_problem(span: object) -> str | None:
    """Why `span` is not a usable span number (an int in 0..MAX_SPAN), or None."""
    if not isinstance(span, int) or isinstance(span, bool):
        return f"span {span!r} is not a whole number"
    if not 0 <= span <= MAX_SPAN:
        return f"span {span} is outside 0..{MAX_SPAN} (ML Metadata stores spans as int64)"
    return None


def _span_of(name: str) -> int | None:
    m = SPAN_DIR.match(name)
    if m is None:
        return None
    span = int(m.group(1))
    return span if span <= MAX_SPAN else None


def list_spans(data_root: str | os.PathLike) -> list[int]:
    """Usable span numbers on disk under `data_root` (span-N directories), ascending."""
    root = Path(data_root)
    if not root.is_dir():
        return []
    return sorted(
        span for p in root.iterdir() if p.is_dir() and (span := _span_of(p.name)) is not None
    )


def unusable_span_folder(data_root: str | os.PathLike, file_glob: str = "*.csv") -> str | None:
    """One line naming a span-* folder holding `file_glob` files ExampleGen would trip over (TFX
    reads every span-*/ folder: span-abc fails its span parse, span-99999999999999999999 fails in
    ML Metadata), or None."""
    root = Path(data_root)
    if "://" in str(data_root) or not root.is_dir():
        return None
    for p in sorted(root.iterdir()):
        if not (p.is_dir() and p.name.startswith(SPAN_PREFIX)) or _span_of(p.name) is not None:
            continue
        if any(f.is_file() and fnmatch.fnmatchcase(f.name, file_glob) for f in p.iterdir()):
            return (
                f"span folder {p} cannot be used: a span folder is span-N with N a number "
                f"0..{MAX_SPAN} in ASCII digits; move or rename it (nothing was run)"
            )
    return None


def layout_error(data_root: str | os.PathLike) -> str | None:
    """One line saying what is wrong with a local data root's layout, or None when CsvExampleGen
    can read it (span-N/ folders, the highest one holding CSV files). Remote roots (gs://, s3://)
    are left to ExampleGen. Plain CSV files directly under the root are not taken as a span: which
    span they are, and what the next one is, would be a guess."""
    root = Path(data_root)
    if "://" in str(data_root):
        return None
    expected = f"expected {root}/span-1/data.csv, span-2/data.csv, ... (one folder per span)"
    if not root.is_dir():
        return f"data root {root} does not exist: {expected}"
    unusable = unusable_span_folder(root)
    if unusable:
        return unusable
    found = list_spans(root)
    if not found:
        csvs = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix == ".csv")
        hint = (
            f"; found {', '.join(csvs[:3])}{', ...' if len(csvs) > 3 else ''} directly under it: "
            f"move them to {root}/span-1/ or add them with `mlops data add-span FILE "
            f"--data-root {root}`"
            if csvs
            else ""
        )
        return f"no span-N folders in data root {root}: {expected}{hint}"
    latest = root / f"span-{found[-1]}"
    if not any(p.is_file() and p.suffix == ".csv" for p in latest.iterdir()):
        return f"the latest span folder {latest} holds no .csv file: {expected}"
    return None


def schema_columns(schema_path: str) -> dict[str, str]:
    """Column name -> schema type name (INT, FLOAT, BYTES) of every column a span's CSV holds
    (`source` is written by a multi-source ExampleGen, not a column of the data)."""
    return _schema_columns(schema_path, exclude=(SOURCE_FEATURE,))


# Schema type name -> modules.values dtype: the one definition of a valid numeric cell.
_VALUE_DTYPES = {"INT": values.INT64, "FLOAT": values.FLOAT}


def _shown(name: str) -> str:
    """A column name as a report shows it: quoted and escaped when it holds an invisible or
    control character (a stray byte order mark, a tab), so the reader sees why it differs."""
    return name if name.isprintable() else ascii(name)


def validate_csv(path: str | os.PathLike, columns: dict[str, str]) -> int:
    """Raise SpanRejected listing what is wrong; return the number of data rows otherwise."""
    errors: list[str] = []
    try:
        f = open(path, newline="", encoding="utf-8-sig")  # a byte order mark is not a column
    except OSError as e:
        raise SpanRejected(f"cannot read {path}: {e.strerror}") from None
    with f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise SpanRejected(f"{path} is empty: expected a header row")
        header = [h.strip() for h in header]
        missing = [c for c in columns if c not in header]
        unexpected = [c for c in header if c not in columns]
        duplicated = sorted({c for c in header if header.count(c) > 1})
        if missing:
            errors.append(f"header: missing column(s) {', '.join(missing)}")
        if unexpected:
            errors.append(f"header: unexpected column(s) {', '.join(map(_shown, unexpected))}")
        if duplicated:
            errors.append(f"header: duplicated column(s) {', '.join(map(_shown, duplicated))}")
        if errors:
            raise SpanRejected(f"{path} does not match the schema:\n  " + "\n  ".join(errors))
        rows = 0
        try:
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                rows += 1
                if len(row) != len(header):
                    errors.append(f"line {line}: {len(row)} values, expected {len(header)}")
                    continue
                for name, value in zip(header, row, strict=True):
                    dtype = _VALUE_DTYPES.get(columns[name])
                    problem = dtype and values.text_problem(value, dtype)
                    if problem:
                        errors.append(f"line {line}: {name}: {problem}")
        except (csv.Error, UnicodeDecodeError) as e:
            errors.append(f"unreadable CSV: {e}")
    if not rows and not errors:
        errors.append("no data rows")
    if errors:
        shown = errors[:MAX_REPORTED_ERRORS]
        more = len(errors) - len(shown)
        raise SpanRejected(
            f"{path} does not match the schema ({len(errors)} problem(s)):\n  "
            + "\n  ".join(shown)
            + (f"\n  ... and {more} more" if more > 0 else "")
        )
    return rows


def _copy_without_bom(source: str | os.PathLike, target: Path) -> None:
    """Copy a CSV, minus a leading UTF-8 byte order mark (CsvExampleGen would read it as part of
    the first column's name)."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        head = src.read(len(BOM))
        if head != BOM:
            dst.write(head)
        shutil.copyfileobj(src, dst)


@dataclasses.dataclass(frozen=True)
class AddedSpan:
    span: int
    path: Path
    rows: int


def add_span(
    csv_path: str | os.PathLike,
    data_root: str | os.PathLike,
    schema_path: str,
    span: int | None = None,
) -> AddedSpan:
    """Validate `csv_path` and write it as the next span (or `span`); say where it went."""
    if span is not None and (problem := span_problem(span)):
        raise SpanRejected(problem)
    rows = validate_csv(csv_path, schema_columns(schema_path))
    root = Path(data_root)
    unusable = unusable_span_folder(root)
    if unusable:
        raise SpanRejected(unusable)
    existing = list_spans(root)
    if span is None:
        span = (existing[-1] if existing else 0) + 1
        if problem := span_problem(span):
            raise SpanRejected(f"no next span after {existing[-1]}: {problem}")
    elif span in existing:
        raise SpanRejected(f"span {span} already exists under {root}")
    elif existing and span < existing[-1]:
        raise SpanRejected(
            f"span {span} is older than the latest span {existing[-1]}: the pipeline trains "
            "on the highest span, so it would never be used"
        )
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"span-{span}"
    temp = root / f".span-{span}.tmp-{os.getpid()}"  # not matched by span-{SPAN}/*.csv
    shutil.rmtree(temp, ignore_errors=True)
    try:
        temp.mkdir()
        _copy_without_bom(csv_path, temp / SPAN_FILE)
        os.rename(temp, final)  # atomic; fails if span-N appeared meanwhile
    except OSError as e:
        raise SpanRejected(f"could not create {final}: {e}") from None
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return AddedSpan(span, final / SPAN_FILE, rows)
