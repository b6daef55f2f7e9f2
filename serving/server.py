"""Wires repository, data plane and both protocol adapters into one process and one event loop.

REST and gRPC share one asyncio loop so they share the batch queues: a REST request and a gRPC
request for the same signature can ride the same model call. Like tensorflow_model_server, the
ports open only after the initial versions have loaded, so "port open" means "ready".
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable

import grpc
from aiohttp.web import TCPSite

from serving.addresses import check_ports, grpc_address
from serving.config import ServerOptions
from serving.dataplane import DataPlane
from serving.errors import ServingError
from serving.event_loop import run_in_loop
from serving.grpc_service import add_services
from serving.metrics import Metrics
from serving.repository import ModelRepository, State
from serving.rest import RestApi
from serving.warmup import warmup_hook

log = logging.getLogger(__name__)


def settle_heap() -> None:
    """Take what is alive now (mostly the loaded models' objects) out of the collector's reach.

    A loaded SavedModel is hundreds of thousands of Python objects. Requests in flight survive
    young collections, so every few seconds under load the collector runs a full collection over
    all of them, holding the GIL for tens to hundreds of milliseconds: the serving tail (issue 26).
    Frozen objects are never scanned; refcounting still frees them. Called after every version
    state change, so the cycles of an unloaded version are collected before the rest is frozen
    again (no growth over load/unload cycles)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _settle_on_load_or_unload(on_change):
    def changed(model: str, version: int, state: int) -> None:
        on_change(model, version, state)
        if state in (State.AVAILABLE, State.END):
            settle_heap()

    return changed


class ModelServer:
    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.repository: ModelRepository | None = None
        self.metrics: Metrics | None = None
        self.dataplane: DataPlane | None = None
        self._grpc: grpc.aio.Server | None = None
        self._runner = None  # aiohttp AppRunner
        self.grpc_port: int | None = None
        self.rest_port: int | None = None
        self._config_watch: asyncio.Task | None = None

    async def start(self) -> None:
        opts = self.options
        config = opts.model_server_config()
        # Loading can take minutes: an address that cannot be bound fails first, in one line.
        check_ports(opts)
        # Metrics exist before the first load so that the initial versions' warmup is counted.
        metrics = self.metrics = Metrics(
            lambda: self.repository.model_names() if self.repository else (),
            lambda: self.repository.version_labels() if self.repository else {},
        )
        warmup = warmup_hook(metrics.on_warmup) if opts.enable_model_warmup else None
        repo = self.repository = await asyncio.to_thread(
            ModelRepository, config, opts.file_system_poll_wait_seconds, warmup=warmup
        )
        repo.on_change = _settle_on_load_or_unload(metrics.on_version_state)
        settle_heap()  # the initial versions, loaded before on_change was set
        for name in repo.model_names():
            try:
                for version, st in repo.status(name):
                    metrics.on_version_state(name, version, st.state)
            except ServingError:
                pass  # no version seen yet; the poller reports it when one appears
        repo.start_polling()
        if opts.model_config_file and opts.model_config_file_poll_wait_seconds > 0:
            from serving.config_watch import watch_model_config_file

            self._config_watch = asyncio.create_task(
                watch_model_config_file(
                    repo, opts.model_config_file, opts.model_config_file_poll_wait_seconds
                )
            )
        if opts.access_log:
            metrics.enable_access_log(opts.access_log, with_pid=opts.workers > 1)
        request_log = None
        if opts.request_log_dir:
            from serving.request_log import RequestLog

            request_log = RequestLog(opts.request_log_dir)
            log.info("Logging requests as tf.Examples to %s", request_log.directory)
        self.dataplane = DataPlane(
            repo,
            opts.batching if opts.enable_batching else None,
            metrics.on_batch,
            request_log,
            opts.limits,
            opts.canary,
        )
        self.dataplane.on_outputs = metrics.on_outputs
        if self.dataplane.canary is not None:
            for name in repo.model_names():
                log.info(
                    "Canary split of %s: %g%% of requests naming no version or label go to the "
                    "'canary' label, the rest to 'stable' (labels now: %s)",
                    name,
                    opts.canary.percent(name),
                    dict(repo.labels_of(name) or {}) or "none",
                )
        grpc_opts = [
            ("grpc.max_receive_message_length", opts.grpc_max_message_bytes),
            ("grpc.max_send_message_length", opts.grpc_max_message_bytes),
            ("grpc.so_reuseport", 1 if opts.reuse_port else 0),
        ]
        self._grpc = grpc.aio.server(options=grpc_opts)
        add_services(
            self._grpc, self.dataplane, metrics, opts.model_management, workers=opts.workers
        )
        host = opts.grpc_host
        credentials = opts.grpc_credentials()
        if credentials is None:
            self.grpc_port = self._grpc.add_insecure_port(grpc_address(host, opts.port))
        else:
            self.grpc_port = self._grpc.add_secure_port(grpc_address(host, opts.port), credentials)
        if self.grpc_port == 0:
            raise OSError(f"Could not bind gRPC port {grpc_address(host, opts.port)}")
        await self._grpc.start()
        log.info(
            "Running gRPC ModelServer at %s:%d (%s) ...",
            host,
            self.grpc_port,
            "TLS" if credentials else "insecure",
        )
        if opts.rest_api_port:  # 0 disables REST, as in tensorflow_model_server
            api = RestApi(
                self.dataplane,
                metrics,
                opts.metrics_path,
                opts.max_body_bytes,
                opts.http_body_timeout,
            )
            self._runner = api.runner(opts.http_keepalive_timeout)
            await self._runner.setup()
            site = TCPSite(
                self._runner,
                opts.rest_api_host,
                opts.rest_api_port,
                backlog=1024,
                reuse_port=opts.reuse_port or None,
            )
            await site.start()
            self.rest_port = opts.rest_api_port
            log.info("Exporting HTTP/REST API at:%s:%d ...", opts.rest_api_host, self.rest_port)

    async def stop(self, grace: float = 5.0) -> None:
        if self._config_watch is not None:
            self._config_watch.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self.repository is not None:
            await asyncio.to_thread(self.repository.stop)
        if self.dataplane is not None:
            self.dataplane.close()

    async def serve_forever(self, on_ready: Callable[[], None] | None = None) -> None:
        """Run until SIGINT/SIGTERM, then drain in-flight requests and stop. `on_ready` runs
        once both ports are open (a `--workers` worker tells its supervisor)."""
        try:
            await self.start()
        except BaseException:
            await self.stop(grace=0)  # e.g. a REST port in use after gRPC started: exit, not hang
            raise
        if on_ready is not None:
            on_ready()
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        await done.wait()
        log.info("Shutting down")
        await self.stop()


def run_server(options: ServerOptions, on_ready: Callable[[], None] | None = None) -> None:
    log.info("Event loop: %s", options.event_loop)
    run_in_loop(ModelServer(options).serve_forever(on_ready), options.event_loop)
