"""Taxi-like rows at any scale, for the scale benchmark: span 1 resampled with seeded noise.

    .venv/bin/python bench/generate_rows.py --rows 1000000 --out /tmp/taxi_1m [--seed 0] [--span 1]

writes <out>/span-<span>/data.csv (the layout CsvExampleGen reads) with exactly --rows data rows.
Each row is a random row of data/taxi/span-1 (bootstrap), then:
- fare and tips are scaled by one shared random factor (log-normal), so the label
  `tips > 0.2 * fare` of the source row is kept; trip_miles and trip_seconds share another;
- coordinates get Gaussian jitter (kept inside the schema's Chicago box), the timestamp a
  shift of up to half an hour;
- each categorical (hour, day, month, community areas, census tracts, company, payment type) is,
  with probability RESAMPLE_P, replaced by that column's value in another source row *with the
  same label*: P(value | label) is kept, so the model still learns what it learns from span 1;
- empty cells stay empty (optional columns keep their missing rate).
Rows are produced and written CHUNK_ROWS at a time (memory does not grow with --rows), into a
temporary file renamed into place at the end. The same seed and row count give the same bytes.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from modules import features
from pipeline.testing.samples import TAXI_CSV

CHUNK_ROWS = 50_000
RESAMPLE_P = 0.2
PRICE_SIGMA = 0.1  # log-normal sigma of the fare/tips factor
TRIP_SIGMA = 0.1  # log-normal sigma of the miles/seconds factor
COORD_SIGMA = 0.003  # degrees (about 300 m)
TIMESTAMP_SHIFT = 1800  # seconds
LAT_RANGE = (41.0, 43.0)  # the schema's float_domain for latitudes
LON_RANGE = (-89.0, -87.0)
COORDINATES = features.BUCKET_FEATURE_KEYS
RESAMPLED = [
    *features.CATEGORICAL_NUMERICAL_FEATURE_KEYS,
    *features.VOCAB_FEATURE_KEYS,
]
TIMESTAMP = features.UNUSED_FEATURE_KEYS[0]
TRIP = ["trip_miles", "trip_seconds"]


class Source:
    """Span 1 as string columns (cells exactly as in the CSV) plus what the noise needs."""

    def __init__(self, path: Path = TAXI_CSV) -> None:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            self.header = next(reader)
            rows = list(reader)
        self.columns = {
            name: np.array([r[i] for r in rows], dtype=object) for i, name in enumerate(self.header)
        }
        self.rows = len(rows)
        numeric = [features.FARE_KEY, features.TIPS_KEY, *TRIP, *COORDINATES, TIMESTAMP]
        self.numeric = {name: self.numbers(name) for name in numeric}
        fare, tips = self.numeric[features.FARE_KEY], self.numeric[features.TIPS_KEY]
        self.label = tips > features.LABEL_TIP_FRACTION * fare
        self.by_label = {
            True: np.flatnonzero(self.label),
            False: np.flatnonzero(~self.label),
        }

    def numbers(self, name: str) -> np.ndarray:
        """The column as float64, NaN where the cell is empty."""
        cells = self.columns[name]
        return np.array([float(c) if c != "" else np.nan for c in cells])


def _format(values: np.ndarray, decimals: int | None, missing: np.ndarray) -> np.ndarray:
    """Cells for a numeric column: shortest float repr after rounding (ints when decimals is
    None), empty where the source cell was empty."""
    if decimals is None:
        cells = np.rint(np.nan_to_num(values)).astype(np.int64).astype(str).astype(object)
    else:
        cells = np.round(np.nan_to_num(values), decimals).astype(str).astype(object)
    cells[missing] = ""
    return cells


def generate_chunk(source: Source, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """n rows as one object array of cells per column, in the source's column order."""
    idx = rng.integers(0, source.rows, size=n)
    label = source.label[idx]
    out = {name: col[idx] for name, col in source.columns.items()}

    fare = source.numeric[features.FARE_KEY][idx]
    tips = source.numeric[features.TIPS_KEY][idx]
    price = np.exp(rng.normal(0.0, PRICE_SIGMA, size=n))
    new_fare, new_tips = np.round(fare * price, 2), np.round(tips * price, 2)
    # Rounding can move a row across the label's boundary: such rows keep their source prices.
    flipped = (new_tips > features.LABEL_TIP_FRACTION * new_fare) != label
    new_fare[flipped], new_tips[flipped] = fare[flipped], tips[flipped]
    no_missing = np.zeros(n, dtype=bool)
    out[features.FARE_KEY] = _format(new_fare, 2, no_missing)
    out[features.TIPS_KEY] = _format(new_tips, 2, no_missing)

    trip = np.exp(rng.normal(0.0, TRIP_SIGMA, size=n))
    for name, decimals in zip(TRIP, (2, None), strict=True):
        values = source.numeric[name][idx]
        out[name] = _format(values * trip, decimals, np.isnan(values))

    for name in COORDINATES:
        values = source.numeric[name][idx]
        lo, hi = LAT_RANGE if "latitude" in name else LON_RANGE
        jittered = np.clip(values + rng.normal(0.0, COORD_SIGMA, size=n), lo, hi)
        out[name] = _format(jittered, 6, np.isnan(values))

    stamp = source.numeric[TIMESTAMP][idx]
    out[TIMESTAMP] = _format(
        stamp + rng.integers(-TIMESTAMP_SHIFT, TIMESTAMP_SHIFT + 1, size=n), None, np.isnan(stamp)
    )

    for name in RESAMPLED:
        swap = rng.random(n) < RESAMPLE_P
        donors = np.empty(n, dtype=np.int64)
        for value, pool in source.by_label.items():
            rows = swap & (label == value)
            donors[rows] = pool[rng.integers(0, len(pool), size=int(rows.sum()))]
        out[name][swap] = source.columns[name][donors[swap]]
    return [out[name] for name in source.header]


def generate(rows: int, seed: int = 0, source: Source | None = None) -> Iterator[list[np.ndarray]]:
    """The rows, CHUNK_ROWS at a time (column arrays), deterministic in (rows, seed)."""
    source = source or Source()
    rng = np.random.default_rng(seed)
    done = 0
    while done < rows:
        n = min(CHUNK_ROWS, rows - done)
        yield generate_chunk(source, rng, n)
        done += n


def write_span(out_root: str | os.PathLike, rows: int, seed: int = 0, span: int = 1) -> Path:
    """Write <out_root>/span-<span>/data.csv with `rows` generated rows; return its path."""
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    source = Source()
    dest = Path(out_root) / f"span-{span}" / "data.csv"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(source.header)
        for columns in generate(rows, seed, source):
            writer.writerows(zip(*columns, strict=True))
    os.replace(tmp, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, required=True, help="data rows to write")
    p.add_argument("--out", required=True, help="data root: writes <out>/span-<span>/data.csv")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--span", type=int, default=1)
    args = p.parse_args(argv)
    if args.rows < 1 or args.span < 1:
        print("error: --rows and --span must be at least 1", file=sys.stderr)
        return 2
    path = write_span(args.out, args.rows, args.seed, args.span)
    print(f"{args.rows} rows -> {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
