"""`mlops ui`: start the web app (and the model server when none answers).

The app is `streamlit run apps/ui/app.py`, bound to 127.0.0.1 unless --address says otherwise;
the store and server settings travel as MLOPS_UI_* environment variables (apps/ui/settings.py).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import click

from apps.ui.settings import Settings
from cli_support import CommandError, Exit, debug_option, handle_errors
from metadata.locations import locations
from modules.dataset_spec import SpecError

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app.py")
_D = Settings()
_LOCAL = ("127.0.0.1", "localhost", "::1")
_GRACE_SECONDS = 10.0


def _answers(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://{host}:{port}/monitoring/prometheus/metrics", timeout=2
        ):
            return True
    except (urllib.error.URLError, OSError):
        return False


def _has_versions(serving_dir: str) -> bool:
    return os.path.isdir(serving_dir) and any(
        n.isdigit() and os.path.isfile(os.path.join(serving_dir, n, "saved_model.pb"))
        for n in os.listdir(serving_dir)
    )


def _start_server(s: Settings) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "mlops.cli",
        "serve",
        f"--model_name={s.model_name}",
        f"--model_base_path={os.path.abspath(s.serving_dir)}",
        f"--port={s.grpc_port}",
        f"--rest_api_port={s.rest_port}",
        f"--rest_api_host={s.server_host}",
    ]
    if s.request_log_dir:
        cmd.append(f"--request_log_dir={s.request_log_dir}")
    click.echo("No model server answers; starting one: " + " ".join(cmd[2:]), err=True)
    return subprocess.Popen(cmd)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--metadata",
    default=_D.metadata,
    show_default=True,
    help="ML Metadata store: SQLite path or postgresql:// / mysql:// URL.",
)
@click.option(
    "--dataset",
    default=_D.dataset,
    show_default=True,
    help="Dataset spec (datasets/<name>/): its pipeline, model and serving dir are the defaults "
    "of the three options below.",
)
@click.option("--pipeline-name", default=_D.pipeline_name, show_default=True)
@click.option("--model-name", default=_D.model_name, show_default=True)
@click.option(
    "--serving-dir",
    default=_D.serving_dir,
    show_default=True,
    help="The model base path (serving_model/<model>).",
)
@click.option(
    "--model-config",
    envvar="MLOPS_MODEL_CONFIG",
    default=_D.model_config,
    help="TF Serving model config file with the version labels [default: models.config beside "
    "the serving dir].",
)
@click.option("--server-host", default=_D.server_host, show_default=True)
@click.option("--rest-port", type=int, default=_D.rest_port, show_default=True)
@click.option("--grpc-port", type=int, default=_D.grpc_port, show_default=True)
@click.option(
    "--labels",
    default=",".join(_D.labels),
    show_default=True,
    help="Version labels to ask the server about.",
)
@click.option("--request-log-dir", default="", help="The server's --request_log_dir (skew report).")
@click.option(
    "--start-server/--no-start-server",
    default=True,
    show_default=True,
    help="Start `mlops serve` on the serving dir when no server answers on localhost.",
)
@click.option("--address", default="127.0.0.1", show_default=True, help="Bind address of the app.")
@click.option("--port", type=int, default=8502, show_default=True, help="Port of the app.")
@debug_option
@handle_errors()
def ui(**kw: object) -> None:
    """Start the web app: predict, runs, models, data and live serving."""
    address, port, start = kw.pop("address"), kw.pop("port"), kw.pop("start_server")
    kw["labels"] = tuple(x.strip() for x in str(kw["labels"]).split(",") if x.strip())
    if kw["dataset"] != _D.dataset:
        try:
            dataset = locations(str(kw["dataset"]))
        except SpecError as e:
            raise CommandError(str(e), Exit.FAILED) from e
        for key, value in (
            ("pipeline_name", dataset.pipeline_name),
            ("model_name", dataset.model_name),
            ("serving_dir", dataset.serving_dir),
            ("schema_path", dataset.schema_path),
        ):
            if kw.get(key, getattr(_D, key)) == getattr(_D, key):
                kw[key] = value
        kw["dataset"] = dataset.dataset
    settings = Settings(
        **{k: v for k, v in kw.items() if k in {f.name for f in dataclasses.fields(Settings)}}
    )
    server = None
    if (
        start
        and settings.server_host in _LOCAL
        and not _answers(settings.server_host, settings.rest_port)
    ):
        if _has_versions(settings.serving_dir):
            server = _start_server(settings)
        else:
            click.echo(
                f"No model server answers and {settings.serving_dir} holds no model: "
                "run the pipeline first (`make run`); predictions stay off.",
                err=True,
            )
    env = dict(os.environ, **settings.to_env())
    root = os.path.dirname(os.path.dirname(os.path.dirname(APP)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        APP,
        f"--server.address={address}",
        f"--server.port={port}",
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
        "--client.toolbarMode=viewer",
    ]
    click.echo(f"Web app on http://{address}:{port}", err=True)
    app = subprocess.Popen(cmd, env=env)
    # SIGTERM (a service manager, a test) or Ctrl-C stops the app, killed if it lingers (a page
    # busy in a long read does not return to Streamlit's shutdown), and the server started here.
    stopping: list[float] = []

    def stop(*_: object) -> None:
        stopping.append(time.monotonic())
        app.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        while app.poll() is None:
            try:
                time.sleep(0.2)
            except KeyboardInterrupt:
                stop()
            if stopping and time.monotonic() - stopping[0] > _GRACE_SECONDS:
                app.kill()
        code = app.wait()
    finally:
        for proc in (app, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    proc.kill()
    sys.exit(0 if stopping or code < 0 else code)
