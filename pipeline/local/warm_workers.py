"""Beam's multi-processing workers, forked from a process that has already imported them.

Why: in multi-processing mode Beam's DirectRunner starts `python -m
apache_beam.runners.worker.sdk_worker_main` once per worker (two here) for every Beam pipeline,
that is for every Beam component of a run (ExampleGen, the RowCleaner, StatisticsGen,
Transform, ...). Each new worker imports Beam, TensorFlow, tfx_bsl, TFDV, tf.Transform and TFX
before its first bundle: 5 s for Beam alone and 17-19 s for the whole stack on this 2-core
machine under load, about 800 MiB each, paid again by every component (docs/performance.md).

A warm pool, one per local run: a server process imports that stack once, then forks one worker
per request. The forked worker runs Beam's own `sdk_worker_main.main` with the environment
Beam's subprocess would have had, so it talks to the runner over the same Fn API; only its
start-up differs. The runner starts `worker_client.py` (standard library only) instead of
Beam's command: it passes its environment to the pool, waits for the forked worker and exits
with its status. If the pool is missing or broken, the client runs Beam's command itself.

`warm_pool(beam_args)` is the runner side (pipeline/local/run.py): on the DirectRunner in
multi-processing mode it starts the server and points Beam's worker start-up at the client for
the duration of the run; otherwise it does nothing. `--cold-beam-workers` turns it off.

    python warm_workers.py SOCKET_PATH RUNNER_PID [MODULE,...]
        (the server, which the runner starts; the modules to preload default to PRELOAD)
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

# What every worker of this pipeline imports before its first bundle (third-party only: the
# project's and the user's modules are imported by each worker, as before, so a run uses the
# code it started with either way).
BEAM_WORKER_MODULE = "apache_beam.runners.worker.sdk_worker_main"
PRELOAD = (
    BEAM_WORKER_MODULE,
    "tensorflow",
    "pyarrow",
    "tfx_bsl.coders.example_coder",
    "tensorflow_data_validation",
    "tensorflow_transform.beam",
    "tfx.components",
)
CLIENT = Path(__file__).with_name("worker_client.py")
FORKED = "warm_workers: forked Beam worker"
SOCKET_NAME = "pool.sock"
# A request is one JSON line (the environment); anything longer is not from the client.
MAX_REQUEST_BYTES = 1 << 20
REQUEST_TIMEOUT_SECONDS = 10.0
# How often the server checks that the runner that started it is still there.
PARENT_CHECK_SECONDS = 1.0


def beams_worker_command() -> str:
    """The command Beam's DirectRunner runs for a multi-processing worker
    (FnApiRunner.run_pipeline), which the pool replaces."""
    return f"{sys.executable} -m {BEAM_WORKER_MODULE}"


def client_command(socket_path: str) -> str:
    """The command Beam runs instead (through a shell, quoted): the client, on an interpreter
    without site-packages."""
    return shlex.join([sys.executable, "-S", str(CLIENT), socket_path])


def uses_worker_processes(beam_args: list[str] | tuple[str, ...]) -> bool:
    """True when these Beam arguments run Beam's DirectRunner in multi-processing mode (the only
    mode that starts worker processes on this machine)."""
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

    from pipeline.local.beam_packaging import runs_locally

    options = PipelineOptions(flags=list(beam_args))
    mode = options.view_as(DirectOptions).direct_running_mode
    return runs_locally(list(beam_args)) and mode == "multi_processing"


# --- the server --------------------------------------------------------------------------------


def _read_request(conn: socket.socket) -> dict | None:
    """The client's one JSON line, or None for anything else (closed early, too long, not JSON,
    not an environment of strings)."""
    conn.settimeout(REQUEST_TIMEOUT_SECONDS)
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
            if len(data) > MAX_REQUEST_BYTES:
                return None
        request = json.loads(data)
    except (OSError, ValueError):
        return None
    env, cwd = (request.get("env"), request.get("cwd")) if isinstance(request, dict) else (0, 0)
    if not isinstance(env, dict) or not isinstance(cwd, str) or not os.path.isdir(cwd):
        return None
    if not all(isinstance(k, str) and isinstance(v, str) and k for k, v in env.items()):
        return None
    if any("\0" in k or "=" in k or "\0" in v for k, v in env.items()):
        return None
    return {"env": env, "cwd": cwd}


def _exit_when_client_goes(conn: socket.socket) -> None:
    """In a worker: its client went away (Beam stopped it): so does the worker."""
    conn.settimeout(None)
    try:
        while conn.recv(4096):
            pass
    except OSError:
        pass
    os._exit(1)


def _run_worker(conn: socket.socket, request: dict) -> None:
    """In the forked child: become Beam's worker for this request, report, exit. Never returns."""
    code = 1
    try:
        # First, so the client knows a worker exists before that worker can report anything.
        conn.sendall(b"started %d\n" % os.getpid())
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[0] = request["cwd"]  # as `python -m` sets it for Beam's own worker
        threading.Thread(target=_exit_when_client_goes, args=(conn,), daemon=True).start()
        worker = importlib.import_module(BEAM_WORKER_MODULE)  # preloaded: already there
        sys.argv = [worker.__file__]
        worker.main(sys.argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported on the worker's stderr, as Beam's would be
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        with contextlib.suppress(OSError):
            conn.sendall(b"exit %d\n" % code)
        os._exit(code)


def serve(socket_path: str, runner_pid: int, preload: tuple[str, ...] = PRELOAD) -> None:
    """Listen first (clients queue while the stack imports), import `preload`, then fork a
    worker per well-formed request until the runner is gone or the server is told to stop."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runner's to handle; it stops us
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    for name in preload:
        importlib.import_module(name)
    if BEAM_WORKER_MODULE in preload:
        from pipeline.local import beam_fixed_cost

        beam_fixed_cost.install()  # in every forked worker, as in the runner (beam_fixed_cost.py)
    if "tensorflow_data_validation" in preload:
        from data_stats import equi_width_histogram

        equi_width_histogram.install()  # where StatisticsGen computes its histograms
    gc.collect()
    gc.freeze()  # the imported objects stay out of collections, so forks share their pages
    listener.settimeout(PARENT_CHECK_SECONDS)
    while os.getppid() == runner_pid:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        with conn:
            request = _read_request(conn)
            if request is None:
                continue
            pid = os.fork()
            if pid == 0:
                listener.close()
                _run_worker(conn, request)
            # In the run's log (the pool's stderr is the runner's): which workers were forked.
            print(f"{FORKED} {pid}", file=sys.stderr, flush=True)


# --- the runner side ---------------------------------------------------------------------------


class _Patch:
    """Beam's SubprocessSdkWorker, starting the client instead of Beam's worker command."""

    def __init__(self, socket_path: str) -> None:
        from apache_beam.runners.portability import local_job_service

        self.module = local_job_service
        self.original = local_job_service.SubprocessSdkWorker
        beams, ours = beams_worker_command().encode(), client_command(socket_path).encode()

        class WarmSubprocessSdkWorker(self.original):
            def __init__(self, worker_command_line: bytes, *args, **kwargs) -> None:
                if worker_command_line == beams:
                    worker_command_line = ours
                super().__init__(worker_command_line, *args, **kwargs)

        self.replacement = WarmSubprocessSdkWorker

    def __enter__(self) -> _Patch:
        self.module.SubprocessSdkWorker = self.replacement
        return self

    def __exit__(self, *exc) -> None:
        self.module.SubprocessSdkWorker = self.original


@contextlib.contextmanager
def warm_pool(beam_args: list[str] | tuple[str, ...], enabled: bool = True) -> Iterator[int | None]:
    """For the duration of the block, multi-processing DirectRunner workers are forked from a
    warm pool; yields the pool server's pid (None: these Beam arguments start no worker
    processes, or `enabled` is False, and nothing changed)."""
    if not enabled or not uses_worker_processes(beam_args):
        yield None
        return
    directory = tempfile.mkdtemp(prefix="beam-workers-")
    socket_path = os.path.join(directory, SOCKET_NAME)
    server = subprocess.Popen(
        [sys.executable, __file__, socket_path, str(os.getpid())],
        stdin=subprocess.DEVNULL,
        cwd=os.getcwd(),
    )
    try:
        with _Patch(socket_path):
            yield server.pid
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(directory, ignore_errors=True)


def wait_for_socket(socket_path: str, timeout: float = 60.0) -> bool:
    """True once the server listens at socket_path (tests and benchmarks wait on it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(socket_path):
            return True
        time.sleep(0.05)
    return False


if __name__ == "__main__":
    sys.path[0] = os.getcwd()  # not this script's directory: workers resolve imports as Beam's do
    modules = tuple(m for m in sys.argv[3].split(",") if m) if len(sys.argv) > 3 else PRELOAD
    serve(sys.argv[1], int(sys.argv[2]), modules)
