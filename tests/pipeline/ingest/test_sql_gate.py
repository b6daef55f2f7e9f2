"""A PostgreSQL `query=` source runs exactly one read-only SELECT (pipeline/ingest/sql_query.py,
postgres_source.py), on the real PostgreSQL server of tests/pg_fixture.py.

Each hostile query must be refused in one line before anything is sent, the table must survive,
and the session guards behind the parser (default_transaction_read_only at connect, a READ ONLY
transaction re-checked before each query) must hold on their own when a statement does reach the
server.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.ingest import postgres_source, sources
from pipeline.ingest.sources import SourceError, SourceSpec, load_sources, parse_source_flag
from pipeline.ingest.sql_query import QueryRefused, read_only_select

TABLE = "victim"
ROWS = 5

# Every query that changed the database, ended the read-only transaction or escaped the parser.
HOSTILE = [
    "SELECT 1; DROP TABLE victim",
    "SELECT * FROM victim; DROP TABLE victim;",
    "COMMIT; DROP TABLE victim",
    "SELECT 1) AS x; COMMIT; DROP TABLE victim; SELECT * FROM (SELECT 1",
    "SELECT 1) AS x; COMMIT; SET default_transaction_read_only = off; DROP TABLE victim; --",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SELECT pg_catalog.set_config('transaction_read_only', 'off', true)",
    "SELECT \"set_config\" ('default_transaction_read_only', 'off', false)",
    "WITH gone AS (DELETE FROM victim RETURNING *) SELECT * FROM gone",
    "WITH t AS (UPDATE victim SET x = 0 RETURNING *) SELECT * FROM t",
    "WITH t AS (INSERT INTO victim VALUES (99) RETURNING *) SELECT * FROM t",
    "SELECT * INTO copy_of_victim FROM victim",
    "SELECT * FROM victim FOR UPDATE",
    "SELECT 1 ; -- trailing\nDROP TABLE victim",
    "SELECT 1; /* c */ DROP TABLE victim /* c */",
    "SELECT 'a\\'; DROP TABLE victim; --'",
    "SELECT $$x$$; DROP TABLE victim",
    "SELECT 1 /* /* */ ' */ ; DROP TABLE victim; --'",
    "BEGIN; DROP TABLE victim; COMMIT",
    "START TRANSACTION READ WRITE",
    "SET TRANSACTION READ WRITE",
    "SAVEPOINT s",
    "ROLLBACK",
    "DROP TABLE victim",
    "TRUNCATE victim",
    "COPY victim TO '/tmp/victim.csv'",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT lo_export(1, '/tmp/x')",
    "VALUES (1)",
    "",
    "   ;  ",
    "-- only a comment",
]


@pytest.fixture(scope="module")
def pg():
    import psycopg2

    from tests.pg_fixture import postgres_server

    with postgres_server() as server:
        saved = os.environ.get("PGPASSWORD")
        os.environ["PGPASSWORD"] = server.password
        try:
            url = server.url("postgres")
            conn = psycopg2.connect(url)
            with conn.cursor() as cur:
                cur.execute(f"CREATE TABLE {TABLE} (x int)")
                cur.execute(f"INSERT INTO {TABLE} SELECT generate_series(1, {ROWS})")
            conn.commit()
            conn.close()
            yield url
        finally:
            if saved is None:
                os.environ.pop("PGPASSWORD", None)
            else:
                os.environ["PGPASSWORD"] = saved


def _rows(url: str) -> int:
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {TABLE}")
            return cur.fetchone()[0]
    finally:
        conn.close()


def _spec_dict(url: str, query: str) -> dict:
    return {"kind": "postgresql", "url": url, "query": query}


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_are_refused_in_one_line_and_the_table_survives(pg, query):
    with pytest.raises(SourceError) as refused:
        specs = load_sources([_spec_dict(pg, query)])
        # Were the spec accepted, preflight would be what sends it: it must refuse too.
        problem = sources.preflight_problem(specs)
        raise SourceError(problem or "accepted")
    message = str(refused.value)
    assert message != "accepted"
    assert "\n" not in message and message.startswith("postgresql")
    assert _rows(pg) == ROWS


@pytest.mark.parametrize("query", HOSTILE[:6])
def test_the_flag_form_refuses_them_too(pg, query):
    from urllib.parse import quote

    with pytest.raises(SourceError) as refused:
        parse_source_flag(f"{pg}?query={quote(query)}")
    assert "\n" not in str(refused.value)
    assert _rows(pg) == ROWS


@pytest.mark.parametrize(
    "query",
    [
        f"SELECT * FROM {TABLE}",
        f"SELECT * FROM {TABLE};",
        f"SELECT * FROM {TABLE} -- the rows",
        f"SELECT * FROM {TABLE}; -- the rows",
        f"SELECT x, 'it''s; fine' AS note, \"x\" AS \"y;z\" FROM {TABLE} /* c */",
        f"WITH t AS (SELECT x FROM {TABLE}) SELECT * FROM t WHERE x > 0",
    ],
)
def test_one_read_only_select_passes_preflight_and_reads(pg, query):
    (spec,) = load_sources([_spec_dict(pg, query)])
    assert sources.preflight_problem([spec]) is None
    span, fingerprint = postgres_source.resolve_span(spec)
    assert span == 0 and fingerprint.endswith(f"rows={ROWS}")
    assert _rows(pg) == ROWS


def test_the_session_cannot_write_even_when_a_statement_reaches_it(pg):
    """The guards behind the parser, exercised with statements the parser would refuse."""
    import psycopg2

    conn = postgres_source.connect(pg)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW default_transaction_read_only")
            assert cur.fetchone()[0] == "on"
            with pytest.raises(psycopg2.Error, match="read-only transaction"):
                cur.execute(f"COMMIT; DROP TABLE {TABLE}")
        conn.rollback()
        # A query that switches the session default back: the next transaction is still
        # BEGIN READ ONLY, and the re-check before a query says so.
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('default_transaction_read_only', 'off', false)")
        conn.commit()
        with conn.cursor() as cur:
            postgres_source._ensure_read_only(cur)
            with pytest.raises(psycopg2.Error, match="read-only transaction"):
                cur.execute(f"DROP TABLE {TABLE}")
        conn.rollback()
    finally:
        conn.close()
    assert _rows(pg) == ROWS


def test_a_read_write_transaction_is_refused_before_the_query(pg):
    conn = postgres_source.connect(pg)
    try:
        conn.set_session(readonly=False)
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ WRITE")
            with pytest.raises(SourceError, match="not read-only"):
                postgres_source._ensure_read_only(cur)
    finally:
        conn.close()


# ---- fuzz: a SELECT with hostile pieces around it ------------------------------------------------
_PIECES = st.sampled_from(
    [
        ";",
        " ",
        "\n",
        "--",
        "/*",
        "*/",
        "'",
        '"',
        "\\",
        "$$",
        ")",
        "(",
        "COMMIT",
        "ROLLBACK",
        "BEGIN",
        "END",
        "SAVEPOINT s",
        "SET default_transaction_read_only = off",
        "SET TRANSACTION READ WRITE",
        "START TRANSACTION",
        f"DROP TABLE {TABLE}",
        f"DELETE FROM {TABLE}",
        f"INSERT INTO {TABLE} VALUES (7)",
        "set_config('transaction_read_only','off',false)",
        "SELECT 1",
        f"FROM {TABLE}",
        "WITH t AS (",
    ]
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(pieces=st.lists(_PIECES, max_size=8))
def test_fuzz_what_passes_the_parser_never_changes_the_database(pg, pieces):
    query = f"SELECT * FROM {TABLE} " + " ".join(pieces)
    try:
        read_only_select(query)
    except QueryRefused as e:
        assert "\n" not in str(e)
        return
    spec = SourceSpec(kind="postgresql", url=pg, query=query)
    try:
        postgres_source.check(spec)
        postgres_source.resolve_span(spec)
    except SourceError as e:
        assert "\n" not in str(e)
    assert _rows(pg) == ROWS


def test_the_documented_role_reads_its_table_and_nothing_else(pg):
    """docs/sources.md's grants, run as written on database taxi: the role's query source reads
    `trips`, and a SELECT of anything else is refused by the server in one line."""
    import psycopg2

    from tests.pipeline.ingest.test_sources import doc_blocks

    admin = psycopg2.connect(pg)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS taxi")
        cur.execute("DROP ROLE IF EXISTS taxi_reader")
        cur.execute("CREATE DATABASE taxi")
    admin.close()
    taxi_url = pg.rsplit("/", 1)[0] + "/taxi"
    conn = psycopg2.connect(taxi_url)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE trips (x int); INSERT INTO trips VALUES (1), (2)")
        cur.execute("CREATE TABLE payroll (x int)")
        cur.execute(doc_blocks()["sources-role"])
        cur.execute("ALTER ROLE taxi_reader PASSWORD 'reader-secret'")
    conn.commit()
    conn.close()
    parts = urlsplit(taxi_url)
    reader_url = parts._replace(netloc="taxi_reader@" + parts.netloc.split("@")[1]).geturl()
    saved = os.environ["PGPASSWORD"]
    os.environ["PGPASSWORD"] = "reader-secret"
    try:
        (ok,) = load_sources([_spec_dict(reader_url, "SELECT * FROM trips")])
        assert sources.preflight_problem([ok]) is None
        assert postgres_source.resolve_span(ok)[1].endswith("rows=2")
        for other in ("SELECT * FROM payroll", "SELECT * FROM pg_catalog.pg_authid"):
            (spec,) = load_sources([_spec_dict(reader_url, other)])
            problem = sources.preflight_problem([spec])
            assert problem and "permission denied" in problem and "\n" not in problem
    finally:
        os.environ["PGPASSWORD"] = saved
