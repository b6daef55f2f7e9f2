"""Rows per second of each source's ExampleGen against CsvExampleGen on the same rows.

    python bench/sources_bench.py --postgresql postgresql://user@127.0.0.1:5432/db
    python bench/sources_bench.py --rows 20000 --partitions 2     # CSV vs Parquet only

Each ExampleGen runs for real as a one-node pipeline (driver, span resolution, read, convert,
hash split, gzipped TFRecords, ML Metadata), in Beam's in-memory DirectRunner as the pipeline's
default. The same rows (the taxi sample repeated up to --rows, default 100,000) are written as
span-1/data.csv, span-1/data.parquet and, with --postgresql (password in PGPASSWORD), a table
`sources_bench` there (dropped afterwards). Prints seconds, rows/s and the ratio to CSV; every
figure comes from this one invocation.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import _argtypes as argtypes  # bench/_argtypes.py: a script's sys.path starts at bench/

import modules  # noqa: F401 - Keras-2 switch before TensorFlow
from pipeline.ingest import sources
from pipeline.ingest.sources import SourceSpec
from pipeline.testing import source_samples

TABLE = "sources_bench"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=argtypes.whole(1), default=100_000)
    p.add_argument(
        "--partitions", type=argtypes.whole(1), default=4, help="PostgreSQL partition queries"
    )
    p.add_argument("--postgresql", default="", help="a server to load the rows into and read")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="sources-bench-") as tmp:
        root = Path(tmp)
        header, rows = source_samples.typed_rows(rows=args.rows)
        source_samples.write_csv(header, rows, root / "csv" / "span-1" / "data.csv")
        source_samples.write_parquet(header, rows, root / "parquet" / "span-1" / "data.parquet")
        cases = [
            ("csv", SourceSpec(kind="csv", path=str(root / "csv"))),
            ("parquet", SourceSpec(kind="parquet", path=str(root / "parquet"))),
        ]
        if args.postgresql:
            cases += _postgres_cases(args, header, rows)
        try:
            _measure(cases, root, args.rows)
        finally:
            if args.postgresql:
                _drop(args.postgresql)
    return 0


def _drop(url: str) -> None:
    import psycopg2

    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
    conn.commit()
    conn.close()


def _postgres_cases(args: argparse.Namespace, header, rows) -> list:
    import psycopg2

    url = args.postgresql
    conn = psycopg2.connect(url)
    source_samples.load_postgres(conn, TABLE, header, rows, span=1)
    with conn.cursor() as cur:
        cur.execute(f"ANALYZE {TABLE}")
    conn.commit()
    conn.close()
    return [
        (
            f"postgresql x{args.partitions}",
            SourceSpec(
                kind="postgresql",
                url=url,
                table=TABLE,
                span_column="span",
                partitions=args.partitions,
            ),
        ),
        (
            f"postgresql x{args.partitions} range",
            SourceSpec(
                kind="postgresql",
                url=url,
                table=TABLE,
                span_column="span",
                partitions=args.partitions,
                partition_column="trip_start_timestamp",
            ),
        ),
    ]


def _measure(cases: list, root: Path, rows: int) -> None:
    print(f"{rows} rows, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"{'source':<26} {'seconds':>8} {'rows/s':>9} {'vs csv':>7}")
    baseline = None
    for i, (label, spec) in enumerate(cases):
        started = time.monotonic()
        source_samples.run_example_gen(
            sources.example_gen_for((spec,)), root / f"run-{i}", read=False
        )
        seconds = time.monotonic() - started
        rate = rows / seconds
        baseline = baseline or rate
        print(f"{label:<26} {seconds:8.1f} {rate:9.0f} {rate / baseline:7.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
