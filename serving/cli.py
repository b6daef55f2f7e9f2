"""`mlops serve` and `mlops predict`.

`serve` takes tensorflow_model_server's flag names (and `--flag=value` booleans), so commands
and manifests written for TF Serving carry over by swapping the binary name.

Failures print one line on stderr (a traceback only with `--debug`) and exit with the project's
status for that kind of failure (cli_support.Exit, docs/cli.md).
"""

from __future__ import annotations

import json
import logging

import click

import model_layout
from cli_support import CommandError, Exit, debug_option, handle_errors
from serving.addresses import MAX_PORT, check_ports
from serving.canary import CanarySplit
from serving.event_loop import DEFAULT_EVENT_LOOP, EVENT_LOOPS

_BOOL = click.BOOL
# With no model flags the server re-reads the shared models.config this often, so labels set by
# `mlops models promote` and models added by a push are served without a restart.
ALL_MODELS_POLL_SECONDS = 1.0


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--port", type=click.IntRange(0, MAX_PORT), default=8500, show_default=True, help="gRPC port."
)
@click.option(
    "--rest_api_port",
    type=click.IntRange(0, MAX_PORT),
    default=8501,
    show_default=True,
    help="REST port; 0 disables REST.",
)
@click.option("--rest_api_host", default="127.0.0.1", show_default=True, help="REST bind address.")
@click.option(
    "--grpc_host",
    default="127.0.0.1",
    show_default=True,
    help="gRPC bind address (independent of --rest_api_host).",
)
@click.option(
    "--ssl_config_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="SSLConfig text proto: gRPC over TLS.",
)
@click.option(
    "--model_management",
    type=click.Choice(["off", "loopback", "any"]),
    default="loopback",
    show_default=True,
    help="Who may call ModelService.HandleReloadConfigRequest.",
)
@click.option(
    "--max_request_elements",
    type=int,
    default=100_000,
    show_default=True,
    help="Tensor elements per request; 0 = no limit.",
)
@click.option(
    "--max_tensor_rank",
    type=int,
    default=32,
    show_default=True,
    help="Dims per input tensor / JSON nesting depth; 0 = no limit.",
)
@click.option(
    "--max_string_bytes",
    type=int,
    default=64 * 1024 * 1024,
    show_default=True,
    help="String bytes per request; 0 = no limit.",
)
@click.option(
    "--http_keepalive_timeout_seconds",
    type=float,
    default=15.0,
    show_default=True,
    help="Close REST connections idle (or slow to send a request head) this long.",
)
@click.option(
    "--http_body_timeout_seconds",
    type=float,
    default=30.0,
    show_default=True,
    help="408 when a REST body takes longer.",
)
@click.option("--model_name", default="default", show_default=True)
@click.option(
    "--model_base_path", default=None, help="Directory of numeric version subdirectories."
)
@click.option(
    "--model_config_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="ModelServerConfig text proto. With none of the model flags: every dataset's pushed "
    "model, from <serving_root>/models.config.",
)
@click.option(
    "--model_config_file_poll_wait_seconds",
    type=float,
    default=0.0,
    show_default=True,
    help="> 0: re-read --model_config_file when it changes (labels, models); "
    f"{ALL_MODELS_POLL_SECONDS:g} when serving every model.",
)
@click.option(
    "--dataset",
    default=None,
    help="Not a TF Serving flag: serve this dataset's model alone (its name and serving dir; a "
    "name under datasets/ or a dataset.yaml path).",
)
@click.option(
    "--serving_root",
    default=str(model_layout.SERVING_ROOT),
    show_default=True,
    help="Not a TF Serving flag: where the Pusher writes <model>/<version>/ and the shared "
    "models.config.",
)
@click.option(
    "--file_system_poll_wait_seconds",
    type=float,
    default=1.0,
    show_default=True,
    help="<= 0: load once, never poll.",
)
@click.option(
    "--enable_batching",
    type=_BOOL,
    is_flag=False,
    flag_value=True,
    default=True,
    show_default=True,
    help="Dynamic batching; on by default, unlike TF Serving (docs/serving.md#batching).",
)
@click.option(
    "--batching_parameters_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="BatchingParameters text proto.",
)
@click.option(
    "--max_batch_size", type=int, default=None, help="Overrides the batching parameters file."
)
@click.option(
    "--batch_timeout_micros", type=int, default=None, help="Overrides the batching parameters file."
)
@click.option(
    "--num_batch_threads", type=int, default=None, help="Overrides the batching parameters file."
)
@click.option(
    "--monitoring_config_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="MonitoringConfig text proto (prometheus_config).",
)
@click.option(
    "--metrics_path",
    default="/monitoring/prometheus/metrics",
    show_default=True,
    help="Prometheus path on the REST port; '' disables.",
)
@click.option("--access_log", default=None, help="'-' for stderr or a file path; off by default.")
@click.option(
    "--max_body_bytes",
    type=int,
    default=64 * 1024 * 1024,
    show_default=True,
    help="Largest REST request body.",
)
@click.option(
    "--request_log_dir",
    default=None,
    help=(
        "Log requests as tf.Examples (TFRecord) here, for `mlops data check-skew`; off by default."
    ),
)
@click.option(
    "--enable_model_warmup",
    type=_BOOL,
    is_flag=False,
    flag_value=True,
    default=True,
    show_default=True,
    help="Replay a version's assets.extra/tf_serving_warmup_requests before serving it.",
)
@click.option(
    "--canary_percent",
    default=None,
    help=(
        "Not a TF Serving flag: send this percent of requests naming no version or label to the "
        "'canary' label, the rest to 'stable' (e.g. 10, or per model: taxi=10,other=5). "
        "Off by default."
    ),
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Not a TF Serving flag: serve from this many processes sharing both ports "
    "(SO_REUSEPORT); each has its own model copy, batcher and metrics "
    "(docs/serving.md#workers).",
)
@click.option(
    "--event_loop",
    type=click.Choice(list(EVENT_LOOPS)),
    default=DEFAULT_EVENT_LOOP,
    show_default=True,
    help="Not a TF Serving flag: the event loop the REST and gRPC adapters run on; asyncio is "
    "Python's own, slower per request (docs/serving.md#event-loop).",
)
@click.option("--log_level", default="INFO", show_default=True)
@debug_option
@handle_errors()
def serve(**kw: object) -> None:
    """Serve SavedModels over TF Serving's gRPC and REST APIs."""
    # TensorFlow (several seconds, hundreds of MB) is imported only once the flags, the config
    # files and both ports have passed: a mistake in any of them answers at once, and the
    # supervisor of `--workers N` never imports it at all (serving/addresses.py).
    from serving.config import BatchingOptions, ServerOptions, load_monitoring_path
    from serving.limits import RequestLimits

    log_level = str(kw.pop("log_level")).upper()
    workers = kw.pop("workers")
    logging.basicConfig(
        level=log_level,
        format="%(asctime)s %(levelname)s %(name)s] %(message)s",
    )
    batching = BatchingOptions()
    if kw["batching_parameters_file"]:
        with open(kw["batching_parameters_file"]) as f:
            batching = BatchingOptions.from_text_proto(f.read())
    for name in ("max_batch_size", "batch_timeout_micros", "num_batch_threads"):
        if kw[name] is not None:
            setattr(batching, name, kw[name])
    metrics_path = kw["metrics_path"] or None
    try:
        _select_models(kw)
    except ValueError as e:
        raise CommandError(str(e), Exit.FAILED) from e
    if kw["monitoring_config_file"]:
        metrics_path = load_monitoring_path(kw["monitoring_config_file"])
    options = ServerOptions(
        port=kw["port"],
        rest_api_port=kw["rest_api_port"],
        rest_api_host=kw["rest_api_host"],
        grpc_host=kw["grpc_host"],
        model_name=kw["model_name"],
        model_base_path=kw["model_base_path"],
        model_config_file=kw["model_config_file"],
        model_config_file_poll_wait_seconds=kw["model_config_file_poll_wait_seconds"],
        file_system_poll_wait_seconds=kw["file_system_poll_wait_seconds"],
        enable_batching=kw["enable_batching"],
        batching=batching,
        metrics_path=metrics_path,
        access_log=kw["access_log"],
        max_body_bytes=kw["max_body_bytes"],
        request_log_dir=kw["request_log_dir"],
        ssl_config_file=kw["ssl_config_file"],
        model_management=kw["model_management"],
        limits=RequestLimits(
            kw["max_request_elements"], kw["max_tensor_rank"], kw["max_string_bytes"]
        ),
        http_keepalive_timeout=kw["http_keepalive_timeout_seconds"],
        http_body_timeout=kw["http_body_timeout_seconds"],
        enable_model_warmup=kw["enable_model_warmup"],
        event_loop=kw["event_loop"],
    )
    try:
        config = options.model_server_config()
        options.grpc_credentials()
        if kw["canary_percent"] is not None:
            options.canary = CanarySplit.parse(kw["canary_percent"])
            options.canary.check_models({m.name for m in config.model_config_list.config})
    except (ValueError, OSError) as e:  # bad flags or config files
        raise CommandError(str(e), Exit.FAILED) from e
    try:
        if workers > 1:
            from serving.workers import check_worker_options, run_workers

            try:
                check_worker_options(options, workers)
            except ValueError as e:
                raise CommandError(str(e), Exit.FAILED) from e
            status = run_workers(options, workers, log_level)
            if status:  # a worker that could not bind is UNREACHABLE, as one process is
                unreachable = status == Exit.UNREACHABLE
                raise CommandError(
                    f"a server worker exited with status {status}",
                    Exit.UNREACHABLE if unreachable else Exit.FAILED,
                )
        else:
            check_ports(options)
            from serving.server import run_server

            run_server(options)
    except OSError as e:  # a port that cannot be bound
        raise CommandError(f"cannot listen: {e}", Exit.UNREACHABLE) from e


def _select_models(kw: dict) -> None:
    """Fill the model flags in place: --dataset names one dataset's model; no model flag at all
    serves every dataset's pushed model from the serving root's shared models.config."""
    ctx = click.get_current_context()
    given = {
        name
        for name in ("model_name", "model_base_path", "model_config_file")
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    }
    if kw["dataset"]:
        from metadata.locations import locations
        from modules.dataset_spec import SpecError

        if given:
            raise ValueError("--dataset names the model itself; leave out the other model flags")
        try:
            where = locations(kw["dataset"])
        except SpecError as e:
            raise ValueError(str(e)) from None
        kw["model_name"] = where.model_name
        kw["model_base_path"] = where.serving_dir_in(kw["serving_root"])
        return
    if given:
        return
    from serving.all_models import shared_config

    kw["model_config_file"] = shared_config(kw["serving_root"])
    poll = "model_config_file_poll_wait_seconds"
    if ctx.get_parameter_source(poll) is click.core.ParameterSource.DEFAULT:
        kw[poll] = ALL_MODELS_POLL_SECONDS


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model_name", default=None, help="Default: the --dataset's model.")
@click.option(
    "--input", "input_path", required=True, help="CSV (with header) or JSON rows; '-' for stdin."
)
@click.option(
    "--input_format",
    type=click.Choice(["csv", "json"]),
    default=None,
    help="Default: from the file extension.",
)
@click.option("--protocol", type=click.Choice(["rest", "grpc"]), default="rest", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    type=click.IntRange(1, MAX_PORT),
    default=None,
    help="Default: 8501 for REST, 8500 for gRPC.",
)
@click.option(
    "--encoding",
    type=click.Choice(["examples", "raw"]),
    default="examples",
    show_default=True,
    help="examples: serialized tf.Examples to serving_default; raw: typed features to serving_raw.",
)
@click.option(
    "--signature_name", default=None, help="Default: serving_default / serving_raw per --encoding."
)
@click.option("--model_version", type=int, default=None)
@click.option("--version_label", default=None)
@click.option("--batch_size", type=int, default=100, show_default=True, help="Rows per request.")
@click.option(
    "--dataset",
    default=None,
    help="Dataset whose model is asked (default --model_name) and whose spec encodes the rows "
    "(a name under datasets/ or a dataset.yaml path). Default: the active dataset (taxi).",
)
@debug_option
@handle_errors()
def predict(**kw: object) -> None:
    """Encode raw rows per the dataset spec and print one JSON prediction per row."""
    from metadata.locations import of_spec
    from modules import dataset_spec
    from serving_api.client import (
        GrpcClient,
        RestClient,
        ServerUnreachable,
        ServingClientError,
        predict_rows,
        read_rows,
    )

    source = kw["input_path"]
    try:
        spec = dataset_spec.load(kw["dataset"]) if kw["dataset"] else None
        model_name = kw["model_name"] or of_spec(spec or dataset_spec.load()).model_name
    except dataset_spec.SpecError as e:
        raise CommandError(str(e), Exit.FAILED) from e
    try:
        rows = read_rows(source, kw["input_format"])
    except OSError as e:
        raise CommandError(
            f"cannot read --input {source}: {e.strerror or e}", Exit.INPUT_MISSING
        ) from e
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise CommandError(f"--input {source} is not CSV or JSON rows: {e}", Exit.BAD_INPUT) from e
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise CommandError(f"--input {source} holds no rows (objects / CSV lines)", Exit.BAD_INPUT)
    if kw["protocol"] == "rest":
        client = RestClient(kw["host"], kw["port"] or 8501)
    else:
        client = GrpcClient(kw["host"], kw["port"] or 8500, spec=spec)
    try:
        results = predict_rows(
            client,
            model_name,
            rows,
            kw["encoding"],
            kw["signature_name"],
            kw["model_version"],
            kw["version_label"],
            kw["batch_size"],
            spec,
        )
    except ServerUnreachable as e:
        raise CommandError(f"no server at {e}", Exit.UNREACHABLE) from e
    except ServingClientError as e:
        raise CommandError(f"prediction failed: {e}", Exit.REJECTED) from e
    except (ValueError, TypeError) as e:  # rows whose values do not fit the feature kinds
        raise CommandError(f"bad input row: {e}", Exit.BAD_INPUT) from e
    for i, result in enumerate(results):
        click.echo(json.dumps({"row": i, **result}))
