"""Rows per second of each source's ExampleGen against CsvExampleGen on the same rows.

    python bench/sources_bench.py                 # 100,000 rows (the taxi sample repeated)
    python bench/sources_bench.py --rows 20000 --partitions 2

Each ExampleGen runs for real as a one-node pipeline (driver, span resolution, read, convert,
hash split, gzipped TFRecords, ML Metadata), in Beam's in-memory DirectRunner as the pipeline's
default. The same rows are written as span-1/data.csv, span-1/data.parquet and a table of a
throwaway PostgreSQL server (tests/pg_fixture.py: the machine's Debian PostgreSQL). Prints
seconds, rows/s and the ratio to CSV; every figure comes from this one invocation.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import modules  # noqa: F401 - Keras-2 switch before TensorFlow
from pipeline import source_samples, sources
from pipeline.sources import SourceSpec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--partitions", type=int, default=4, help="PostgreSQL partition queries")
    args = p.parse_args(argv)

    import psycopg2

    from tests.pg_fixture import postgres_server

    with tempfile.TemporaryDirectory(prefix="sources-bench-") as tmp, postgres_server() as server:
        root = Path(tmp)
        header, rows = source_samples.typed_rows(rows=args.rows)
        source_samples.write_csv(header, rows, root / "csv" / "span-1" / "data.csv")
        source_samples.write_parquet(header, rows, root / "parquet" / "span-1" / "data.parquet")
        os.environ["PGPASSWORD"] = server.password
        url = server.url("postgres")
        conn = psycopg2.connect(url)
        source_samples.load_postgres(conn, "trips", header, rows, span=1)
        with conn.cursor() as cur:
            cur.execute("ANALYZE trips")
        conn.commit()
        conn.close()
        cases = [
            ("csv", SourceSpec(kind="csv", path=str(root / "csv"))),
            ("parquet", SourceSpec(kind="parquet", path=str(root / "parquet"))),
            (
                f"postgresql x{args.partitions}",
                SourceSpec(
                    kind="postgresql",
                    url=url,
                    table="trips",
                    span_column="span",
                    partitions=args.partitions,
                ),
            ),
            (
                f"postgresql x{args.partitions} range",
                SourceSpec(
                    kind="postgresql",
                    url=url,
                    table="trips",
                    span_column="span",
                    partitions=args.partitions,
                    partition_column="trip_start_timestamp",
                ),
            ),
        ]
        print(f"{args.rows} rows, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
        print(f"{'source':<26} {'seconds':>8} {'rows/s':>9} {'vs csv':>7}")
        baseline = None
        for i, (label, spec) in enumerate(cases):
            started = time.monotonic()
            _, props = source_samples.run_example_gen(
                sources.example_gen_for((spec,)), root / f"run-{i}", read=False
            )
            seconds = time.monotonic() - started
            rate = args.rows / seconds
            baseline = baseline or rate
            print(f"{label:<26} {seconds:8.1f} {rate:9.0f} {rate / baseline:7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
