"""Read a PostgreSQL table or query into tf.Examples in parallel partitions.

The rows are never pulled through one query into the driver: the source is split into K
partition queries, each read by its own Beam worker through a server-side (named) cursor that
streams `FETCH_ROWS` rows at a time, in a read-only transaction.

    partition_column set   K contiguous ranges of that integer column (min/max asked once)
    otherwise              MOD(hashtext(row), K): any table or query, each partition a full scan

Connection: a libpq URL without password (postgresql://user@host:5432/db?sslmode=...); libpq
takes the password from PGPASSWORD or a PGPASSFILE (~/.pgpass), so it is never in the pipeline
definition, ML Metadata or logs. Error text is scrubbed of PGPASSWORD all the same.

Types: integer and boolean columns -> int64_list, real/double/numeric -> float_list, anything
else -> bytes_list (text as UTF-8, other types as their text form); NULL -> an empty list of the
column's kind, as CsvExampleGen writes an empty cell.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from metadata.connection import MASK
from pipeline.ingest.sources import SourceError, SourceSpec
from pipeline.ingest.sql_query import QueryRefused, read_only_select

METRICS_NAMESPACE = "postgresql_source"
FETCH_ROWS = 5000
CONNECT_TIMEOUT_SECONDS = 10
# PostgreSQL type OIDs (pg_type.oid) of the columns that become int64 / float features.
INT_OIDS = frozenset({16, 20, 21, 23, 26})  # bool, int8, int2, int4, oid
FLOAT_OIDS = frozenset({700, 701, 1700})  # float4, float8, numeric
# libpq options of every connection: new transactions start read-only unless one asks otherwise.
READ_ONLY_OPTIONS = "-c default_transaction_read_only=on"


def _scrub(text: str) -> str:
    secret = os.environ.get("PGPASSWORD")
    line = (text.strip().splitlines() or [""])[0]
    return line.replace(secret, MASK) if secret else line


def connect(url: str):
    """A psycopg2 connection (password from libpq's environment) whose every transaction is
    read-only: the session default is set at connect (so a transaction the query might open after
    ending ours is read-only too), and psycopg2 opens each transaction with BEGIN READ ONLY."""
    import psycopg2

    try:
        conn = psycopg2.connect(
            url, connect_timeout=CONNECT_TIMEOUT_SECONDS, options=READ_ONLY_OPTIONS
        )
    except psycopg2.Error as e:
        raise SourceError(f"cannot connect to {url}: {_scrub(str(e))}") from None
    conn.set_session(readonly=True)
    return conn


def _ensure_read_only(cur) -> None:
    """Refuse to go on unless the current transaction is read-only (asked of the server, inside the
    transaction the next query runs in)."""
    cur.execute("SHOW transaction_read_only")
    state = cur.fetchone()[0]
    if state != "on":
        raise SourceError(f"postgresql source: the transaction is not read-only ({state})")


def _quote(identifier: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in identifier.split("."))


def base_query(spec: SourceSpec) -> str:
    """The source's rows as one SELECT (table, or the user's query, checked to be one read-only
    SELECT and ending in a newline, so a comment cannot swallow what is appended to it)."""
    if spec.table:
        return f"SELECT * FROM {_quote(spec.table)}"
    try:
        return read_only_select(spec.query) + "\n"
    except QueryRefused as e:
        raise SourceError(f"postgresql source {spec.describe()}: {e}") from None


def span_query(spec: SourceSpec, span: int | None) -> str:
    """The rows of `span` (all rows when there is no span column)."""
    base = base_query(spec)
    if not spec.span_column or span is None:
        return base
    return f"SELECT * FROM ({base}) AS src WHERE {_quote(spec.span_column)} = {int(span)}"


def _scalar(conn, sql: str) -> Any:
    import psycopg2

    try:
        with conn.cursor() as cur:
            _ensure_read_only(cur)
            cur.execute(sql)
            return cur.fetchone()[0]
    except psycopg2.Error as e:
        raise SourceError(f"postgresql source: {_scrub(str(e))}") from None


def check(spec: SourceSpec) -> None:
    """Connect, and check the table/query and its span/partition columns exist. Free of side
    effects: the query is refused before connecting unless it is one read-only SELECT, and runs
    under LIMIT 0 in a read-only transaction that is rolled back."""
    import psycopg2

    base = base_query(spec)
    conn = connect(spec.url)
    try:
        with conn.cursor() as cur:
            try:
                _ensure_read_only(cur)
                cur.execute(f"SELECT * FROM ({base}) AS src LIMIT 0")
            except psycopg2.Error as e:
                raise SourceError(
                    f"postgresql source {spec.describe()}: {_scrub(str(e))}"
                ) from None
            columns = [d.name for d in cur.description]
        conn.rollback()
        for field in ("span_column", "partition_column"):
            column = getattr(spec, field)
            if column and column not in columns:
                raise SourceError(
                    f"postgresql source {spec.describe()}: {field} {column!r} is not a column "
                    f"(have {', '.join(columns)})"
                )
    finally:
        conn.close()


def resolve_span(spec: SourceSpec) -> tuple[int, str]:
    """(span, fingerprint): the highest value of span_column (0 without one), and the row count
    of that span, which changes the ExampleGen's cache key when rows are added."""
    conn = connect(spec.url)
    try:
        span = 0
        if spec.span_column:
            found = _scalar(
                conn, f"SELECT max({_quote(spec.span_column)}) FROM ({base_query(spec)}) AS src"
            )
            if found is None:
                raise SourceError(f"postgresql source {spec.describe()} has no rows")
            span = int(found)
        rows = _scalar(conn, f"SELECT count(*) FROM ({span_query(spec, span)}) AS src")
    finally:
        conn.close()
    return span, f"postgresql {spec.describe()} span={span} rows={rows}"


def partition_queries(spec: SourceSpec, span: int | None) -> list[str]:
    """K queries whose results are disjoint and together the span's rows."""
    rows = span_query(spec, span)
    k = spec.partitions
    if k == 1:
        return [rows]
    if spec.partition_column:
        col = _quote(spec.partition_column)
        conn = connect(spec.url)
        try:
            lo_hi = _scalar(conn, f"SELECT ARRAY[min({col}), max({col})] FROM ({rows}) AS src")
        finally:
            conn.close()
        if lo_hi[0] is None:
            return [rows]
        lo, hi = int(lo_hi[0]), int(lo_hi[1])
        step = max(1, -(-(hi - lo + 1) // k))
        bounds = [lo + i * step for i in range(k)] + [hi + 1]
        ranges = [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if a < b]
        # Rows whose key is NULL go with the first range, so every row is read exactly once.
        return [
            f"SELECT * FROM ({rows}) AS src WHERE ({col} >= {a} AND {col} < {b})"
            + (f" OR {col} IS NULL" if i == 0 else "")
            for i, (a, b) in enumerate(ranges)
        ]
    # hashtext() is int4; shifting by 2^31 into bigint keeps MOD non-negative without abs()
    # overflowing on -2^31.
    bucket = "mod(hashtext(src::text)::bigint + 2147483648, {k})"
    return [f"SELECT * FROM ({rows}) AS src WHERE {bucket.format(k=k)} = {i}" for i in range(k)]


def _feature_kinds(description, skip: frozenset[str]) -> list[tuple[int, str, str]]:
    kinds = []
    for index, column in enumerate(description):
        if column.name in skip:
            continue
        oid = column.type_code
        kind = "int64" if oid in INT_OIDS else "float" if oid in FLOAT_OIDS else "bytes"
        kinds.append((index, column.name, kind))
    return kinds


def row_to_example(row: tuple, kinds: list[tuple[int, str, str]]):
    import tensorflow as tf

    feature = {}
    for index, name, kind in kinds:
        value = row[index]
        if kind == "int64":
            values = [] if value is None else [int(value)]
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        elif kind == "float":
            values = [] if value is None else [float(value)]
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        else:
            if value is None:
                values = []
            elif isinstance(value, (bytes, memoryview)):
                values = [bytes(value)]
            else:
                values = [str(value).encode("utf-8")]
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature))


class _ReadPartition(beam.DoFn):
    """One partition query through a server-side cursor; counts its rows per partition."""

    def __init__(self, url: str, skip_columns: tuple[str, ...]) -> None:
        self._url = url
        self._skip = frozenset(skip_columns)

    def process(self, element: tuple[int, str]) -> Iterator[Any]:
        index, sql = element
        rows = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"partition-{index}-rows")
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, "partitions-read").inc()
        conn = connect(self._url)
        try:
            with conn.cursor() as check:
                _ensure_read_only(check)
            with conn.cursor(name=f"tfx_source_partition_{index}") as cur:
                cur.itersize = FETCH_ROWS
                cur.execute(sql)
                kinds = None
                for row in cur:
                    if kinds is None:
                        kinds = _feature_kinds(cur.description, self._skip)
                    rows.inc()
                    yield row_to_example(row, kinds)
            conn.rollback()
        finally:
            conn.close()


@beam.ptransform_fn
def ReadPostgres(pipeline: beam.Pipeline, spec: SourceSpec, span: int | None):  # noqa: N802
    """The span's rows as tf.Examples, K partitions read in parallel."""
    queries = partition_queries(spec, span)
    skip = (spec.span_column,) if spec.span_column else ()
    return (
        pipeline
        | "Partitions" >> beam.Create(list(enumerate(queries)))
        # One partition per worker: without the shuffle a runner may fuse them onto one.
        | "Distribute" >> beam.Reshuffle()
        | "ReadPartition" >> beam.ParDo(_ReadPartition(spec.url, skip))
    )
