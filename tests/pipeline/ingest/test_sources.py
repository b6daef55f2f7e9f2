"""Data sources beside the default CSV (pipeline/ingest/sources.py, docs/sources.md).

Every kind's ExampleGen runs for real (a one-node TFX pipeline under LocalDagRunner: driver, span
resolution, executor, ML Metadata) on the same rows as a CsvExampleGen run, and the parsed
tf.Examples must match the CSV's feature by feature, kind and values, order-independent. The
PostgreSQL source reads a real PostgreSQL server (tests/pg_fixture.py) in several partitions.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

import modules  # noqa: F401 - Keras-2 switch before TensorFlow
from pipeline.config import in_memory_beam_args
from pipeline.ingest import sources
from pipeline.ingest.sources import SourceError, SourceSpec, load_sources, parse_source_flag
from pipeline.testing import source_samples
from pipeline.testing.samples import write_sample
from pipeline.testing.source_samples import as_rows, read_examples, run_example_gen
from tests.paths import PROJECT_ROOT

ROWS = 240
TABLE = "trips"


# ---- hostile configurations: one line, nothing started ------------------------------------------
@pytest.mark.parametrize(
    "entries, expected",
    [
        ([{"kind": "excel", "path": "/x"}], "unknown source kind 'excel'"),
        ([{"path": "/x"}], "has no 'kind'"),
        ([{"kind": "parquet"}], "parquet source needs a path"),
        ([{"kind": "parquet", "path": "/x", "table": "t"}], "table do(es) not apply"),
        ([{"kind": "csv", "path": "/x", "colour": "red"}], "unknown source key(s) colour"),
        ([{"kind": "csv", "path": "/x", "pattern": "../../etc/*"}], "must be relative"),
        ([{"kind": "postgresql", "url": "postgresql://u@h/db"}], "exactly one of table or query"),
        ([{"kind": "postgresql", "url": "mysql://u@h/db", "table": "t"}], "needs url postgresql"),
        ([{"kind": "postgresql", "url": "postgresql://u@h/", "table": "t"}], "database name"),
        (
            [{"kind": "postgresql", "url": "postgresql://u:hunter2@h/db", "table": "t"}],
            "holds a password",
        ),
        (
            [{"kind": "postgresql", "url": "postgresql://u@h/db", "table": "t; DROP TABLE t"}],
            "not a [schema.]name identifier",
        ),
        (
            [{"kind": "postgresql", "url": "postgresql://u@h/db", "table": "t", "partitions": 0}],
            "between 1 and 256",
        ),
        (
            [{"kind": "postgresql", "url": "postgresql://u@h/db", "table": "t", "partitions": "x"}],
            "must be an integer",
        ),
        (
            [
                {
                    "kind": "postgresql",
                    "url": "postgresql://u@h/db",
                    "table": "t",
                    "span_column": "a b",
                }
            ],
            "is not a column name",
        ),
        ([{"kind": "bigquery"}], "bigquery source needs a query"),
        (
            [{"kind": "bigquery", "query": "SELECT 1"}, {"kind": "csv", "path": "/x"}],
            "cannot be combined",
        ),
        (
            [{"kind": "csv", "path": "/a"}, {"kind": "csv", "path": "/b"}],
            "several sources are labelled csv",
        ),
        ([{"kind": "csv", "path": "/x", "name": "a b"}], "source name 'a b'"),
        ("csv:/x", "must be a list"),
        ([["kind", "csv"]], "must be a mapping"),
        ([{"kind": "csv", "path": 7}], "path must be a string"),
    ],
)
def test_hostile_source_lists_are_one_line_errors(entries, expected):
    with pytest.raises(SourceError) as e:
        load_sources(entries)
    assert expected in str(e.value)
    assert "\n" not in str(e.value)
    assert "hunter2" not in str(e.value)


def test_flag_forms():
    assert parse_source_flag("parquet:/data/history") == SourceSpec(
        kind="parquet", path="/data/history"
    )
    pg = parse_source_flag(
        "postgresql://etl@db:5432/taxi?table=trips&span_column=span&partitions=8&sslmode=require"
    )
    assert (pg.url, pg.table, pg.span_column, pg.partitions) == (
        "postgresql://etl@db:5432/taxi?sslmode=require",
        "trips",
        "span",
        8,
    )
    assert parse_source_flag("bigquery:SELECT * FROM t").query == "SELECT * FROM t"
    # Round trip through the dict form the dataset spec file uses.
    assert load_sources([pg.to_dict()]) == (pg,)
    for bad in ("parquet", "excel:/x", "csv:", "postgresql://etl:pw@db/taxi?table=t"):
        with pytest.raises(SourceError):
            parse_source_flag(bad)


def test_runner_refuses_a_bad_source_in_one_line(tmp_path):
    import sys

    from tests.paths import PROJECT_ROOT

    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "runners" / "local_runner.py"), "--source", "excel:/x"]
        + ["--output-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "Pipeline not started: unknown source kind 'excel': use one of "
        "csv, parquet, tfrecord, postgresql, bigquery"
    ]
    assert not out.exists()


@pytest.mark.parametrize(
    "make_spec, expected",
    [
        (lambda d: SourceSpec(kind="parquet", path=str(d / "missing")), "is not a directory"),
        (lambda d: SourceSpec(kind="csv", path=str(d)), "csv source"),
        (lambda d: SourceSpec(kind="tfrecord", path=str(d), pattern="x/*.gz"), "tfrecord source"),
        # Nothing listens on port 1: an unreachable database.
        (
            lambda d: SourceSpec(kind="postgresql", url="postgresql://u@127.0.0.1:1/db", table="t"),
            "cannot connect to postgresql://u@127.0.0.1:1/db",
        ),
    ],
)
def test_preflight_finds_unreadable_sources_in_one_line(tmp_path, make_spec, expected):
    """What run_pipeline checks before anything starts (the runner prints it and exits 2)."""
    problem = sources.preflight_problem([make_spec(tmp_path)])
    assert problem is not None and expected in problem and "\n" not in problem, problem


def test_empty_sources_keep_todays_csv_example_gen():
    from pipeline.config import PipelineConfig
    from pipeline.pipeline import create_pipeline

    config = PipelineConfig()
    eg = next(c for c in create_pipeline(config).components if c.id.endswith("ExampleGen"))
    assert eg.id == "CsvExampleGen" and type(eg).__name__ == "CsvExampleGen"
    assert eg.exec_properties["input_base"] == config.data_root
    assert "span-{SPAN}/*.csv" in eg.exec_properties["input_config"]


def test_source_feature_is_declared_but_not_a_model_input(tmp_path):
    import tensorflow_data_validation as tfdv

    from modules import features
    from pipeline.config import PipelineConfig
    from pipeline.source_schema import with_source_feature

    curated = tfdv.load_schema_text(PipelineConfig().schema_path)
    # The curated schema describes the raw CSV; only the multi-source path adds `source`.
    assert sources.SOURCE_FEATURE not in {f.name for f in curated.feature}
    # ...and is alone in its folder, so a Schema artifact may point at the folder (TFX reads the
    # one file a Schema artifact's directory holds).
    assert os.listdir(Path(PipelineConfig().schema_path).parent) == ["schema.pbtxt"]
    derived = with_source_feature(PipelineConfig().schema_path, str(tmp_path))
    assert with_source_feature(PipelineConfig().schema_path, str(tmp_path)) == derived
    schema = tfdv.load_schema_text(derived)
    assert [f for f in schema.feature if f.name != sources.SOURCE_FEATURE] == list(curated.feature)
    source = tfdv.get_feature(schema, sources.SOURCE_FEATURE)
    assert "SERVING" in source.not_in_environment
    assert source.presence.min_count == 0 and source.presence.min_fraction == 0
    assert sources.SOURCE_FEATURE not in features.RAW_FEATURE_KEYS
    assert not source.HasField("drift_comparator") and not source.HasField("skew_comparator")
    # add-span does not ask CSV files for it.
    from pipeline.ingest.spans import schema_columns

    assert sources.SOURCE_FEATURE not in schema_columns(PipelineConfig().schema_path)

    # Single-source data (no `source` at all) still passes the schema: the column is optional.
    import csv

    from data_stats.measures import (
        examples_from_rows,
        statistics_of_examples,
        statistics_options,
    )
    from pipeline.testing.samples import TAXI_CSV

    with open(TAXI_CSV, newline="") as f:
        rows = [r for _, r in zip(range(300), csv.DictReader(f), strict=False)]
    columns = schema_columns(PipelineConfig().schema_path)
    stats = statistics_of_examples(examples_from_rows(rows, columns), statistics_options())
    assert not tfdv.validate_statistics(stats, schema).anomaly_info


# ---- the same rows from every kind ---------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The same rows as CSV, Parquet and TFRecord span folders."""
    root = tmp_path_factory.mktemp("sources")
    csv_root = write_sample(root / "csv", rows=ROWS)
    header, rows = source_samples.typed_rows(csv_root / "span-1" / "data.csv")
    source_samples.write_parquet(header, rows, root / "parquet" / "span-1" / "data.parquet")
    source_samples.write_tfrecord(header, rows, root / "tfrecord" / "span-1" / "data.tfrecord")
    return root, header, rows


@pytest.fixture(scope="module")
def pg(data):
    """A real PostgreSQL server holding the rows as table `trips`: span 1 all rows, span 2 the
    first 100; the password only in PGPASSWORD."""
    import psycopg2

    from tests.pg_fixture import postgres_server

    _, header, rows = data
    with postgres_server() as server:
        saved = os.environ.get("PGPASSWORD")
        os.environ["PGPASSWORD"] = server.password
        try:
            url = server.url("postgres")
            conn = psycopg2.connect(url)
            source_samples.load_postgres(conn, TABLE, header, rows, span=1)
            source_samples.load_postgres(conn, TABLE, header, rows[:100], span=2, create=False)
            conn.close()
            yield server, url
        finally:
            if saved is None:
                os.environ.pop("PGPASSWORD", None)
            else:
                os.environ["PGPASSWORD"] = saved


@pytest.fixture(scope="module")
def csv_baseline(data, tmp_path_factory):
    root, _, _ = data
    examples, props = run_example_gen(
        sources.example_gen_for((SourceSpec(kind="csv", path=str(root / "csv")),)),
        tmp_path_factory.mktemp("csv_eg"),
    )
    assert len(examples) == ROWS and props["span"] == 1
    return as_rows(examples)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["parquet", "tfrecord"])
def test_file_source_gives_the_csv_examples(kind, data, csv_baseline, tmp_path):
    root, _, _ = data
    component = sources.example_gen_for((SourceSpec(kind=kind, path=str(root / kind)),))
    examples, props = run_example_gen(component, tmp_path)
    assert props["span"] == 1
    assert as_rows(examples) == csv_baseline


@pytest.mark.slow
def test_parquet_zeros_stay_zeros(data, csv_baseline):
    """TFX 1.16's own parquet executor (utils.dict_to_example) turns 0 / 0.0 into a missing
    value; the rows here hold zeros (trip_start_hour 0, tips 0.0), which must stay values."""
    zeros = [
        (name, values)
        for row in csv_baseline
        for name, _, values in row
        if values in ((0,), (0.0,))
    ]
    assert {"tips", "trip_start_hour"} & {name for name, _ in zeros}


@pytest.mark.slow
def test_postgresql_source_gives_the_csv_examples_of_its_latest_span(
    data, pg, csv_baseline, tmp_path
):
    _, url = pg
    spec = SourceSpec(kind="postgresql", url=url, table=TABLE, span_column="span", partitions=3)
    examples, props = run_example_gen(sources.example_gen_for((spec,)), tmp_path)
    assert props["span"] == 2  # the newest span: the first 100 rows
    assert len(examples) == 100
    # Same rows as CSV, minus the span column, which is the artifact's span, not a feature.
    assert not (+(as_rows(examples) - csv_baseline))
    assert all("span" not in e.features.feature for e in examples)


def _span_examples(url: str, span: int) -> list:
    """The span's rows read in one plain query (the reference for the partitioned read)."""
    import psycopg2

    from pipeline.ingest import postgres_source

    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute(f'SELECT * FROM "{TABLE}" WHERE span = %s', (span,))
        kinds = postgres_source._feature_kinds(cur.description, frozenset({"span"}))
        rows = cur.fetchall()
    conn.close()
    return [postgres_source.row_to_example(r, kinds) for r in rows]


@pytest.mark.slow
@pytest.mark.parametrize("partition_column", ["", "trip_start_timestamp"])
def test_postgresql_partitions_are_read_separately(pg, partition_column):
    """Each partition query is read by its own DoFn call (Beam counters per partition), and
    together they are the span's rows exactly once."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.testing.util import assert_that, equal_to

    from pipeline.ingest import postgres_source

    _, url = pg
    spec = SourceSpec(
        kind="postgresql",
        url=url,
        query=f'SELECT * FROM "{TABLE}"',
        span_column="span",
        partitions=4,
        partition_column=partition_column,
    )
    queries = postgres_source.partition_queries(spec, 1)
    assert len(queries) == 4 and len(set(queries)) == 4
    p = beam.Pipeline(argv=in_memory_beam_args())
    keys = (
        p
        | postgres_source.ReadPostgres(spec, 1)
        | beam.Map(lambda e: e.SerializeToString(deterministic=True))
    )
    # Every row of span 1 exactly once, whichever partition read it.
    expected = [e.SerializeToString(deterministic=True) for e in _span_examples(url, 1)]
    assert_that(keys, equal_to(expected))
    result = p.run()
    result.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(
            MetricsFilter().with_namespace(postgres_source.METRICS_NAMESPACE)
        )["counters"]
    }
    per_partition = [counters.get(f"partition-{i}-rows", 0) for i in range(4)]
    assert counters["partitions-read"] == 4
    assert sum(per_partition) == ROWS
    assert all(n > 0 for n in per_partition), per_partition


@pytest.mark.slow
def test_several_sources_make_one_artifact_with_each_rows_source(data, pg, csv_baseline, tmp_path):
    """History in Parquet (span 1) plus the database's newest rows (span 2): one Examples
    artifact, every row tagged with its source, span 2, the sources listed on the artifact;
    the rows without their tag are the CSV's; the statistics pass the curated schema with the
    `source` column the multi-source path adds (pipeline/source_schema.py)."""
    import tensorflow_data_validation as tfdv

    from data_stats.measures import statistics_of_examples, statistics_options
    from pipeline.config import PipelineConfig
    from pipeline.source_schema import with_source_feature

    root, _, _ = data
    _, url = pg
    specs = load_sources(
        [
            {"kind": "parquet", "path": str(root / "parquet"), "name": "history"},
            {"kind": "postgresql", "url": url, "table": TABLE, "span_column": "span", "name": "db"},
        ]
    )
    examples, props = run_example_gen(sources.example_gen_for(specs), tmp_path)
    assert props["span"] == 2
    assert [s["name"] for s in json.loads(props[sources.SOURCES_PROPERTY])] == ["history", "db"]
    tags = collections.Counter(
        e.features.feature[sources.SOURCE_FEATURE].bytes_list.value[0] for e in examples
    )
    assert tags == {b"history": ROWS, b"db": 100}
    by_source = collections.defaultdict(list)
    for e in examples:
        by_source[e.features.feature[sources.SOURCE_FEATURE].bytes_list.value[0]].append(e)
    drop = (sources.SOURCE_FEATURE,)
    assert as_rows(by_source[b"history"], drop=drop) == csv_baseline
    from_db = as_rows(by_source[b"db"], drop=drop)
    assert sum(from_db.values()) == 100 and not from_db - csv_baseline
    stats = statistics_of_examples([e.SerializeToString() for e in examples], statistics_options())
    schema_path = with_source_feature(PipelineConfig().schema_path, str(tmp_path / "schema"))
    schema = tfdv.load_schema_text(schema_path)
    anomalies = tfdv.validate_statistics(stats, schema)
    assert not anomalies.anomaly_info, anomalies


@pytest.mark.slow
def test_example_gen_reruns_on_new_rows_and_is_cached_otherwise(pg, tmp_path):
    """The driver's fingerprint (the span's row count) is part of the cache key: an unchanged
    table reuses the artifact, an added row re-reads it."""
    import psycopg2

    _, url = pg
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute(f'CREATE TABLE "cachetest" AS SELECT * FROM "{TABLE}" WHERE span = 2')
    conn.commit()
    spec = SourceSpec(kind="postgresql", url=url, table="cachetest", partitions=2)
    first, p1 = run_example_gen(sources.example_gen_for((spec,)), tmp_path)
    again, p2 = run_example_gen(sources.example_gen_for((spec,)), tmp_path)
    assert p1["uri"] == p2["uri"] and len(first) == len(again) == 100
    with conn.cursor() as cur:
        cur.execute('INSERT INTO "cachetest" SELECT * FROM "cachetest" LIMIT 1')
    conn.commit()
    conn.close()
    grown, p3 = run_example_gen(sources.example_gen_for((spec,)), tmp_path)
    assert p3["uri"] != p1["uri"] and len(grown) == 101


# ---- docs/sources.md, run as written; the full pipeline on Parquet + PostgreSQL ------------------
DOC = PROJECT_ROOT / "docs" / "sources.md"
_BLOCK = re.compile(
    r"^<!-- test: (sources-[a-z]+) -->\n```(?:bash|python|sql)\n(.*?)\n```$", re.M | re.S
)


def doc_blocks() -> dict[str, str]:
    return dict(_BLOCK.findall(DOC.read_text()))


def test_docs_mark_every_command_block():
    blocks = doc_blocks()
    assert set(blocks) == {
        "sources-python",
        "sources-kubeflow",
        "sources-run",
        "sources-errors",
        "sources-role",  # run by tests/pipeline/ingest/test_sql_gate.py
    }
    fences = re.findall(r"^```(bash|python|sql)$", DOC.read_text(), re.M)
    assert len(fences) == len(blocks)


def test_documented_python_builds_the_config():
    namespace: dict = {}
    exec(doc_blocks()["sources-python"], namespace)  # noqa: S102 - the documented snippet
    config = namespace["config"]
    assert [s.kind for s in config.sources] == ["parquet", "postgresql"]
    assert [s.label for s in config.sources] == ["history", "db"]


def _checkout(root: Path) -> Path:
    """A directory laid out like a checkout (the docs call .venv/bin/python)."""
    import sys

    repo = PROJECT_ROOT
    checkout = root / "checkout"
    checkout.mkdir()
    for entry in repo.iterdir():
        if entry.name not in (".venv", ".git"):
            (checkout / entry.name).symlink_to(entry)
    (checkout / ".venv").symlink_to(sys.prefix)
    return checkout


def _run_block(name: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", doc_blocks()[name]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_documented_commands_and_a_full_run_on_parquet_and_postgresql(data, pg, tmp_path):
    """docs/sources.md's blocks as written: the error cases, the BigQuery compile for Kubeflow,
    and a small full run (no tuning, 30 steps) over Parquet history (span 1, 240 rows) plus the
    database's newest span (100 rows) that trains and pushes."""
    import time

    import tensorflow_transform as tft
    import yaml

    from metadata.store import open_store

    root, _, _ = data
    server, _ = pg
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "OUT": str(out),
        "HISTORY": str(root / "parquet"),
        "PGUSER": server.user,
        "PGHOST": server.host,
        "PGPORT": str(server.port),
        "PGPASSWORD": server.password,
    }
    cwd = _checkout(tmp_path)

    errors = _run_block("sources-errors", cwd, env)
    assert errors.returncode == 0, errors.stderr[-2000:]
    assert errors.stdout.splitlines() == ["exit status 2"] * 3, errors.stdout
    lines = [x for x in errors.stderr.splitlines() if x.strip()]
    assert len(lines) == 3 and all(x.startswith("Pipeline not started: ") for x in lines), lines
    assert server.password not in errors.stderr + errors.stdout

    compiled = _run_block("sources-kubeflow", cwd, env)
    assert compiled.returncode == 0, compiled.stderr[-2000:]
    spec = yaml.safe_load((out / "taxi-bigquery.yaml").read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert "BigQueryExampleGen" in tasks and "CsvExampleGen" not in tasks
    params = tasks["BigQueryExampleGen"]["inputs"]["parameters"]
    input_config = json.loads(params["input_config"]["runtimeValue"]["constant"])
    assert input_config["splits"][0]["pattern"] == BIGQUERY_QUERY
    executor = spec["deploymentSpec"]["executors"][
        spec["components"]["BigQueryExampleGen"]["executorLabel"]
    ]["container"]
    assert any("google_cloud_big_query.example_gen.executor" in a for a in executor["args"])
    # Its rows go on through the RowCleaner, like every source's.
    cleaner_input = tasks["RowCleaner"]["inputs"]["artifacts"]["examples"]
    assert cleaner_input["taskOutputArtifact"]["producerTask"] == "BigQueryExampleGen"

    started = time.monotonic()
    run = _run_block("sources-run", cwd, env)
    seconds = time.monotonic() - started
    print(f"full run on parquet + postgresql: {seconds:.0f}s")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Span: 2" in run.stdout
    assert server.password not in run.stdout + run.stderr
    pushed = [p for p in (out / "serving_model" / "taxi").iterdir() if p.name.isdigit()]
    assert len(pushed) == 1 and (pushed[0] / "saved_model.pb").is_file()

    store = open_store(str(out / "metadata" / "metadata.db"))
    examples = store.node_artifacts("taxi_pipeline", sources.MULTI_SOURCE_EXAMPLE_GEN, "Examples")[
        0
    ]
    listing = json.loads(examples.custom_properties[sources.SOURCES_PROPERTY].string_value)
    assert [x["name"] for x in listing] == ["parquet", "db"]
    rows = read_examples(os.path.join(examples.uri, "Split-*", "*.gz"))
    tags = collections.Counter(e.features.feature["source"].bytes_list.value[0] for e in rows)
    assert tags == {b"parquet": ROWS, b"db": 100}
    # Not a model input: Transform's outputs (what the model is built from) have no `source`.
    graph = store.node_artifacts("taxi_pipeline", "Transform", "TransformGraph")[0]
    transformed = tft.TFTransformOutput(graph.uri).transformed_feature_spec()
    assert sources.SOURCE_FEATURE in tft.TFTransformOutput(graph.uri).raw_feature_spec()
    assert not any(sources.SOURCE_FEATURE in name for name in transformed)


BIGQUERY_QUERY = (
    "SELECT * EXCEPT (span) FROM `acme-ml.taxi.trips` WHERE span = (SELECT MAX(span) FROM "
    "`acme-ml.taxi.trips`)"
)


def test_kubeflow_refuses_a_file_source_the_pods_cannot_read():
    from pipeline import kubeflow

    for location, expected in [
        ("/pipeline/data/history", "is not in the image"),
        ("http://example.com/history", "scheme http:// is not readable"),
    ]:
        kcfg = kubeflow.KubeflowConfig().replace(
            sources=(SourceSpec(kind="parquet", path=location),)
        )
        with pytest.raises(kubeflow.KubeflowConfigError) as e:
            kubeflow.validate(kcfg)
        assert "parquet source" in str(e.value) and expected in str(e.value)
