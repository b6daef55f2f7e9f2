"""Data sources beside the default CSV (pipeline/sources.py, docs/sources.md).

Every kind's ExampleGen runs for real (a one-node TFX pipeline under LocalDagRunner: driver, span
resolution, executor, ML Metadata) on the same rows as a CsvExampleGen run, and the parsed
tf.Examples must match the CSV's feature by feature, kind and values, order-independent. The
PostgreSQL source reads a real PostgreSQL server (tests/pg_fixture.py) in several partitions.
"""

from __future__ import annotations

import collections
import glob
import json
import os
from pathlib import Path

import pytest

import modules  # noqa: F401 - Keras-2 switch before TensorFlow
from pipeline import source_samples, sources
from pipeline.config import in_memory_beam_args
from pipeline.samples import write_sample
from pipeline.sources import SourceError, SourceSpec, load_sources, parse_source_flag

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


def test_runner_refuses_bad_sources_before_starting(tmp_path, capsys):
    from runners import local_runner

    out = str(tmp_path / "out")
    cases = [
        (["--source", "excel:/x"], "unknown source kind"),
        (["--source", f"parquet:{tmp_path / 'missing'}"], "is not a directory"),
        (["--source", f"csv:{tmp_path}"], "csv source"),
        # Nothing listens on port 1: unreachable database.
        (["--source", "postgresql://nobody@127.0.0.1:1/taxi?table=trips"], "cannot connect"),
    ]
    for flags, expected in cases:
        assert local_runner.main([*flags, "--output-dir", out]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
    assert not os.path.exists(out)


def test_empty_sources_keep_todays_csv_example_gen():
    from pipeline.config import PipelineConfig
    from pipeline.pipeline import create_pipeline

    config = PipelineConfig()
    eg = next(c for c in create_pipeline(config).components if c.id.endswith("ExampleGen"))
    assert eg.id == "CsvExampleGen" and type(eg).__name__ == "CsvExampleGen"
    assert eg.exec_properties["input_base"] == config.data_root
    assert "span-{SPAN}/*.csv" in eg.exec_properties["input_config"]


def test_source_feature_is_declared_but_not_a_model_input():
    import tensorflow_data_validation as tfdv

    from modules import features
    from pipeline.config import PipelineConfig

    schema = tfdv.load_schema_text(PipelineConfig().schema_path)
    source = tfdv.get_feature(schema, sources.SOURCE_FEATURE)
    assert "SERVING" in source.not_in_environment
    assert source.presence.min_count == 0 and source.presence.min_fraction == 0
    assert sources.SOURCE_FEATURE not in features.RAW_FEATURE_KEYS
    assert not source.HasField("drift_comparator") and not source.HasField("skew_comparator")
    # add-span does not ask CSV files for it.
    from pipeline.spans import schema_columns

    assert sources.SOURCE_FEATURE not in schema_columns(PipelineConfig().schema_path)


# ---- the same rows from every kind ---------------------------------------------------------------
def read_examples(uri_glob: str) -> list:
    import tensorflow as tf

    out = []
    for path in sorted(glob.glob(uri_glob)):
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator():
            out.append(tf.train.Example.FromString(record))
    return out


def as_rows(examples, drop: tuple[str, ...] = ()) -> collections.Counter:
    """Each example as a hashable {feature: (kind, values)} row; a multiset of them."""
    rows = []
    for ex in examples:
        row = []
        for name, f in sorted(ex.features.feature.items()):
            if name in drop:
                continue
            kind = f.WhichOneof("kind")
            values = tuple(getattr(f, kind).value) if kind else ()
            row.append((name, kind, values))
        rows.append(tuple(row))
    return collections.Counter(rows)


def run_example_gen(component, root: Path) -> tuple[list, dict]:
    """Run one ExampleGen as a one-node pipeline; its examples and output artifact properties."""
    from tfx import v1 as tfx

    from metadata.connection import sqlite_config
    from metadata.store import open_store

    db = root / "metadata.db"
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="sources_test",
        pipeline_root=str(root / "out"),
        components=[component],
        metadata_connection_config=sqlite_config(db),
        beam_pipeline_args=in_memory_beam_args(),
        enable_cache=True,
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
    store = open_store(str(db))
    artifacts = store.node_artifacts("sources_test", component.id, "Examples")
    newest = artifacts[0]
    props = {k: v.string_value or v.int_value for k, v in newest.custom_properties.items()}
    props["uri"] = newest.uri
    return read_examples(os.path.join(newest.uri, "Split-*", "*.gz")), props


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


@pytest.mark.slow
@pytest.mark.parametrize("partition_column", ["", "trip_start_timestamp"])
def test_postgresql_partitions_are_read_separately(pg, partition_column):
    """Each partition query is read by its own DoFn call (Beam counters per partition), and
    together they are the span's rows exactly once."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter

    from pipeline import postgres_source

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
    examples = p | postgres_source.ReadPostgres(spec, 1)
    keys = examples | beam.Map(lambda e: e.SerializeToString(deterministic=True))
    counted = keys | beam.combiners.Count.Globally()
    result_holder = []
    counted | beam.Map(result_holder.append)  # noqa: B018 - in-memory runner
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
    assert sum(per_partition) == ROWS == result_holder[0]
    assert all(n > 0 for n in per_partition), per_partition


@pytest.mark.slow
def test_several_sources_make_one_artifact_with_each_rows_source(data, pg, csv_baseline, tmp_path):
    """History in Parquet (span 1) plus the database's newest rows (span 2): one Examples
    artifact, every row tagged with its source, span 2, the sources listed on the artifact;
    the rows without their tag are the CSV's; the statistics pass the curated schema."""
    import tensorflow_data_validation as tfdv

    from pipeline.config import PipelineConfig
    from pipeline.drift_measures import statistics_of_examples, statistics_options

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
    untagged = as_rows(examples, drop=(sources.SOURCE_FEATURE,))
    assert untagged - csv_baseline == collections.Counter()  # nothing the CSV does not hold
    assert sum(untagged.values()) == ROWS + 100
    stats = statistics_of_examples([e.SerializeToString() for e in examples], statistics_options())
    schema = tfdv.load_schema_text(PipelineConfig().schema_path)
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


# ---- BigQuery on Kubeflow: compiled, not run -----------------------------------------------------
BIGQUERY_QUERY = (
    "SELECT * EXCEPT (span) FROM `acme-ml.taxi.trips` WHERE span = (SELECT MAX(span) FROM "
    "`acme-ml.taxi.trips`)"
)


@pytest.mark.slow  # a KubeflowV2DagRunner compile: about a minute on a loaded machine
def test_bigquery_source_compiles_into_the_kubeflow_spec(tmp_path):
    import yaml

    from runners import kubeflow_runner

    out = tmp_path / "bq.yaml"
    assert (
        kubeflow_runner.main(
            [
                "--pipeline-root",
                "gs://acme-ml-pipelines/tfx",
                "--source",
                f"bigquery:{BIGQUERY_QUERY}",
                "--beam-arg=--project=acme-ml",
                "--beam-arg=--temp_location=gs://acme-ml-pipelines/tmp",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    spec = yaml.safe_load(out.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert "BigQueryExampleGen" in tasks and "CsvExampleGen" not in tasks
    params = tasks["BigQueryExampleGen"]["inputs"]["parameters"]
    input_config = json.loads(params["input_config"]["runtimeValue"]["constant"])
    assert input_config["splits"][0]["pattern"] == BIGQUERY_QUERY
    executor = spec["deploymentSpec"]["executors"][
        spec["components"]["BigQueryExampleGen"]["executorLabel"]
    ]["container"]
    assert any("google_cloud_big_query.example_gen.executor" in a for a in executor["args"])
    # Its rows feed the same validation and training steps as the CSV's would.
    assert (
        tasks["StatisticsGen"]["inputs"]["artifacts"]["examples"]["taskOutputArtifact"][
            "producerTask"
        ]
        == "BigQueryExampleGen"
    )


def test_kubeflow_refuses_a_file_source_the_pods_cannot_read(tmp_path, capsys):
    from runners import kubeflow_runner

    for location, expected in [
        ("/pipeline/data/history", "is not in the image"),
        ("http://example.com/history", "scheme http:// is not readable"),
    ]:
        status = kubeflow_runner.main(
            ["--source", f"parquet:{location}", "--output", str(tmp_path / "x.yaml")]
        )
        assert status == 2
        err = capsys.readouterr().err
        assert "parquet source" in err and expected in err, err
