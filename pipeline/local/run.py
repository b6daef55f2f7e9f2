"""Run a pipeline locally to the end or its first failure: progress, logs, report, exit status.

What `runners/local_runner.py` (and the tests) call: LocalDagRunner over `create_pipeline`, the
TFX/Beam output captured into a log file while a progress line per component goes to the
terminal, then the run's report read back from ML Metadata and the exit status:

    Exit.OK (0)        the run completed (pushed or not: the report says why)
    Exit.REJECTED (1)  the data gate stopped it on anomalies, drift or too many quarantined rows
    Exit.FAILED (2)    any other failure, including an unusable metadata store

(the project's exit statuses: cli_support.Exit).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from ml_metadata.proto import metadata_store_pb2

from cli_support import Exit
from metadata import run_process
from pipeline.config import PipelineConfig
from pipeline.ingest.sources import preflight_problem
from pipeline.ingest.spans import layout_error
from pipeline.local import up_to_date

if TYPE_CHECKING:  # the report imports TFX; run_pipeline imports it after quieting warnings
    from pipeline.local.report import RunReport

# The span placeholder of CsvExampleGen's input pattern; the data-root layout check needs it.
SPAN_PATTERN = "{SPAN}"


class MetadataStoreUnavailable(RuntimeError):
    """The run's ML Metadata store cannot be opened; the message is one printable line."""


class ProgressHandler(logging.Handler):
    """Turns LocalDagRunner's 'Component X is running/finished.' log lines into progress."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self.started: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "Component %s is running.":
            node = record.args[0]
            self.started[node] = time.monotonic()
            print(f"  ▶ {node:<28} running", file=self.stream, flush=True)
        elif record.msg == "Component %s is finished.":
            node = record.args[0]
            took = time.monotonic() - self.started.get(node, time.monotonic())
            print(f"  ✔ {node:<28} finished in {took:6.1f}s", file=self.stream, flush=True)


@contextlib.contextmanager
def output_to_log(log_path: str | None) -> Iterator[TextIO]:
    """Send everything TFX, Beam, TensorFlow and their subprocesses print (fd 1 and 2) to a log
    file, and yield a stream on the real terminal for progress lines."""
    if log_path is None:
        yield sys.stdout
        return
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    terminal = os.fdopen(os.dup(saved[1]), "w", buffering=1, encoding="utf-8")
    with open(log_path, "ab") as log:
        for fd in (1, 2):
            os.dup2(log.fileno(), fd)
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            terminal.close()


@contextlib.contextmanager
def progress_logging(verbose: bool, progress: TextIO) -> Iterator[None]:
    """Route the orchestrator's progress lines to `progress` for the duration of a run."""
    absl_logger = logging.getLogger("absl")
    absl_logger.setLevel(logging.INFO)
    # Executors call absl.logging.set_verbosity(WARNING) mid-run, which would silence the
    # orchestrator's progress lines; pin the level for the run (undone below).
    absl_logger.setLevel = lambda level: None
    handler = ProgressHandler(progress)
    absl_logger.addHandler(handler)
    if verbose:
        logging.basicConfig(level=logging.INFO)
    else:
        # TFX's own INFO chatter stays out of the progress view; warnings still show.
        absl_logger.propagate = False
    try:
        yield
    finally:
        absl_logger.removeHandler(handler)
        vars(absl_logger).pop("setLevel", None)
        absl_logger.propagate = True


def print_report(report: RunReport, out: TextIO | None = None) -> None:
    """The end-of-run summary: components, span and drift, anomalies, metrics, push decision."""
    out = out or sys.stdout

    def w(s: str = "") -> None:
        print(s, file=out)

    w()
    w(f"Run {report.run_id}")
    w(f"  {'component':<30} {'state':<9} {'seconds':>8}")
    for c in report.components:
        w(f"  {c.node_id:<30} {c.state:<9} {c.seconds:8.1f}")
    if report.span is not None:
        w(f"\nSpan: {report.span}")
    if report.training_spans:
        plural = "s" if len(report.training_spans) > 1 else ""
        w(f"Trained on: span{plural} {', '.join(map(str, report.training_spans))}")
    if report.drift_baseline:
        w(f"Drift: {report.drift_baseline}")
    if report.drift:
        w(f"\nDrift ({len(report.drifted)} beyond threshold):")
        for m in report.drift:
            w(f"  {m}")
    if report.cleaning is not None:
        w(f"\nRow cleaning: {report.cleaning.describe(report.max_quarantine_fraction)}")
        if report.cleaning.quarantined:
            w(f"  quarantine: {report.cleaning.uri} (`mlops data quarantine {report.run_id}`)")
    if report.anomalies:
        w(f"\nData anomalies ({len(report.anomalies)}):")
        for a in report.anomalies:
            w(f"  {a}")
    else:
        w("\nData anomalies: none")
    if report.metrics:
        w("\nEvaluation (overall slice):")
        for name, value in sorted(report.metrics.items()):
            w(f"  {name:<40} {value:.4f}")
    for check in report.failed_checks:
        w(f"  FAILED {check.slice} {check.metric} = {check.value:.4f} ({check.threshold})")
    if report.model_comparison:
        w("\nCandidate vs baselines vs previous model:")
        for line in report.model_comparison:
            w(f"  {line}")
    if report.blessed is not None:
        w(f"\nBlessed: {'yes' if report.blessed else 'no'}")
    w(f"Push: {report.push_decision}")
    w(f"ML Metadata: {report.metadata}")


def open_metadata_store(config: PipelineConfig) -> metadata_store_pb2.ConnectionConfig:
    """The run's ConnectionConfig, after checking the store opens (created when new), so an
    unreachable database fails in one line before any component starts."""
    from ml_metadata.metadata_store import metadata_store

    from metadata.connection import (
        ConnectionConfigError,
        connection_config_from_url,
        describe_connection,
        scrub,
    )

    try:
        connection_config = connection_config_from_url(config.metadata_connection)
    except ConnectionConfigError as e:
        raise MetadataStoreUnavailable(f"metadata store: {e}") from None
    if connection_config.HasField("sqlite"):
        os.makedirs(os.path.dirname(connection_config.sqlite.filename_uri) or ".", exist_ok=True)
    try:
        metadata_store.MetadataStore(connection_config).get_context_types()
    except Exception as e:  # MLMD raises errors.* and RuntimeError from its C++ core
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MetadataStoreUnavailable(
            f"cannot open the metadata store {describe_connection(connection_config)}: "
            f"{scrub(text, connection_config)}"
        ) from None
    return connection_config


def install_local_fixes() -> None:
    """What a local run changes in TFX and Beam for its own process (each idempotent)."""
    from data_stats import equi_width_histogram
    from pipeline.local import beam_fixed_cost, beam_packaging, tfx_cache_fix

    tfx_cache_fix.install()  # cached multi-output nodes on PostgreSQL
    beam_packaging.install()  # no TFX sdist per Beam component for local workers
    beam_fixed_cost.install()  # Beam's per-transform introspection and per-pickle log flush
    equi_width_histogram.install()  # TFDV's histograms as arrays, not a loop per bucket


def run_pipeline(config: PipelineConfig, verbose: bool = False) -> tuple[int, RunReport | None]:
    """Run `config`'s pipeline to the end or to its first failure; print progress and the
    summary; return (exit status, the run's RunReport or None). When nothing changed since the
    last completed run (pipeline/local/up_to_date.py) nothing runs: (Exit.OK, None), and what is
    printed says so."""
    if config.sources:
        problem = preflight_problem(config.sources)
    elif SPAN_PATTERN in config.input_pattern:
        problem = layout_error(config.data_root)
    else:
        problem = None
    if problem:
        print(f"Pipeline not started: {problem}", file=sys.stderr)
        return Exit.FAILED, None
    try:
        connection_config = open_metadata_store(config)
    except MetadataStoreUnavailable as e:
        print(f"Pipeline not started: {e}", file=sys.stderr)
        return Exit.FAILED, None
    sqlite_path = (
        connection_config.sqlite.filename_uri if connection_config.HasField("sqlite") else None
    )
    inputs = up_to_date.inputs_fingerprint(config)
    unchanged = up_to_date.check(config, inputs, sqlite_path)
    if unchanged is not None:
        print(up_to_date.describe(config, unchanged))
        return Exit.OK, None
    up_to_date.forget(config)
    # Google client libraries warn about Python support dates on import; not actionable here.
    warnings.filterwarnings("ignore", category=FutureWarning)
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipeline.local.report import latest_run_report
    from pipeline.local.warm_workers import warm_pool
    from pipeline.pipeline import create_pipeline
    from pipeline.validation.data_gate import DataAnomaliesError, DataGate

    install_local_fixes()
    pipeline = create_pipeline(config, connection_config)
    log_path = (
        None
        if verbose
        else os.path.join(config.pipeline_root, "logs", time.strftime("run-%Y%m%d-%H%M%S.log"))
    )
    data = ", ".join(s.describe() for s in config.sources) or config.data_root
    print(f"Pipeline {config.pipeline_name}: data {data}, outputs {config.pipeline_root}")
    if log_path:
        print(f"Logs: {log_path}")
    started = time.monotonic()
    error: BaseException | None = None
    # Who runs it, so readers can tell a killed run from a running one (metadata/run_process.py).
    process = run_process.record_start(connection_config, config.pipeline_name)
    try:
        with (
            output_to_log(log_path) as progress,
            progress_logging(verbose, progress),
            warm_pool(config.beam_args, enabled=config.warm_beam_workers),
        ):
            try:
                LocalDagRunner().run(pipeline)
            except Exception as e:  # noqa: BLE001 - reported below with the run's state from MLMD
                error = e
    finally:
        run_process.record_end(connection_config, process)
    print(f"\nWall time: {time.monotonic() - started:.1f}s")

    report = latest_run_report(connection_config, config.pipeline_name)
    summary = io.StringIO()
    if report:
        print_report(report, summary)
        print(summary.getvalue(), end="")
    sys.stdout.flush()
    if error is None:
        if report:
            up_to_date.save(config, inputs, sqlite_path, report.run_id, summary.getvalue())
        return Exit.OK, report
    gate_failed = report is not None and any(
        c.node_id == DataGate.__name__ and c.state == "FAILED" for c in report.components
    )
    if gate_failed or caused_by(error, DataAnomaliesError):
        why = " and ".join(report.data_stops if report else []) or "anomalies"
        print(f"\nStopped by the data gate ({why}): no training, nothing pushed.", file=sys.stderr)
        return Exit.REJECTED, report
    print(f"\nPipeline failed: {type(error).__name__}: {error}", file=sys.stderr)
    if log_path:
        print(f"Full log: {log_path}", file=sys.stderr)
    return Exit.FAILED, report


def caused_by(error: BaseException | None, kind: type) -> bool:
    """Whether `error` or anything in its cause/context chain is a `kind`."""
    while error is not None:
        if isinstance(error, kind):
            return True
        error = error.__cause__ or error.__context__
    return False
