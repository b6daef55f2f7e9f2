"""The taxi CSV's rows in the other source formats (Parquet, TFRecord, a PostgreSQL table), typed
by the curated schema: what the source tests compare against CsvExampleGen and what
bench/sources_bench.py reads. An empty CSV cell is a NULL / an empty feature list everywhere."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from pipeline.config import PipelineConfig
from pipeline.samples import TAXI_CSV

Row = dict[str, Any]
SQL_TYPES = {"INT": "bigint", "FLOAT": "double precision", "BYTES": "text"}


def column_types(schema_path: str | None = None) -> dict[str, str]:
    from pipeline.spans import schema_columns

    return schema_columns(schema_path or PipelineConfig().schema_path)


def typed_rows(
    csv_path: str | Path = TAXI_CSV, rows: int | None = None
) -> tuple[list[str], list[Row]]:
    """(header, rows) of a CSV with values typed by the schema (None for an empty cell); `rows`
    repeats the file's rows up to that many (for benchmarks larger than the sample)."""
    types = column_types()
    with open(csv_path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        raw = [r for r in reader if r]
    convert = {"INT": int, "FLOAT": float, "BYTES": str}
    out = [
        {
            name: (convert[types[name]](v) if v != "" else None)
            for name, v in zip(header, r, strict=True)
        }
        for r in raw
    ]
    if rows is not None:
        out = [out[i % len(out)] for i in range(rows)]
    return header, out


def write_csv(header: list[str], rows: list[Row], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if row[c] is None else row[c] for c in header])
    return path


def write_parquet(header: list[str], rows: list[Row], path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = column_types()
    arrow = {"INT": pa.int64(), "FLOAT": pa.float64(), "BYTES": pa.string()}
    table = pa.table(
        {c: pa.array([r[c] for r in rows], type=arrow[types[c]]) for c in header},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def write_tfrecord(header: list[str], rows: list[Row], path: Path) -> Path:
    """tf.Examples as a user's own tooling would write them (one feature per column)."""
    import tensorflow as tf

    types = column_types()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in rows:
            feature = {}
            for c in header:
                v = row[c]
                if types[c] == "INT":
                    f = tf.train.Feature(
                        int64_list=tf.train.Int64List(value=[] if v is None else [v])
                    )
                elif types[c] == "FLOAT":
                    f = tf.train.Feature(
                        float_list=tf.train.FloatList(value=[] if v is None else [v])
                    )
                else:
                    f = tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[] if v is None else [v.encode()])
                    )
                feature[c] = f
            writer.write(
                tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
            )
    return path


def load_postgres(
    conn, table: str, header: list[str], rows: list[Row], span: int, create: bool = True
) -> None:
    """Insert `rows` into `table` (created with the schema-typed columns and a `span` column
    when `create`)."""
    from psycopg2.extras import execute_values

    types = column_types()
    with conn.cursor() as cur:
        if create:
            columns = ", ".join(f'"{c}" {SQL_TYPES[types[c]]}' for c in header)
            cur.execute(f'DROP TABLE IF EXISTS "{table}"')
            cur.execute(f'CREATE TABLE "{table}" (span int, {columns})')
        names = ", ".join(f'"{c}"' for c in header)
        execute_values(
            cur,
            f'INSERT INTO "{table}" (span, {names}) VALUES %s',
            [(span, *(r[c] for c in header)) for r in rows],
            page_size=2000,
        )
    conn.commit()
