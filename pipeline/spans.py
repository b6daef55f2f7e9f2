"""Data spans on disk and the `mlops data` commands.

    data/taxi/span-1/data.csv, span-2/data.csv, ...   CsvExampleGen reads the highest span

`mlops data add-span new.csv` checks a CSV against the curated schema (header: every column the
schema knows, nothing else; types: every non-empty value parses as its column's type) and only
then writes it as span-(N+1)/data.csv, atomically: the span directory is renamed into place once
complete, so a run started meanwhile never sees half a span. A rejected file writes nothing.

`mlops data check-skew --requests DIR` compares the statistics of the requests the model server
logged (`mlops serve --request_log_dir DIR`) with the training statistics under the schema's
skew comparators and the sample-size-aware tests the drift gate uses, and checks the requests
against the schema's SERVING environment. Unreadable records are skipped and counted. Exit 0 no
skew, 1 skew (or request anomalies) found, 2 could not run.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
import shutil
import sys
from pathlib import Path

import click

from pipeline.config import PipelineConfig, dataset_config
from pipeline.quarantine import quarantine_command
from pipeline.sources import SOURCE_FEATURE

EXIT_OK, EXIT_REJECTED, EXIT_ERROR = 0, 1, 2
SPAN_DIR = re.compile(r"^span-(\d+)$")
SPAN_FILE = "data.csv"
MAX_REPORTED_ERRORS = 10


class SpanRejected(ValueError):
    """The CSV does not match the schema; the message lists why."""


def list_spans(data_root: str | os.PathLike) -> list[int]:
    """Span numbers on disk under `data_root` (span-N directories), ascending."""
    root = Path(data_root)
    if not root.is_dir():
        return []
    return sorted(
        int(m.group(1)) for p in root.iterdir() if p.is_dir() and (m := SPAN_DIR.match(p.name))
    )


def layout_error(data_root: str | os.PathLike) -> str | None:
    """One line saying what is wrong with a local data root's layout, or None when CsvExampleGen
    can read it (span-N/ folders, the highest one holding CSV files). Remote roots (gs://, s3://)
    are left to ExampleGen. Plain CSV files directly under the root are not taken as a span: which
    span they are, and what the next one is, would be a guess."""
    root = Path(data_root)
    if "://" in str(data_root):
        return None
    expected = f"expected {root}/span-1/data.csv, span-2/data.csv, ... (one folder per span)"
    if not root.is_dir():
        return f"data root {root} does not exist: {expected}"
    found = list_spans(root)
    if not found:
        csvs = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix == ".csv")
        hint = (
            f"; found {', '.join(csvs[:3])}{', ...' if len(csvs) > 3 else ''} directly under it: "
            f"move them to {root}/span-1/ or add them with `mlops data add-span FILE "
            f"--data-root {root}`"
            if csvs
            else ""
        )
        return f"no span-N folders in data root {root}: {expected}{hint}"
    latest = root / f"span-{found[-1]}"
    if not any(p.is_file() and p.suffix == ".csv" for p in latest.iterdir()):
        return f"the latest span folder {latest} holds no .csv file: {expected}"
    return None


def schema_columns(schema_path: str) -> dict[str, str]:
    """Column name -> schema type name (INT, FLOAT, BYTES) for every feature of the schema."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = tfdv.load_schema_text(schema_path)
    # `source` is written by a multi-source ExampleGen, not a column of the data.
    return {
        f.name: schema_pb2.FeatureType.Name(f.type)
        for f in schema.feature
        if f.name != SOURCE_FEATURE
    }


def _parses(value: str, kind: str) -> bool:
    if kind == "INT":
        return re.fullmatch(r"[+-]?\d+", value.strip()) is not None
    if kind == "FLOAT":
        try:
            float(value)
        except ValueError:
            return False
        return True
    return True


def validate_csv(path: str | os.PathLike, columns: dict[str, str]) -> int:
    """Raise SpanRejected listing what is wrong; return the number of data rows otherwise."""
    errors: list[str] = []
    try:
        f = open(path, newline="", encoding="utf-8")
    except OSError as e:
        raise SpanRejected(f"cannot read {path}: {e.strerror}") from None
    with f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise SpanRejected(f"{path} is empty: expected a header row")
        header = [h.strip() for h in header]
        missing = [c for c in columns if c not in header]
        unexpected = [c for c in header if c not in columns]
        duplicated = sorted({c for c in header if header.count(c) > 1})
        if missing:
            errors.append(f"header: missing column(s) {', '.join(missing)}")
        if unexpected:
            errors.append(f"header: unexpected column(s) {', '.join(unexpected)}")
        if duplicated:
            errors.append(f"header: duplicated column(s) {', '.join(duplicated)}")
        if errors:
            raise SpanRejected(f"{path} does not match the schema:\n  " + "\n  ".join(errors))
        rows = 0
        try:
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                rows += 1
                if len(row) != len(header):
                    errors.append(f"line {line}: {len(row)} values, expected {len(header)}")
                    continue
                for name, value in zip(header, row, strict=True):
                    kind = columns[name]
                    if value != "" and not _parses(value, kind):
                        errors.append(f"line {line}: {name}={value!r} is not {kind}")
        except (csv.Error, UnicodeDecodeError) as e:
            errors.append(f"unreadable CSV: {e}")
    if not rows and not errors:
        errors.append("no data rows")
    if errors:
        shown = errors[:MAX_REPORTED_ERRORS]
        more = len(errors) - len(shown)
        raise SpanRejected(
            f"{path} does not match the schema ({len(errors)} problem(s)):\n  "
            + "\n  ".join(shown)
            + (f"\n  ... and {more} more" if more > 0 else "")
        )
    return rows


def add_span(
    csv_path: str | os.PathLike,
    data_root: str | os.PathLike,
    schema_path: str,
    span: int | None = None,
) -> Path:
    """Validate `csv_path` and write it as the next span (or `span`); return the new file."""
    rows = validate_csv(csv_path, schema_columns(schema_path))
    root = Path(data_root)
    existing = list_spans(root)
    if span is None:
        span = (existing[-1] if existing else 0) + 1
    elif span in existing:
        raise SpanRejected(f"span {span} already exists under {root}")
    elif existing and span < existing[-1]:
        raise SpanRejected(
            f"span {span} is older than the latest span {existing[-1]}: the pipeline trains "
            "on the highest span, so it would never be used"
        )
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"span-{span}"
    temp = root / f".span-{span}.tmp-{os.getpid()}"  # not matched by span-{SPAN}/*.csv
    shutil.rmtree(temp, ignore_errors=True)
    try:
        temp.mkdir()
        shutil.copyfile(csv_path, temp / SPAN_FILE)
        os.rename(temp, final)  # atomic; fails if span-N appeared meanwhile
    except OSError as e:
        raise SpanRejected(f"could not create {final}: {e}") from None
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    click.echo(f"Added span {span}: {final / SPAN_FILE} ({rows} rows)")
    return final / SPAN_FILE


# ---- serving skew --------------------------------------------------------------------------------
# check-skew's exit status: no skew, skew (or request anomalies) found, could not run.
EXIT_NO_SKEW, EXIT_SKEW, EXIT_CANNOT_RUN = 0, 1, 2
MAX_REPORTED_SKIPS = 5
_KINDS = {"INT": "int64_list", "FLOAT": "float_list", "BYTES": "bytes_list"}


class SkewCheckError(RuntimeError):
    """check-skew could not run (no readable requests, no training statistics, ...)."""


@dataclasses.dataclass
class RequestLogContents:
    """The readable requests of a request log, and what was skipped and why."""

    examples: list[bytes]
    files: int
    skipped: int = 0
    reasons: list[str] = dataclasses.field(default_factory=list)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped += count
        if len(self.reasons) < MAX_REPORTED_SKIPS:
            self.reasons.append(reason)


def request_files(requests_dir: str) -> list[str]:
    import tensorflow as tf

    return sorted(tf.io.gfile.glob(os.path.join(requests_dir, "*.tfrecord")))


def read_request_log(requests_dir: str, column_types: dict[str, str]) -> RequestLogContents:
    """Every record that is a tf.Example whose features have their schema kinds (INT ->
    int64_list, ...). A record that does not parse, holds no feature or gives a feature another
    kind (which would make the whole batch undecodable) is skipped and counted; a file whose
    framing breaks (truncated, corrupt) is read up to the break."""
    files = request_files(requests_dir)
    if not files:
        raise SkewCheckError(f"no logged requests (*.tfrecord) in {requests_dir}")
    out = RequestLogContents([], len(files))
    kinds = schema_kinds(column_types)
    for path in files:
        read_request_file(path, kinds, out)
    return out


def schema_kinds(column_types: dict[str, str]) -> dict[str, str]:
    """Feature name -> the tf.Example list kind its schema type takes (INT -> int64_list, ...)."""
    return {name: _KINDS[t] for name, t in column_types.items() if t in _KINDS}


def read_request_file(
    path: str, kinds: dict[str, str], out: RequestLogContents, start: int = 0, complete: bool = True
) -> int:
    """Append the readable records of one log file, from record `start` on, to `out` (the rest
    skipped and counted, as `read_request_log` says); return the number of records read so far
    (the next `start`). A file still being written (`complete=False`, the server's `.open`
    file) may end in a record half written: that end is left for the next read, not counted."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError
    from tensorflow.core.example import example_pb2

    name = os.path.basename(path)
    consumed = start
    try:
        for record in tf.data.TFRecordDataset(path).skip(start).as_numpy_iterator():
            index, consumed = consumed, consumed + 1
            try:
                example = example_pb2.Example.FromString(record)
            except DecodeError:
                out.skip(f"{name} record {index}: not a tf.Example")
                continue
            problem = _kind_problem(example, kinds)
            if problem:
                out.skip(f"{name} record {index}: {problem}")
                continue
            out.examples.append(record)
    except tf.errors.OpError as e:  # DataLossError: corrupt or truncated framing
        if complete:
            where = max(consumed - 1, 0)
            out.skip(f"{name} after record {where}: unreadable ({e.message.splitlines()[0]})")
    return consumed


def _kind_problem(example, kinds: dict[str, str]) -> str:
    present = example.features.feature
    if not present:
        return "no features"
    for key, feature in present.items():
        kind = feature.WhichOneof("kind")
        if kind is None:
            continue
        expected = kinds.setdefault(key, kind)  # a feature the schema does not know: first kind
        if kind != expected:
            return f"{key} is {kind}, expected {expected}"
    return ""


def latest_training_statistics(metadata: str, pipeline_name: str, split: str = "train") -> str:
    """FeatureStats.pb of the newest StatisticsGen output of `pipeline_name` in ML Metadata."""
    from metadata.store import MetadataError, open_store

    try:
        uri = open_store(metadata).latest_statistics_uri(pipeline_name)
    except MetadataError as e:
        raise SkewCheckError(str(e)) from None
    if uri is None:
        raise SkewCheckError(f"no statistics of {pipeline_name} in {metadata}")
    return os.path.join(uri, f"Split-{split}", "FeatureStats.pb")


@dataclasses.dataclass
class SkewResult:
    skew: list  # pipeline.drift.Measurement, kind "skew"
    anomalies: list  # pipeline.anomalies.Anomaly of the requests (SERVING environment)
    requests: RequestLogContents

    @property
    def skewed(self) -> list:
        return [m for m in self.skew if m.exceeded]


def check_skew(requests_dir: str, training_statistics: str, schema_path: str) -> SkewResult:
    """The logged requests' statistics against the training statistics: the schema's skew
    comparators and the sample-size-aware tests (pipeline/drift.compare_statistics, as the
    drift gate), and the requests against the schema's SERVING environment."""
    import tensorflow as tf

    from pipeline.drift import load_statistics_file

    requests = read_request_log(requests_dir, schema_columns(schema_path))
    if not requests.examples:
        raise SkewCheckError(
            f"no readable request in {requests_dir} ({requests.skipped} record(s) skipped)"
        )
    if not tf.io.gfile.exists(training_statistics):
        raise SkewCheckError(f"no training statistics at {training_statistics}")
    skew, anomalies = skew_of_examples(
        requests.examples, load_statistics_file(training_statistics), load_schema(schema_path)
    )
    return SkewResult(skew, anomalies, requests)


def load_schema(schema_path: str):
    import tensorflow_data_validation as tfdv

    return tfdv.load_schema_text(schema_path)


def skew_of_examples(examples: list[bytes], training, schema) -> tuple[list, list]:
    """(skew measurements, request anomalies) of serialized tf.Examples against the training
    statistics: what check-skew and the live skew monitor (`mlops monitor`) both report."""
    import tensorflow_data_validation as tfdv

    from pipeline.anomalies import records
    from pipeline.drift import compare_statistics
    from pipeline.drift_measures import (
        quantile_resolution,
        statistics_of_examples,
        statistics_options,
    )

    # The requests' quantiles at the training statistics' resolution: TFDV's Jensen-Shannon on
    # quantiles histograms of different bucket counts measures the bucketing, not the data.
    resolution = quantile_resolution(training)
    options = statistics_options(
        **({"num_quantiles_histogram_buckets": resolution} if resolution else {})
    )
    serving = statistics_of_examples(examples, options)
    _, skew = compare_statistics(training, serving, schema, "serving", skew=True)
    requests_anomalies = tfdv.validate_statistics(serving, schema, environment="SERVING")
    return skew, records("serving", requests_anomalies)


# ---- CLI -----------------------------------------------------------------------------------------
_DEFAULTS = PipelineConfig()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def data() -> None:
    """Data spans: add a validated span; check serving skew; the quarantined rows of a run."""


data.add_command(quarantine_command)


_DATASET_OPTION = click.option(
    "--dataset",
    default=None,
    help="Dataset spec (a name under datasets/ or a dataset.yaml path) whose data root, schema "
    f"and pipeline name are the defaults. Default: {_DEFAULTS.dataset}.",
)


def _dataset_defaults(dataset: str | None) -> PipelineConfig:
    """The PipelineConfig whose paths fill the options left out; a bad spec: one line, exit 2."""
    if not dataset:
        return _DEFAULTS
    from modules.dataset_spec import SpecError

    try:
        return dataset_config(dataset)
    except SpecError as e:
        click.echo(f"Not a usable dataset spec: {e}", err=True)
        sys.exit(EXIT_CANNOT_RUN)


@data.command("add-span")
@click.argument("csv_file", type=click.Path(dir_okay=False))
@_DATASET_OPTION
@click.option("--data-root", default=None, help=f"Holds span-N/. [default: {_DEFAULTS.data_root}]")
@click.option("--schema", "schema_path", default=None, help=f"[default: {_DEFAULTS.schema_path}]")
@click.option("--span", type=int, default=None, help="Span number (default: latest + 1).")
def add_span_command(
    csv_file: str,
    dataset: str | None,
    data_root: str | None,
    schema_path: str | None,
    span: int | None,
) -> None:
    """Validate CSV_FILE against the curated schema and add it as the next span."""
    defaults = _dataset_defaults(dataset)
    try:
        add_span(
            csv_file, data_root or defaults.data_root, schema_path or defaults.schema_path, span
        )
    except SpanRejected as e:
        click.echo(f"Rejected, nothing written: {e}", err=True)
        sys.exit(EXIT_REJECTED)


@data.command("check-skew")
@click.option("--requests", "requests_dir", required=True, help="mlops serve --request_log_dir.")
@_DATASET_OPTION
@click.option(
    "--training-statistics",
    default=None,
    help="FeatureStats.pb; default: newest StatisticsGen train split in ML Metadata.",
)
@click.option("--metadata", default=None, help=f"[default: {_DEFAULTS.metadata_connection}]")
@click.option("--pipeline-name", default=None, help=f"[default: {_DEFAULTS.pipeline_name}]")
@click.option("--schema", "schema_path", default=None, help=f"[default: {_DEFAULTS.schema_path}]")
def check_skew_command(
    requests_dir: str,
    dataset: str | None,
    training_statistics: str | None,
    metadata: str | None,
    pipeline_name: str | None,
    schema_path: str | None,
) -> None:
    """Training/serving skew of logged requests. Exit 0: no skew; 1: skew or request anomalies
    found; 2: could not run (no readable requests, no training statistics)."""
    defaults = _dataset_defaults(dataset)
    metadata = metadata or defaults.metadata_connection
    pipeline_name = pipeline_name or defaults.pipeline_name
    schema_path = schema_path or defaults.schema_path
    try:
        stats = training_statistics or latest_training_statistics(metadata, pipeline_name)
        result = check_skew(requests_dir, stats, schema_path)
    except Exception as e:  # noqa: BLE001 - one line and exit 2, whatever stopped the check
        message = getattr(e, "message", None) or str(e) or type(e).__name__
        click.echo(f"check-skew could not run: {message.splitlines()[0]}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    requests = result.requests
    click.echo(
        f"Requests: {len(requests.examples)} read from {requests.files} file(s) in {requests_dir}"
    )
    if requests.skipped:
        click.echo(f"Skipped {requests.skipped} unreadable record(s):")
        for reason in requests.reasons:
            click.echo(f"  {reason}")
    click.echo(f"Training statistics: {stats}")
    click.echo("Skew (training vs serving):")
    for m in result.skew:
        click.echo(f"  {m}")
    click.echo(f"Request anomalies (SERVING environment): {len(result.anomalies) or 'none'}")
    for a in result.anomalies:
        click.echo(f"  {a}")
    skewed = {m.feature for m in result.skewed}
    if skewed or result.anomalies:
        click.echo(
            f"Skew check failed: {len(skewed)} skewed feature(s), "
            f"{len(result.anomalies)} anomalies",
            err=True,
        )
        sys.exit(EXIT_SKEW)
    click.echo("No skew beyond the schema's thresholds.")
