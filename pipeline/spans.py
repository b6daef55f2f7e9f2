"""Data spans on disk and the `mlops data` commands.

    data/taxi/span-1/data.csv, span-2/data.csv, ...   CsvExampleGen reads the highest span

`mlops data add-span new.csv` checks a CSV against the curated schema (header: every column the
schema knows, nothing else; types: every non-empty value parses as its column's type) and only
then writes it as span-(N+1)/data.csv, atomically: the span directory is renamed into place once
complete, so a run started meanwhile never sees half a span. A rejected file writes nothing.

`mlops data check-skew --requests DIR` compares the statistics of the requests the model server
logged (`mlops serve --request_log_dir DIR`) with the training statistics under the schema's
skew comparators, and checks the requests against the schema's SERVING environment.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import sys
from pathlib import Path

import click

from pipeline.config import PipelineConfig

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
    return {f.name: schema_pb2.FeatureType.Name(f.type) for f in schema.feature}


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
def request_files(requests_dir: str) -> list[str]:
    import tensorflow as tf

    return sorted(tf.io.gfile.glob(os.path.join(requests_dir, "*.tfrecord")))


def latest_training_statistics(metadata: str, pipeline_name: str, split: str = "train") -> str:
    """FeatureStats.pb of the newest StatisticsGen output of `pipeline_name` in ML Metadata."""
    from metadata.store import MetadataError, open_store

    try:
        uri = open_store(metadata).latest_statistics_uri(pipeline_name)
    except MetadataError as e:
        raise click.ClickException(str(e)) from None
    if uri is None:
        raise click.ClickException(f"no statistics of {pipeline_name} in {metadata}")
    return os.path.join(uri, f"Split-{split}", "FeatureStats.pb")


def check_skew(requests_dir: str, training_statistics: str, schema_path: str) -> tuple[list, list]:
    """(skew measurements, schema anomalies of the requests in the SERVING environment)."""
    import tensorflow_data_validation as tfdv

    from pipeline.anomalies import records
    from pipeline.drift import load_statistics_file, measurements, only_comparator_anomalies

    files = request_files(requests_dir)
    if not files:
        raise click.ClickException(f"no logged requests (*.tfrecord) in {requests_dir}")
    serving = tfdv.generate_statistics_from_tfrecord(
        data_location=os.path.join(requests_dir, "*.tfrecord"),
        pipeline_options=_in_memory_beam(),
    )
    training = load_statistics_file(training_statistics)
    schema = tfdv.load_schema_text(schema_path)
    skew = only_comparator_anomalies(
        tfdv.validate_statistics(training, schema, serving_statistics=serving)
    )
    requests_anomalies = tfdv.validate_statistics(serving, schema, environment="SERVING")
    return measurements(skew, "serving", skew=True), records("serving", requests_anomalies)


def _in_memory_beam():
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.config import in_memory_beam_args

    return PipelineOptions(in_memory_beam_args())


# ---- CLI -----------------------------------------------------------------------------------------
_DEFAULTS = PipelineConfig()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def data() -> None:
    """Data spans: add a validated span; check serving skew."""


@data.command("add-span")
@click.argument("csv_file", type=click.Path(dir_okay=False))
@click.option("--data-root", default=_DEFAULTS.data_root, show_default=True, help="Holds span-N/.")
@click.option("--schema", "schema_path", default=_DEFAULTS.schema_path, show_default=True)
@click.option("--span", type=int, default=None, help="Span number (default: latest + 1).")
def add_span_command(csv_file: str, data_root: str, schema_path: str, span: int | None) -> None:
    """Validate CSV_FILE against the curated schema and add it as the next span."""
    try:
        add_span(csv_file, data_root, schema_path, span)
    except SpanRejected as e:
        click.echo(f"Rejected, nothing written: {e}", err=True)
        sys.exit(EXIT_REJECTED)


@data.command("check-skew")
@click.option("--requests", "requests_dir", required=True, help="mlops serve --request_log_dir.")
@click.option(
    "--training-statistics",
    default=None,
    help="FeatureStats.pb; default: newest StatisticsGen train split in ML Metadata.",
)
@click.option("--metadata", default=_DEFAULTS.metadata_connection, show_default=True)
@click.option("--pipeline-name", default=_DEFAULTS.pipeline_name, show_default=True)
@click.option("--schema", "schema_path", default=_DEFAULTS.schema_path, show_default=True)
def check_skew_command(
    requests_dir: str,
    training_statistics: str | None,
    metadata: str,
    pipeline_name: str,
    schema_path: str,
) -> None:
    """Training/serving skew of logged requests; exit 1 on skew or request anomalies."""
    stats = training_statistics or latest_training_statistics(metadata, pipeline_name)
    skew, anomalies = check_skew(requests_dir, stats, schema_path)
    click.echo(f"Requests: {len(request_files(requests_dir))} file(s) in {requests_dir}")
    click.echo(f"Training statistics: {stats}")
    click.echo("Skew (training vs serving):")
    for m in skew:
        click.echo(f"  {m}")
    click.echo(f"Request anomalies (SERVING environment): {len(anomalies) or 'none'}")
    for a in anomalies:
        click.echo(f"  {a}")
    skewed = [m for m in skew if m.exceeded]
    if skewed or anomalies:
        click.echo(
            f"Skew check failed: {len(skewed)} skewed feature(s), {len(anomalies)} anomalies",
            err=True,
        )
        sys.exit(EXIT_REJECTED)
    click.echo("No skew beyond the schema's thresholds.")
