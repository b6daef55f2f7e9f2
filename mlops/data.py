"""`mlops data`: add a validated span, check serving skew of logged requests, show the rows the
RowCleaner quarantined.

`add-span` checks a CSV against the curated schema and writes it as span-(N+1)/data.csv
atomically (pipeline/ingest/spans.py): a rejected file writes nothing. `check-skew` compares the
requests the model server logged with the training statistics (monitoring/skew_check.py). Exit
status (cli_support.Exit): add-span OK added, REJECTED rejected; check-skew OK no skew, REJECTED
skew or request anomalies found, FAILED could not run; a missing store, run or file
INPUT_MISSING; a bad --dataset FAILED.
"""

from __future__ import annotations

import json
import os
import sys

import click

from cli_support import CommandError, Exit, debug_option, handle_errors
from metadata.store import MetadataError, open_store, properties_of
from modules.dataset_spec import SpecError
from monitoring.skew_check import check_skew, latest_training_statistics
from pipeline.config import PipelineConfig, dataset_config
from pipeline.ingest.spans import SpanRejected, add_span
from pipeline.validation.quarantine import QUARANTINE, ROW_CLEANER, CleaningSummary, read_rows

_DEFAULTS = PipelineConfig()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@debug_option
def data() -> None:
    """Data spans: add a validated span; check serving skew; the quarantined rows of a run."""


_DATASET_OPTION = click.option(
    "--dataset",
    default=None,
    help="Dataset spec (a name under datasets/ or a dataset.yaml path) whose data root, schema "
    f"and pipeline name are the defaults. Default: {_DEFAULTS.dataset}.",
)


def _dataset_defaults(dataset: str | None) -> PipelineConfig:
    """The PipelineConfig whose paths fill the options left out; a bad spec: one line, FAILED."""
    if not dataset:
        return _DEFAULTS

    try:
        return dataset_config(dataset)
    except SpecError as e:
        raise CommandError(f"not a usable dataset spec: {e}", Exit.FAILED) from e


@data.command("add-span")
@click.argument("csv_file", type=click.Path(dir_okay=False))
@_DATASET_OPTION
@click.option("--data-root", default=None, help=f"Holds span-N/. [default: {_DEFAULTS.data_root}]")
@click.option("--schema", "schema_path", default=None, help=f"[default: {_DEFAULTS.schema_path}]")
@click.option("--span", type=int, default=None, help="Span number (default: latest + 1).")
@debug_option
@handle_errors()
def add_span_command(
    csv_file: str,
    dataset: str | None,
    data_root: str | None,
    schema_path: str | None,
    span: int | None,
) -> None:
    """Validate CSV_FILE against the curated schema and add it as the next span."""

    defaults = _dataset_defaults(dataset)
    if not os.path.isfile(csv_file):
        raise CommandError(f"no such file: {csv_file}", Exit.INPUT_MISSING)
    try:
        added = add_span(
            csv_file, data_root or defaults.data_root, schema_path or defaults.schema_path, span
        )
        click.echo(f"Added span {added.span}: {added.path} ({added.rows} rows)")
    except SpanRejected as e:  # the answer, not an error: every problem, one per line
        click.echo(f"Rejected, nothing written: {e}", err=True)
        sys.exit(Exit.REJECTED)


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
@debug_option
@handle_errors()
def check_skew_command(
    requests_dir: str,
    dataset: str | None,
    training_statistics: str | None,
    metadata: str | None,
    pipeline_name: str | None,
    schema_path: str | None,
) -> None:
    """Training/serving skew of logged requests. Exit 0: no skew; 1: skew or request anomalies
    found; 2: could not run (no readable requests, no training statistics); 3: a missing file
    or store."""

    defaults = _dataset_defaults(dataset)
    metadata = metadata or defaults.metadata_connection
    pipeline_name = pipeline_name or defaults.pipeline_name
    schema_path = schema_path or defaults.schema_path
    if not os.path.isdir(requests_dir):
        raise CommandError(
            f"request log directory {requests_dir} does not exist (mlops serve --request_log_dir)",
            Exit.INPUT_MISSING,
        )
    try:
        stats = training_statistics or latest_training_statistics(metadata, pipeline_name)
        result = check_skew(requests_dir, stats, schema_path)
    except Exception as e:  # noqa: BLE001 - one line, whatever stopped the check
        message = getattr(e, "message", None) or str(e) or type(e).__name__
        status = e.status if isinstance(e, CommandError) else Exit.FAILED
        if isinstance(e, FileNotFoundError):
            status = Exit.INPUT_MISSING
        raise CommandError(f"check-skew could not run: {message}", status) from e
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
        sys.exit(Exit.REJECTED)
    click.echo("No skew beyond the schema's thresholds.")


@data.command("quarantine")
@click.argument("run", default="latest")
@_DATASET_OPTION
@click.option("--metadata", default=None, help="ML Metadata store (default: the local runner's).")
@click.option(
    "--pipeline-name",
    default=None,
    help=f"Whose runs RUN names. [default: the dataset's, {_DEFAULTS.pipeline_name}]",
)
@click.option("--limit", type=int, default=50, show_default=True, help="Rows shown (0: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per quarantined row.")
@debug_option
@handle_errors()
def quarantine_command(
    run: str,
    dataset: str | None,
    metadata: str | None,
    pipeline_name: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The rows the RowCleaner set aside in RUN (default latest; an id, prefix, previous,
    latest~N) of the dataset's pipeline, and why, with the run's cleaning figures. A missing
    store, run or quarantine: INPUT_MISSING (3)."""

    defaults = _dataset_defaults(dataset)
    store = open_store(metadata or defaults.metadata_connection)
    record = store.run(run, pipeline_name or defaults.pipeline_name)
    outputs = store.run_outputs(record.run_id).get(ROW_CLEANER, {}).get(QUARANTINE)
    if not outputs:
        raise MetadataError(f"run {record.run_id} has no {ROW_CLEANER} output")
    artifact = outputs[0]
    summary = CleaningSummary.from_properties(properties_of(artifact), artifact.uri)
    rows = list(read_rows(artifact.uri))
    shown = rows if limit <= 0 else rows[:limit]
    if as_json:
        for row in shown:
            click.echo(
                json.dumps(
                    {"split": row.split, "reasons": row.reasons, "copies": row.copies}
                    | {"features": row.features}
                )
            )
        return
    click.echo(f"Run {record.run_id}: {summary.describe()}")
    click.echo(f"Quarantine: {summary.uri}")
    for row in shown:
        click.echo(f"  {row}")
        click.echo(f"      {json.dumps(row.features, ensure_ascii=False)}")
    if len(shown) < len(rows):
        click.echo(f"  ... and {len(rows) - len(shown)} more (--limit 0 shows all)")
