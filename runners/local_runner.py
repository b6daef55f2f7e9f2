"""Run the pipeline locally: LocalDagRunner, Beam's DirectRunner, ML Metadata in SQLite
(or a shared PostgreSQL/MySQL store given by --metadata).

    python runners/local_runner.py                   # full run, tuning included
    python runners/local_runner.py --skip-tuning     # reuse the committed best hyperparameters

Exit status: 0 when the run completed (whether or not the model was blessed and pushed),
1 when the data gate stopped it on anomalies or drift, 2 on any other failure.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Google client libraries warn about Python support dates on import; not actionable here.
warnings.filterwarnings("ignore", category=FutureWarning)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import config as config_lib  # noqa: E402

EXIT_OK, EXIT_ANOMALIES, EXIT_FAILED = 0, 1, 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = config_lib.PipelineConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pipeline-name", default=defaults.pipeline_name)
    p.add_argument("--data-root", default=defaults.data_root, help="holds span-N/*.csv")
    p.add_argument("--output-dir", default=defaults.output_dir, help="pipeline artifacts")
    p.add_argument(
        "--metadata",
        default="",
        help="ML Metadata store: SQLite path, sqlite:///, postgresql:// or mysql:// URL, or a "
        "ConnectionConfig .pbtxt (password from $MLMD_DB_PASSWORD). "
        "Default: <output-dir>/metadata/metadata.db",
    )
    p.add_argument("--serving-model-dir", default="", help="default: serving_model/<model>")
    p.add_argument("--train-steps", type=int, default=defaults.train_steps)
    p.add_argument("--eval-steps", type=int, default=defaults.eval_steps)
    p.add_argument("--tuner-trials", type=int, default=defaults.tuner_trials)
    p.add_argument("--tuner-train-steps", type=int, default=defaults.tuner_train_steps)
    p.add_argument(
        "--skip-tuning",
        action="store_true",
        help="fast mode: import modules/best_hyperparameters instead of searching",
    )
    p.add_argument("--infer-schema", action="store_true", help="SchemaGen instead of the curated schema")
    p.add_argument("--no-cache", action="store_true", help="re-execute every component")
    p.add_argument(
        "--no-drift-check",
        action="store_true",
        help="skip comparing the span with the previous span (schema drift_comparators)",
    )
    p.add_argument(
        "--multi-processing",
        action="store_true",
        help="Beam workers in one process per core (for large data; slower on the sample)",
    )
    p.add_argument("--beam-arg", action="append", default=[], help="extra Beam pipeline arg")
    p.add_argument("--verbose", action="store_true", help="show TFX/Beam logs")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> config_lib.PipelineConfig:
    beam_args = (
        config_lib.multi_processing_beam_args()
        if args.multi_processing
        else config_lib.in_memory_beam_args()
    )
    return config_lib.PipelineConfig(
        pipeline_name=args.pipeline_name,
        data_root=os.path.abspath(args.data_root),
        output_dir=os.path.abspath(args.output_dir),
        metadata=args.metadata,
        serving_model_dir=os.path.abspath(args.serving_model_dir) if args.serving_model_dir else "",
        train_steps=args.train_steps,
        eval_steps=args.eval_steps,
        tuner_trials=args.tuner_trials,
        tuner_train_steps=args.tuner_train_steps,
        skip_tuning=args.skip_tuning,
        infer_schema=args.infer_schema,
        enable_cache=not args.no_cache,
        check_drift=not args.no_drift_check,
        beam_args=tuple(beam_args + args.beam_arg),
    )


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
def _output_to_log(log_path: str | None) -> Iterator[TextIO]:
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


def _configure_logging(verbose: bool, progress: TextIO) -> logging.Handler:
    absl_logger = logging.getLogger("absl")
    absl_logger.setLevel(logging.INFO)
    # Executors call absl.logging.set_verbosity(WARNING) mid-run, which would silence the
    # orchestrator's progress lines; pin the level for the run (undone in _restore_logging).
    absl_logger.setLevel = lambda level: None
    handler = ProgressHandler(progress)
    absl_logger.addHandler(handler)
    if verbose:
        logging.basicConfig(level=logging.INFO)
    else:
        # TFX's own INFO chatter stays out of the progress view; warnings still show.
        absl_logger.propagate = False
    return handler


def _restore_logging(handler: logging.Handler) -> None:
    absl_logger = logging.getLogger("absl")
    absl_logger.removeHandler(handler)
    vars(absl_logger).pop("setLevel", None)
    absl_logger.propagate = True


def print_report(report, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    w = lambda s="": print(s, file=out)  # noqa: E731
    w()
    w(f"Run {report.run_id}")
    w(f"  {'component':<30} {'state':<9} {'seconds':>8}")
    for c in report.components:
        w(f"  {c.node_id:<30} {c.state:<9} {c.seconds:8.1f}")
    if report.span is not None:
        w(f"\nSpan: {report.span}")
    if report.drift:
        drifted = len(report.drifted)
        w(f"\nDrift vs span {report.previous_span} ({drifted} beyond threshold):")
        for m in report.drift:
            w(f"  {m}")
    elif report.span is not None and report.previous_span is None:
        w("Drift: no earlier span to compare with")
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
    if report.blessed is not None:
        w(f"\nBlessed: {'yes' if report.blessed else 'no'}")
    w(f"Push: {report.push_decision}")
    w(f"ML Metadata: {report.metadata}")


def run_pipeline(config: config_lib.PipelineConfig, verbose: bool = False) -> tuple[int, object]:
    """Run `config`'s pipeline to the end or to its first failure; print progress and the
    summary; return (exit status, pipeline.report.RunReport or None)."""
    from tfx import v1 as tfx

    from lineage.connection import connection_config_from_url, describe_connection
    from pipeline.data_gate import DataAnomaliesError, DataGate
    from pipeline.pipeline import create_pipeline
    from pipeline.report import latest_run_report

    connection_config = connection_config_from_url(config.metadata_connection)
    if connection_config.HasField("sqlite"):
        os.makedirs(os.path.dirname(connection_config.sqlite.filename_uri) or ".", exist_ok=True)
    pipeline = create_pipeline(config, connection_config)
    log_path = None if verbose else os.path.join(
        config.pipeline_root, "logs", time.strftime("run-%Y%m%d-%H%M%S.log")
    )
    print(f"Pipeline {config.pipeline_name}: data {config.data_root}, outputs {config.pipeline_root}")
    if log_path:
        print(f"Logs: {log_path}")
    started = time.monotonic()
    error: BaseException | None = None
    with _output_to_log(log_path) as progress:
        handler = _configure_logging(verbose, progress)
        try:
            tfx.orchestration.LocalDagRunner().run(pipeline)
        except Exception as e:  # noqa: BLE001 - reported below with the run's state from MLMD
            error = e
        finally:
            _restore_logging(handler)
    print(f"\nWall time: {time.monotonic() - started:.1f}s")

    report = latest_run_report(
        connection_config, config.pipeline_name, describe_connection(connection_config)
    )
    if report:
        print_report(report)
    sys.stdout.flush()
    if error is None:
        return EXIT_OK, report
    gate_failed = report is not None and any(
        c.node_id == DataGate.__name__ and c.state == "FAILED" for c in report.components
    )
    if gate_failed or _caused_by(error, DataAnomaliesError):
        why = "drift" if report is not None and report.drifted and not report.anomalies else "anomalies"
        if report is not None and report.drifted and report.anomalies:
            why = "anomalies and drift"
        print(f"\nStopped by the data gate ({why}): no training, nothing pushed.", file=sys.stderr)
        return EXIT_ANOMALIES, report
    print(f"\nPipeline failed: {type(error).__name__}: {error}", file=sys.stderr)
    if log_path:
        print(f"Full log: {log_path}", file=sys.stderr)
    return EXIT_FAILED, report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    status, _ = run_pipeline(build_config(args), verbose=args.verbose)
    return status


def _caused_by(error: BaseException, kind: type) -> bool:
    while error is not None:
        if isinstance(error, kind):
            return True
        error = error.__cause__ or error.__context__
    return False


if __name__ == "__main__":
    sys.exit(main())
