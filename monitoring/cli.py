"""`mlops monitor`: live training/serving skew of the requests the model server logs, exported
for Prometheus.

A separate process, not part of `mlops serve`: computing TFDV statistics of thousands of
requests every minute would compete with inference for the server's cores and its GIL, a crash
or a slow ML Metadata query here must not touch serving, and it scales (one monitor per request
log) and restarts on its own. It needs only read access to the request log directory, the model
server's status API and ML Metadata (or a statistics file).

Exit status (cli_support.Exit): OK (stopped by SIGTERM/SIGINT; with --once: no skew), REJECTED
(--once: skew or request anomalies found), FAILED (could not start or, with --once, could not
check), INPUT_MISSING (no request log, schema or statistics file), UNREACHABLE (the metrics port
cannot be bound) — one line on stderr.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading

import click
from prometheus_client import start_http_server

from cli_support import CommandError, Exit, debug_option, debug_requested, handle_errors
from data_stats.schema import load_schema, schema_columns
from metadata.locations import locations
from modules.dataset_spec import DEFAULT_DATASET, SpecError
from monitoring.baseline import TrainingStatistics
from monitoring.request_window import RequestWindow
from monitoring.skew_check import schema_kinds
from monitoring.skew_exporter import SkewMonitor

_DEFAULTS = locations(DEFAULT_DATASET)
DEFAULT_METRICS_PORT = 9108
DEFAULT_WINDOW = 5000
DEFAULT_MIN_ROWS = 200
DEFAULT_INTERVAL = 60.0
LOGGER = "mlops.monitor"


@click.command("monitor", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--requests", "requests_dir", required=True, help="mlops serve --request_log_dir.")
@click.option(
    "--dataset",
    default=None,
    help="Whose model, pipeline, store and schema are the defaults below (a name under "
    f"datasets/ or a dataset.yaml path). [default: {_DEFAULTS.name}]",
)
@click.option(
    "--model-name", default=None, help=f"[default: the dataset's, {_DEFAULTS.model_name}]"
)
@click.option(
    "--server",
    default="http://127.0.0.1:8501",
    show_default=True,
    help="The model server's REST address: its AVAILABLE versions are the ones checked.",
)
@click.option(
    "--version",
    "versions",
    multiple=True,
    help="Check these versions instead of asking the server (repeatable).",
)
@click.option(
    "--statistics",
    default=None,
    help="FeatureStats.pb for every version; default: each version's own training statistics, "
    "found by lineage in ML Metadata.",
)
@click.option("--metadata", default=None, help=f"[default: {_DEFAULTS.metadata}]")
@click.option(
    "--pipeline-name", default=None, help=f"[default: the dataset's, {_DEFAULTS.pipeline_name}]"
)
@click.option(
    "--schema",
    "schema_path",
    default=None,
    help=f"[default: the dataset's, {_DEFAULTS.schema_path}]",
)
@click.option(
    "--window",
    type=int,
    default=DEFAULT_WINDOW,
    show_default=True,
    help="Compare the last N logged requests.",
)
@click.option(
    "--min-rows",
    type=int,
    default=DEFAULT_MIN_ROWS,
    show_default=True,
    help="Export no distances while the window holds fewer requests.",
)
@click.option(
    "--interval", type=float, default=DEFAULT_INTERVAL, show_default=True, help="Seconds."
)
@click.option("--once", is_flag=True, help="Check once, print the result and exit (0/1/2).")
@click.option("--metrics-port", type=int, default=DEFAULT_METRICS_PORT, show_default=True)
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="0.0.0.0 in a pod.")
@debug_option
@handle_errors()
def monitor(
    requests_dir: str,
    dataset: str | None,
    model_name: str | None,
    server: str,
    versions: tuple[str, ...],
    statistics: str | None,
    metadata: str | None,
    pipeline_name: str | None,
    schema_path: str | None,
    window: int,
    min_rows: int,
    interval: float,
    once: bool,
    metrics_port: int,
    metrics_host: str,
) -> None:
    """Every --interval seconds, compare the last --window requests the model server logged
    with the training statistics of each version it serves (the measures of `mlops data
    check-skew`) and export the distances and thresholds on --metrics-port for Prometheus."""
    _log_to_stderr()

    try:
        where = locations(dataset) if dataset else _DEFAULTS
    except SpecError as e:
        raise CommandError(str(e), Exit.FAILED) from e
    model_name = model_name or where.model_name
    metadata = metadata or where.metadata
    pipeline_name = pipeline_name or where.pipeline_name
    schema_path = schema_path or where.schema_path
    _check_flags(requests_dir, window, min_rows, interval, metrics_port, versions)
    try:
        skew_monitor = _build(
            requests_dir, model_name, server, versions, statistics, metadata, pipeline_name,
            schema_path, window, min_rows,
        )  # fmt: skip
    except FileNotFoundError as e:
        raise CommandError(f"cannot start: {e}", Exit.INPUT_MISSING) from e
    except Exception as e:  # noqa: BLE001 - whatever stops the start, as one line
        raise CommandError(f"cannot start: {_message(e)}", Exit.FAILED) from e
    if once:
        sys.exit(_check_once(skew_monitor))
    _serve(skew_monitor, metrics_host, metrics_port, interval)


def _log_to_stderr() -> None:
    """The monitor's own lines at INFO; TensorFlow's and TFX's import chatter stays at WARNING."""
    logger = logging.getLogger(LOGGER)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _check_flags(requests_dir, window, min_rows, interval, port, versions) -> None:
    """Raise CommandError for the first flag that cannot work (FAILED; a missing request log
    directory is INPUT_MISSING)."""
    problem = None
    if not math.isfinite(interval) or interval <= 0:
        problem = f"--interval must be a positive number of seconds, got {interval:g}"
    elif window < 1:
        problem = f"--window must be at least 1 request, got {window}"
    elif not 1 <= min_rows <= window:
        problem = f"--min-rows must be between 1 and --window ({window}), got {min_rows}"
    elif not 1 <= port <= 65535:
        problem = f"--metrics-port must be 1-65535, got {port}"
    elif any(not v.isdigit() for v in versions):
        problem = f"--version takes version numbers, got {', '.join(versions)}"
    if problem:
        raise CommandError(problem, Exit.FAILED)
    if not os.path.isdir(requests_dir):
        raise CommandError(
            f"request log directory {requests_dir} does not exist (mlops serve --request_log_dir)",
            Exit.INPUT_MISSING,
        )


def _build(requests_dir, model_name, server, versions, statistics, metadata, pipeline_name,
           schema_path, window, min_rows):  # fmt: skip

    if not os.path.isfile(schema_path):
        raise FileNotFoundError(f"no schema at {schema_path}")
    if statistics is not None and not os.path.isfile(statistics):
        raise FileNotFoundError(f"no training statistics at {statistics}")
    return SkewMonitor(
        RequestWindow(requests_dir, schema_kinds(schema_columns(schema_path)), window),
        TrainingStatistics(statistics, metadata, pipeline_name),
        load_schema(schema_path),
        model_name,
        server=server,
        versions=versions,
        min_rows=min_rows,
    )


def _message(e: BaseException) -> str:
    text = getattr(e, "message", None) or str(e) or type(e).__name__
    return text.strip().splitlines()[0]


def _check_once(skew_monitor) -> Exit:
    try:
        result = skew_monitor.check()
    except Exception as e:  # noqa: BLE001 - whatever stops the check, as one line
        raise CommandError(f"check could not run: {_message(e)}", Exit.FAILED) from e
    window = skew_monitor.window
    click.echo(f"Window: {result.rows} request(s) of {window.size} in {window.directory}")
    if window.skipped:
        click.echo(f"Skipped {window.skipped} unreadable record(s):")
        for reason in window.reasons:
            click.echo(f"  {reason}")
    if not result.measured:
        click.echo(f"Not checked: fewer than {skew_monitor.min_rows} requests in the window.")
        return Exit.OK
    found = 0
    for version, measurements in result.skew.items():
        click.echo(f"Version {version} (training statistics {result.statistics[version]}):")
        for m in measurements:
            click.echo(f"  {m}")
        anomalies = result.anomalies[version]
        click.echo(f"  Request anomalies (SERVING environment): {len(anomalies) or 'none'}")
        for a in anomalies:
            click.echo(f"    {a}")
        found += len(result.skewed[version]) + len(anomalies)
    if found:
        click.echo("Skew found.", err=True)
        return Exit.REJECTED
    click.echo("No skew beyond the thresholds.")
    return Exit.OK


def _serve(skew_monitor, host: str, port: int, interval: float) -> None:

    try:
        httpd, _ = start_http_server(port, addr=host, registry=skew_monitor.registry)
    except OSError as e:
        raise CommandError(
            f"cannot listen on {host}:{port}: {e.strerror or e}", Exit.UNREACHABLE
        ) from e
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log = logging.getLogger(LOGGER)
    log.info(
        "Skew monitor of %s: metrics on http://%s:%d/metrics, every %gs",
        skew_monitor.model_name, host, port, interval,
    )  # fmt: skip
    while not stop.is_set():
        try:
            result = skew_monitor.check()
        except Exception as e:  # noqa: BLE001 - counted in check_errors_total; try again later
            if debug_requested():
                log.exception("check failed")
            else:
                log.warning("check failed: %s", _message(e))
        else:
            log.info("%s", _summary(result, skew_monitor.window.skipped))
        stop.wait(interval)
    httpd.shutdown()


def _summary(result, skipped: int) -> str:
    if not result.measured:
        return f"{result.rows} request(s) in the window: too few to check"
    parts = []
    for version, found in result.skewed.items():
        features = sorted({m.feature for m in found})
        parts.append(
            f"version {version}: " + (", ".join(features) + " skewed" if features else "ok")
        )
    return f"{result.rows} request(s), {skipped} skipped; " + "; ".join(parts)
