"""Generated span fixtures for the continuous-training tests: same-distribution, drifted and
broken spans, all cut from the committed taxi sample (data/taxi/span-1/data.csv).

- `same_distribution_rows`: other rows of the same data (sampling noise only).
- `drifted_rows`: a schema-valid span whose distribution moved: fares, miles and durations
  tripled, trip hours shifted by 12, and most trips from taxi companies never seen before. Every
  value stays inside the curated schema's domains, so only the drift check can stop it.
- `write_broken_header` / `write_bad_types`: CSVs that `mlops data add-span` must reject.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.testing.samples import SMALL_SAMPLE_ROWS, TAXI_CSV

NEW_COMPANIES = [f"Brand New Cab Co {i}" for i in range(4)]


def _all_rows() -> tuple[list[str], list[dict[str, str]]]:
    with open(TAXI_CSV, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def header() -> list[str]:
    return _all_rows()[0]


def same_distribution_rows(rows: int = SMALL_SAMPLE_ROWS, start: int = 1) -> list[dict[str, str]]:
    """Every k-th row from offset `start`: disjoint from `write_sample`'s rows (offset 0)."""
    _, all_rows = _all_rows()
    step = max(1, len(all_rows) // rows)
    return all_rows[start::step][:rows]


def drifted_rows(rows: int = SMALL_SAMPLE_ROWS, start: int = 2) -> list[dict[str, str]]:
    out = []
    for i, row in enumerate(same_distribution_rows(rows, start)):
        row = dict(row)
        for key, factor in (("fare", 3.0), ("trip_miles", 3.0), ("tips", 3.0)):
            if row[key]:
                row[key] = f"{float(row[key]) * factor:.2f}"
        if row["trip_seconds"]:
            row["trip_seconds"] = str(int(row["trip_seconds"]) * 3)
        row["trip_start_hour"] = str((int(row["trip_start_hour"]) + 12) % 24)
        if i % 4 != 0:  # three trips in four from companies never seen before
            row["company"] = NEW_COMPANIES[i % len(NEW_COMPANIES)]
        out.append(row)
    return out


def write_csv(path: Path, rows: list[dict[str, str]], fieldnames: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fieldnames = fieldnames or header()
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_broken_header(path: Path, rows: int = 20) -> Path:
    """`fare` renamed to `fare_usd`: a column the pipeline needs is missing, an unknown one
    appears."""
    names = ["fare_usd" if n == "fare" else n for n in header()]
    data = [
        {("fare_usd" if k == "fare" else k): v for k, v in r.items()}
        for r in same_distribution_rows(rows)
    ]
    return write_csv(path, data, names)


def write_bad_types(path: Path, rows: int = 20) -> Path:
    """Right header, but a text value in the integer column trip_start_hour on row 3."""
    data = same_distribution_rows(rows)
    data[2] = dict(data[2], trip_start_hour="seven pm")
    return write_csv(path, data)


def trained_span(store, report) -> int:
    """Span of the examples behind the run's Trainer input, traced through MLMD events (a
    cached Trainer re-publishes the model it reused, so this works for cached runs too)."""
    from metadata.store import span_of

    trainer = next(c.execution_id for c in report.components if c.node_id == "Trainer")
    [transformed] = store.inputs(trainer)["examples"]
    transform = store.producers([transformed.id])[transformed.id][0]
    [examples] = store.inputs(transform)["examples"]
    return span_of(examples)
