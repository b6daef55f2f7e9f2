"""`mlops serve --workers N`: N server processes sharing the gRPC and REST ports (SO_REUSEPORT).

One server process is one event loop, GIL-bound on one core (issue 26: ~400 us of loop CPU per
REST request, ~1 ms per gRPC call). As in KServe's ModelServer(workers=N), N processes each run
the whole server (their own model repository, batcher, metrics) and the kernel spreads new
connections across them. What that does and does not keep consistent (docs/serving.md,
"Workers"):

- model versions: each worker polls the same base paths, so every worker loads a new version
  within its own poll (`--file_system_poll_wait_seconds`); for that window, workers may answer
  from different versions (the X-Model-Version header says which);
- `--model_config_file` with `--model_config_file_poll_wait_seconds`: each worker re-reads the
  file; this is how to change the served set with workers;
- ModelService.HandleReloadConfigRequest reaches one worker only, so it is refused
  (FAILED_PRECONDITION) when N > 1 rather than leaving the workers serving different models;
- Prometheus: each worker exposes its own counters on the shared port, so a scrape sees the
  worker its connection reached. Sum over workers needs one scrape target per worker, which a
  shared port cannot give; that is why N defaults to 1.

The parent only supervises: it checks both ports are free (a port another program holds fails
here, in one line, instead of being shared), starts the workers, forwards SIGTERM/SIGINT, and
when one worker exits on its own, stops the others and exits with its status.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import replace

from serving.addresses import check_ports
from serving.config import ServerOptions

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def all_ready_message(workers: int) -> str:
    """Logged once every worker has both ports open (what `bench/serving_bench.py` waits for)."""
    return f"All {workers} server workers are serving"


def check_worker_options(options: ServerOptions, workers: int) -> None:
    """Refuse what N processes cannot share: an ephemeral port (0) is a different port per
    worker. REST port 0 (REST off) is fine."""
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if workers > 1 and options.port == 0:
        raise ValueError("--workers > 1 needs a fixed --port (0 would give each worker its own)")


def _die_with_parent() -> None:
    """A worker gets SIGTERM when the supervisor dies, even by SIGKILL (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the supervisor's handlers still stop workers
        pass


def _worker(options: ServerOptions, log_level: str, ready) -> None:
    _die_with_parent()
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s %(levelname)s worker-{os.getpid()} %(name)s] %(message)s",
    )
    from cli_support import Exit
    from serving.server import run_server

    try:
        run_server(options, ready.set)
    except OSError as e:  # as the single-process server: one line, UNREACHABLE
        log.error("cannot listen: %s", e)
        raise SystemExit(int(Exit.UNREACHABLE)) from None


def run_workers(options: ServerOptions, workers: int, log_level: str = "INFO") -> int:
    """Run `workers` server processes until SIGTERM/SIGINT or until one exits; the exit status
    is the first worker's to exit on its own (0 after a signal-initiated stop)."""
    check_worker_options(options, workers)
    check_ports(options)  # both free: a port another program holds is not shared
    shared = replace(options, reuse_port=True, workers=workers)
    ctx = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
    ready = [ctx.Event() for _ in range(workers)]
    procs = [
        ctx.Process(target=_worker, args=(shared, log_level, ready[i]), name=f"serve-worker-{i}")
        for i in range(workers)
    ]
    stopping = False

    def stop(signum, frame) -> None:  # noqa: ARG001
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.pid is not None and p.exitcode is None:
                os.kill(p.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for p in procs:
            p.start()
        log.info("Started %d server workers: pids %s", workers, [p.pid for p in procs])
        status = 0
        announced = False
        while any(p.exitcode is None for p in procs):
            if not announced and all(r.is_set() for r in ready):
                announced = True
                log.info("%s", all_ready_message(workers))
            first = next((p for p in procs if p.exitcode is not None), None)
            if first is not None and not stopping:
                status = first.exitcode if first.exitcode > 0 else 1
                log.error("Worker %d exited with %s; stopping the others", first.pid, status)
                stop(signal.SIGTERM, None)
            time.sleep(0.2)
        for p in procs:
            p.join()
        return status
    finally:
        for p in procs:
            if p.pid is not None and p.exitcode is None:
                p.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
