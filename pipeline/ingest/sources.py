"""Where the pipeline's rows come from: typed source specs and the ExampleGen they become.

    PipelineConfig.sources == ()     today's CsvExampleGen over data_root/span-{SPAN}/*.csv,
                                     unchanged (same component id, same cache)
    one source                       csv -> CsvExampleGen, tfrecord -> ImportExampleGen,
                                     parquet -> FileBasedExampleGen + a zero-safe Parquet reader,
                                     postgresql -> PostgresExampleGen (K parallel partition reads),
                                     bigquery -> TFX's BigQueryExampleGen (Kubeflow / Vertex)
    several sources                  MultiSourceExampleGen: one Examples artifact holding every
                                     source's rows, each row's source in its `source` feature

Spans: file sources read the highest span-N folder of their `pattern` (default
span-{SPAN}/*.<ext>; a pattern without {SPAN} is read whole every run, span 0). A PostgreSQL
source with `span_column` reads the rows of max(span_column) (the column itself is not a
feature); without it, every row, span 0. A run over several sources has the highest of their
spans. BigQuery reads what its query selects (TFX's own span placeholders apply there).

A spec is built from a dict with a `kind` key (`load_sources`, what a dataset spec file's
`sources:` list holds) or from the runner's `--source KIND:LOCATION` flag (`parse_source_flag`).
Every problem found before a run starts is a SourceError with a one-line message.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from metadata.node_ids import EXAMPLE_GENS, MULTI_SOURCE_EXAMPLE_GEN
from modules import features
from pipeline.ingest.sql_query import QueryRefused, read_only_select

if TYPE_CHECKING:
    from pipeline.config import PipelineConfig

KINDS = ("csv", "parquet", "tfrecord", "postgresql", "bigquery")
FILE_KINDS = {"csv": "*.csv", "parquet": "*.parquet", "tfrecord": "*.tfrecord*"}
# The feature that holds each row's source when several sources feed one run. The dataset's
# curated schema leaves it out; on the multi-source path pipeline/source_schema.py adds it
# (pipeline/ingest/source_feature.pbtxt: optional, not in SERVING), and no model code reads it.
SOURCE_FEATURE = features.SOURCE_FEATURE_KEY
# Examples artifact custom property listing the sources (labels and password-free locations).
SOURCES_PROPERTY = "sources"
DEFAULT_PARTITIONS = 4
MAX_PARTITIONS = 256
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL = re.compile(r"[A-Za-z0-9_.:/@-]{1,64}")


class SourceError(ValueError):
    """A source that cannot be used; the message is one printable line without secrets."""


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """One data source. Which fields apply depends on `kind`:

    csv | parquet | tfrecord   path (directory holding span-N/), pattern (glob under path)
    postgresql                 url (postgresql://user@host:port/db, no password), table or
                               query, span_column, partition_column, partitions
    bigquery                   query
    every kind                 name: what the `source` feature holds for its rows
    """

    kind: str
    path: str = ""
    pattern: str = ""
    url: str = ""
    table: str = ""
    query: str = ""
    span_column: str = ""
    partition_column: str = ""
    partitions: int = DEFAULT_PARTITIONS
    name: str = ""

    def __post_init__(self) -> None:
        problem = _spec_problem(self)
        if problem:
            raise SourceError(problem)

    @property
    def label(self) -> str:
        """The value of the `source` feature for this source's rows."""
        return self.name or self.kind

    @property
    def file_pattern(self) -> str:
        """The glob under `path` (file kinds): span-{SPAN}/*.<ext> unless configured."""
        return self.pattern or f"span-{{SPAN}}/{FILE_KINDS[self.kind]}"

    def describe(self) -> str:
        """Where the rows come from, without secrets (the URL never holds a password)."""
        if self.kind in FILE_KINDS:
            return f"{self.kind}:{os.path.join(self.path, self.file_pattern)}"
        if self.kind == "postgresql":
            what = f"table {self.table}" if self.table else "query"
            return f"{self.url} ({what})"
        return f"bigquery:{self.query[:60]}"

    def to_dict(self) -> dict[str, Any]:
        """The fields that differ from the defaults (what load_sources reads back)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return {
            k: v for k, v in dataclasses.asdict(self).items() if k == "kind" or v != defaults[k]
        }


def _spec_problem(s: SourceSpec) -> str | None:
    if s.kind not in KINDS:
        return f"unknown source kind {s.kind!r}: use one of {', '.join(KINDS)}"
    if s.name and not _LABEL.fullmatch(s.name):
        return f"source name {s.name!r}: 1-64 letters, digits or _.:/@-"
    allowed = {
        **{k: {"path", "pattern"} for k in FILE_KINDS},
        "postgresql": {"url", "table", "query", "span_column", "partition_column", "partitions"},
        "bigquery": {"query"},
    }[s.kind] | {"kind", "name"}
    defaults = {f.name: f.default for f in dataclasses.fields(s)}
    extra = sorted(
        k for k, v in dataclasses.asdict(s).items() if k not in allowed and v != defaults[k]
    )
    if extra:
        usable = ", ".join(sorted(allowed - {"kind"}))
        return f"{s.kind} source: {', '.join(extra)} do(es) not apply (use {usable})"
    if s.kind in FILE_KINDS:
        if not s.path:
            return f"{s.kind} source needs a path (a directory holding span-N/ folders)"
        if s.pattern and (s.pattern.startswith("/") or ".." in s.pattern.split("/")):
            return f"{s.kind} source pattern {s.pattern!r} must be relative to the path"
    elif s.kind == "postgresql":
        return _postgresql_problem(s)
    elif not s.query.strip():
        return "bigquery source needs a query"
    return None


def _postgresql_problem(s: SourceSpec) -> str | None:
    parts = urlsplit(s.url)
    if parts.scheme not in ("postgresql", "postgres"):
        return "postgresql source needs url postgresql://user@host:port/dbname"
    if parts.password is not None:
        return (
            "postgresql source URL holds a password: give it in PGPASSWORD or a PGPASSFILE "
            "instead (the URL is recorded in ML Metadata)"
        )
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "postgresql source URL has a bad port"
    if not parts.path.strip("/"):
        return "postgresql source URL needs a database name: postgresql://user@host:5432/dbname"
    if bool(s.table) == bool(s.query.strip()):
        return "postgresql source needs exactly one of table or query"
    if s.table and not all(_IDENTIFIER.fullmatch(p) for p in s.table.split(".")):
        return f"postgresql table {s.table!r} is not a [schema.]name identifier"
    if s.query.strip():
        try:
            read_only_select(s.query)
        except QueryRefused as e:
            return f"postgresql {e}"
    for field in ("span_column", "partition_column"):
        value = getattr(s, field)
        if value and not _IDENTIFIER.fullmatch(value):
            return f"postgresql {field} {value!r} is not a column name"
    if not isinstance(s.partitions, int) or isinstance(s.partitions, bool):
        return f"postgresql partitions {s.partitions!r} is not an integer"
    if not 1 <= s.partitions <= MAX_PARTITIONS:
        return f"postgresql partitions {s.partitions} must be between 1 and {MAX_PARTITIONS}"
    return None


# ---- building specs ------------------------------------------------------------------------------
def source_from_dict(entry: Mapping[str, Any]) -> SourceSpec:
    """One spec from a dict with a `kind` key (a dataset spec file's `sources:` entry)."""
    if not isinstance(entry, Mapping):
        raise SourceError(
            f"a source must be a mapping with a 'kind' key, got {type(entry).__name__}"
        )
    if "kind" not in entry:
        raise SourceError(f"source {dict(entry)!r} has no 'kind' ({', '.join(KINDS)})")
    fields = {f.name for f in dataclasses.fields(SourceSpec)}
    unknown = sorted(str(k) for k in entry if k not in fields)
    if unknown:
        raise SourceError(
            f"unknown source key(s) {', '.join(unknown)}: use {', '.join(sorted(fields))}"
        )
    values = dict(entry)
    for key, value in values.items():
        if key != "partitions" and not isinstance(value, str):
            raise SourceError(f"source {key} must be a string, got {type(value).__name__}")
    if "partitions" in values:
        values["partitions"] = _int(values["partitions"], "partitions")
    return SourceSpec(**values)


def load_sources(entries: Iterable[Mapping[str, Any]] | None) -> tuple[SourceSpec, ...]:
    """Specs from a list of dicts; labels must be unique (they tell the rows apart)."""
    if entries is None:
        return ()
    if isinstance(entries, (str, bytes, Mapping)):
        raise SourceError("sources must be a list of mappings, each with a 'kind' key")
    specs = tuple(source_from_dict(e) for e in entries)
    check_combination(specs)
    return specs


def check_combination(specs: tuple[SourceSpec, ...]) -> None:
    """Several sources need distinct labels; BigQuery runs on its own (TFX's component)."""
    if len(specs) > 1:
        if any(s.kind == "bigquery" for s in specs):
            raise SourceError("a bigquery source cannot be combined with other sources")
        labels = [s.label for s in specs]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise SourceError(
                f"several sources are labelled {', '.join(dupes)}: give each a distinct name"
            )


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool):
        raise SourceError(f"source {field} must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SourceError(f"source {field} must be an integer, got {value!r}") from None


# Parameters of a --source postgresql URL that describe the source, not the connection.
_URL_SOURCE_KEYS = ("table", "query", "span_column", "partition_column", "partitions", "name")


def parse_source_flag(text: str) -> SourceSpec:
    """`--source` forms:

    csv:/data/taxi  parquet:/data/history  tfrecord:/data/examples   (span-N/ folders under it)
    postgresql://user@host:5432/db?table=trips&span_column=span&partitions=4
    bigquery:SELECT ... FROM `project.dataset.table`
    """
    text = text.strip()
    if text.lower().startswith(("postgresql://", "postgres://")):
        parts = urlsplit(text)
        query = parse_qsl(parts.query, keep_blank_values=True)
        fields = {k: v for k, v in query if k in _URL_SOURCE_KEYS}
        rest = [(k, v) for k, v in query if k not in _URL_SOURCE_KEYS]
        url = urlunsplit(parts._replace(query=urlencode(rest)))
        return source_from_dict({"kind": "postgresql", "url": url, **fields})
    kind, sep, location = text.partition(":")
    if not sep or not location:
        raise SourceError(
            f"--source {text!r}: expected KIND:LOCATION (csv:/dir, parquet:/dir, tfrecord:/dir, "
            "bigquery:QUERY) or a postgresql://...?table=NAME URL"
        )
    if kind == "bigquery":
        return SourceSpec(kind="bigquery", query=location)
    return SourceSpec(
        kind=kind, path=os.path.abspath(location) if "://" not in location else location
    )


# ---- before a run: one line per problem ----------------------------------------------------------
def preflight_problem(specs: Iterable[SourceSpec]) -> str | None:
    """The first reason a run over `specs` cannot read them (missing files, no span folder,
    unreachable database, unknown table or column), or None."""
    with warnings.catch_warnings():
        # Google client libraries warn about Python support dates on import; not actionable.
        warnings.simplefilter("ignore", FutureWarning)
        return _preflight_problem(specs)


def _preflight_problem(specs: Iterable[SourceSpec]) -> str | None:
    for spec in specs:
        try:
            if spec.kind in FILE_KINDS:
                resolve_file_source(spec)
            elif spec.kind == "postgresql":
                from pipeline.ingest import postgres_source

                postgres_source.check(spec)
        except SourceError as e:
            return str(e)
    return None


def resolve_file_source(spec: SourceSpec) -> tuple[int, str, str]:
    """(span, resolved pattern, fingerprint) of a file source: TFX's own span resolution (the
    highest span whose folder matches the pattern), with a one-line error when nothing does."""
    if "://" not in spec.path and not os.path.isdir(spec.path):
        raise SourceError(f"{spec.kind} source path {spec.path} is not a directory")
    head, _, file_glob = spec.file_pattern.partition("/")
    if head == "span-{SPAN}" and "/" not in file_glob:
        from pipeline.ingest.spans import unusable_span_folder

        # TFX reads span-1_0 as span 10 and fails on span-abc: name the folder first.
        unusable = unusable_span_folder(spec.path, file_glob)
        if unusable:
            raise SourceError(f"{spec.kind} source: {unusable}")
    from tfx.components.example_gen import input_processor
    from tfx.proto import example_gen_pb2

    split = example_gen_pb2.Input.Split(name="single_split", pattern=spec.file_pattern)
    try:
        processor = input_processor.FileBasedInputProcessor(spec.path, [split])
        span, version = processor.resolve_span_and_version()
        pattern = processor.get_pattern_for_span_version(spec.file_pattern, span, version)
        fingerprint = processor.get_input_fingerprint(span, version)
    except Exception as e:  # noqa: BLE001 - TFX raises ValueError/RuntimeError/OpError here
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SourceError(
            f"{spec.kind} source {os.path.join(spec.path, spec.file_pattern)}: {first}"
        ) from None
    from pipeline.ingest.spans import span_problem

    if span is not None and (problem := span_problem(span)):
        raise SourceError(f"{spec.kind} source {os.path.join(spec.path, pattern)}: {problem}")
    from tfx.dsl.io import fileio

    if not fileio.glob(os.path.join(spec.path, pattern)):
        raise SourceError(f"{spec.kind} source: no file matches {os.path.join(spec.path, pattern)}")
    return span, pattern, fingerprint or ""


# ---- the pipeline's ingest step ------------------------------------------------------------------
def output_config():
    """train/eval 4:1 by hash, for every ExampleGen."""
    from tfx.proto import example_gen_pb2

    return example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[
                example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=4),
                example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1),
            ]
        )
    )


def example_gen(config: PipelineConfig):
    """The ExampleGen component `config` asks for (see the module docstring)."""
    if not config.sources:
        return _csv_example_gen(config.data_root, config.input_pattern)
    return example_gen_for(tuple(config.sources))


def example_gen_for(specs: tuple[SourceSpec, ...]):
    """The ExampleGen reading `specs` (one or more)."""
    check_combination(specs)
    if len(specs) > 1:
        from pipeline.ingest.multi_source import SourcesExampleGen

        return SourcesExampleGen(sources=specs).with_id(MULTI_SOURCE_EXAMPLE_GEN)
    spec = specs[0]
    if spec.kind == "csv":
        return _csv_example_gen(spec.path, spec.file_pattern)
    if spec.kind == "bigquery":
        from tfx.extensions.google_cloud_big_query.example_gen.component import (
            BigQueryExampleGen,
        )

        return BigQueryExampleGen(query=spec.query, output_config=output_config())
    if spec.kind == "postgresql":
        from pipeline.ingest.multi_source import SourcesExampleGen

        return SourcesExampleGen(sources=specs).with_id(EXAMPLE_GENS[spec.kind])
    from tfx.components import ImportExampleGen
    from tfx.proto import example_gen_pb2

    input_config = example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name="single_split", pattern=spec.file_pattern)]
    )
    if spec.kind == "tfrecord":
        return ImportExampleGen(
            input_base=spec.path, input_config=input_config, output_config=output_config()
        )
    if spec.kind == "parquet":
        from tfx.components.example_gen.component import FileBasedExampleGen
        from tfx.dsl.components.base import executor_spec

        from pipeline.ingest.multi_source import ParquetExecutor

        return FileBasedExampleGen(
            input_base=spec.path,
            input_config=input_config,
            output_config=output_config(),
            custom_executor_spec=executor_spec.BeamExecutorSpec(ParquetExecutor),
        ).with_id(EXAMPLE_GENS["parquet"])


def _csv_example_gen(input_base: Any, pattern: str):
    from tfx.components import CsvExampleGen
    from tfx.dsl.components.base import executor_spec
    from tfx.proto import example_gen_pb2

    from pipeline.ingest.csv_example_gen import StreamingCsvExampleGenExecutor

    component = CsvExampleGen(
        input_base=input_base,
        input_config=example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name="single_split", pattern=pattern)]
        ),
        output_config=output_config(),
    )
    # The same examples as TFX's executor, without buffering the whole parsed span in memory.
    component.executor_spec = executor_spec.BeamExecutorSpec(StreamingCsvExampleGenExecutor)
    return component


def encode_sources(specs: Iterable[SourceSpec]) -> str:
    """The exec-property form of a list of specs (no secrets: URLs hold none)."""
    return json.dumps([s.to_dict() for s in specs], sort_keys=True)


def decode_sources(text: str) -> tuple[SourceSpec, ...]:
    return tuple(source_from_dict(d) for d in json.loads(text))
