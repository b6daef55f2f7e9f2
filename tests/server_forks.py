"""Test servers forked from one process that has already imported the server and TensorFlow.

Why: a `mlops serve` subprocess spends ~5.5 of its ~6 s start-up importing TensorFlow, and the
test suite starts dozens of servers (docs/performance.md: that import was most of what kept
`make test-fast` over its budget). Here multiprocessing's forkserver (standard library; one per
test process, started on first use) imports `serving.server` once, quietly, as `mlops` would,
and forks one child per server. Each child is still its own process on its own free ports, and
runs exactly `python -m mlops.cli serve ...` (runpy) with the caller's environment, working
directory and log file. It only skips the import. tests/conftest.py installs `launch` as
serving/testing.py's `fork_launcher`; benchmarks start fresh processes.

What a fork cannot show, a test asks for with `ServerProcess(..., fresh=True)`: which libraries a
fresh server process maps or imports (the workers' supervisor stays TensorFlow-free), or
anything TensorFlow reads from the environment only when it loads.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.forkserver
import os
import runpy
import signal
import subprocess
import sys
import types
import weakref

FORKED_ENV = "MLOPS_TEST_FORKED_SERVERS"
""""0": every test server starts in a new interpreter (default: forked)."""

# What the forkserver imports before forking: the server with TensorFlow and grpc. Only
# imported there: the gRPC server and TensorFlow's runtime (threads) start in each child.
PRELOAD = ["serving.server"]

_live: weakref.WeakSet[multiprocessing.Process] = weakref.WeakSet()


# The forkserver and its children import from this process's sys.path, whatever PYTHONPATH a
# caller sets later; read when tests/conftest.py imports this module, before any test runs.
_PYTHONPATH = os.environ.get("PYTHONPATH")


def requested() -> bool:
    """FORKED_ENV as set: unset or "1" forks, "0" does not. Anything else ("false", "no", "",
    " 0") is refused rather than read as on: a user who meant to turn forks off would
    otherwise test the forked path without knowing (tests/conftest.py turns this error into
    pytest's one-line usage error)."""
    value = os.environ.get(FORKED_ENV, "1")
    if value not in ("0", "1"):
        raise ValueError(
            f"{FORKED_ENV} must be 0 (a new interpreter per server) or 1, not {value!r}"
        )
    return value == "1"


def usable() -> bool:
    """Forks are on (FORKED_ENV) and would run the code a fresh process would: a caller that
    points PYTHONPATH at another checkout (bench/serving_bench.py's baseline) needs a fresh
    interpreter, since the forkserver's imports are this one's."""
    return requested() and os.environ.get("PYTHONPATH") == _PYTHONPATH


def _context() -> multiprocessing.context.ForkServerContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    # The forkserver inherits this environment when it starts: start it with mlops's quiet
    # mode so TensorFlow loads as under `mlops serve` (its C++ log level is read once, at load).
    from mlops.cli import QUIET_ENV

    saved = {key: os.environ.get(key) for key in QUIET_ENV}
    os.environ.update(QUIET_ENV)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return ctx


def _serve(args: list[str], env: dict[str, str], log_path: str) -> None:
    """The child: the caller's environment, output to the log, then the CLI (multiprocessing
    has already moved it to the caller's working directory)."""
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a new interpreter
    sys.argv = ["mlops", *args]
    # As `python -m` finds it: the entry module not yet imported (runpy warns otherwise).
    sys.modules.pop("mlops.cli", None)
    runpy.run_module("mlops.cli", run_name="__main__", alter_sys=True)


class ForkedServer:
    """A forked server child behind the part of subprocess.Popen's interface tests use."""

    def __init__(self, args: list[str], log_path: str) -> None:
        process = _context().Process(
            target=_serve,
            args=(list(args), dict(os.environ), log_path),
            name="mlops-serve",
        )
        # multiprocessing re-runs the parent's __main__ in the child (by name or by path): in a
        # test process that may be whatever a test left there (Streamlit's AppTest leaves the
        # app script, which then ran in the server). A new interpreter runs only `mlops`.
        saved_main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            process.start()
        finally:
            sys.modules["__main__"] = saved_main
        _live.add(process)
        self._process = process
        self.pid: int = process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired("mlops serve (forked)", timeout)
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def launch(args: list[str], log_path: str) -> ForkedServer | None:
    """serving/testing.py's `fork_launcher`: a forked server, or None when forks are off or
    would run other code than a new interpreter (usable)."""
    return ForkedServer(args, log_path) if usable() else None


@atexit.register
def _stop_leftovers() -> None:
    """A server a failed test left running would keep multiprocessing's own exit handler (which
    joins every child) waiting forever: kill it first (atexit runs this before that handler,
    which was registered earlier, when multiprocessing loaded)."""
    for process in list(_live):
        if process.exitcode is None:
            process.kill()
            process.join(5)
