"""The taxi CSV's rows in the other source formats (Parquet, TFRecord, a PostgreSQL table), typed
by the curated schema: what the source tests compare against CsvExampleGen and what
bench/sources_bench.py reads. An empty CSV cell is a NULL / an empty feature list everywhere."""

from __future__ import annotations

import collections
import csv
import glob
import os
from pathlib import Path
from typing import Any

from pipeline.config import PipelineConfig
from pipeline.testing.samples import TAXI_CSV

Row = dict[str, Any]
SQL_TYPES = {"INT": "bigint", "FLOAT": "double precision", "BYTES": "text"}


def column_types(schema_path: str | None = None) -> dict[str, str]:
    from pipeline.ingest.spans import schema_columns

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


def read_examples(uri_glob: str) -> list:
    """Every tf.Example in the gzipped TFRecord files matching `uri_glob`."""

    import tensorflow as tf

    out = []
    for path in sorted(glob.glob(uri_glob)):
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator():
            out.append(tf.train.Example.FromString(record))
    return out


def as_rows(examples, drop: tuple[str, ...] = ()) -> collections.Counter:
    """Each example as a hashable ((feature, kind, values), ...) row; a multiset of them.

    A feature without values compares as kind None: CsvExampleGen infers a column's type from
    its values, so a column empty in the whole file comes out kind-less, where a typed source
    (Parquet, PostgreSQL, TFRecord) writes an empty list of the declared type. Both mean "no
    value" to TFDV and Transform; any column with a value is compared with its kind."""
    rows = []
    for ex in examples:
        row = []
        for name, f in sorted(ex.features.feature.items()):
            if name in drop:
                continue
            kind = f.WhichOneof("kind")
            values = tuple(getattr(f, kind).value) if kind else ()
            row.append((name, kind if values else None, values))
        rows.append(tuple(row))
    return collections.Counter(rows)


def run_example_gen(
    component, root: Path, beam_args: list[str] | None = None, read: bool = True
) -> tuple[list, dict]:
    """Run one ExampleGen as a one-node pipeline under LocalDagRunner (driver, executor, ML
    Metadata in SQLite under `root`); its examples (when `read`) and its output's custom
    properties (span, sources, ...) plus `uri`."""

    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from tfx.orchestration.pipeline import Pipeline

    from metadata.connection import sqlite_config
    from metadata.store import open_store
    from pipeline.config import in_memory_beam_args

    root.mkdir(parents=True, exist_ok=True)
    db = root / "metadata.db"
    pipeline = Pipeline(
        pipeline_name="sources_test",
        pipeline_root=str(root / "out"),
        components=[component],
        metadata_connection_config=sqlite_config(db),
        beam_pipeline_args=beam_args if beam_args is not None else in_memory_beam_args(),
        enable_cache=True,
    )
    LocalDagRunner().run(pipeline)
    newest = open_store(str(db)).node_artifacts("sources_test", component.id, "Examples")[0]
    props = {k: v.string_value or v.int_value for k, v in newest.custom_properties.items()}
    props["uri"] = newest.uri
    examples = read_examples(os.path.join(newest.uri, "Split-*", "*.gz")) if read else []
    return examples, props
