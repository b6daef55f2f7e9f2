"""Taxi samples with known bad rows and duplicates, for the RowCleaner's pipeline tests."""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.testing.samples import write_sample

# trip_start_timestamp marks each planted bad row (a valid INT, so it never is the reason).
MARK = 1_000_000_000
# Each planted bad row: the cells changed and the reasons the RowCleaner must give, in schema
# feature order. "12 min" also makes CsvExampleGen type the whole trip_seconds column as text,
# which the cleaner must turn back into int64 for the clean rows.
BAD_ROWS = [
    ({"trip_seconds": "12 min"}, ["trip_seconds: wrong_type ('12 min' is not an integer)"]),
    ({"payment_type": "Bitcoin"}, ["payment_type: out_of_domain ('Bitcoin' not in the domain)"]),
    (
        {"fare": "", "trip_start_hour": "25"},
        ["fare: missing_value (required)", "trip_start_hour: out_of_range (25 > max 23)"],
    ),
    ({"pickup_latitude": "51.5"}, ["pickup_latitude: out_of_range (51.5 > max 43)"]),
    ({"fare": "-4.25"}, ["fare: out_of_range (-4.25 < min 0)"]),
]


def write_dirty_sample(dest: Path, rows: int, bad: int, duplicates: int) -> Path:
    """A `rows`-row sample of span 1 in which `bad` rows (cycling through BAD_ROWS) are made to
    break the schema, marked by trip_start_timestamp MARK + i, plus `duplicates` exact copies of
    good rows appended (rows + duplicates lines in all)."""
    write_sample(dest, rows=rows)
    path = dest / "span-1" / "data.csv"
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header, data = reader.fieldnames, list(reader)
    step = len(data) // max(bad, 1)
    for i in range(bad):
        row = data[i * step]
        row.update(BAD_ROWS[i % len(BAD_ROWS)][0])
        row["trip_start_timestamp"] = str(MARK + i)
    good = [r for r in data if not MARK <= int(r["trip_start_timestamp"]) < MARK + bad]
    data += [dict(r) for r in good[1 : 1 + duplicates]]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(data)
    return dest


def expected_reasons(bad: int) -> dict[int, list[str]]:
    """trip_start_timestamp of each planted bad row -> its reasons."""
    return {MARK + i: BAD_ROWS[i % len(BAD_ROWS)][1] for i in range(bad)}
