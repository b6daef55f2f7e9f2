"""Beam's multi-processing workers forked from a warm pool (pipeline/local/warm_workers.py): real
Beam pipelines on the DirectRunner, a real pool server process, the real client script."""

from __future__ import annotations

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.config import in_memory_beam_args, multi_processing_beam_args
from pipeline.local import warm_workers
from pipeline.local.worker_client import BEAM_WORKER_MODULE

# A worker's control service that never answers: Beam's harness waits for it (up to 60 s), so a
# forked worker stays alive until something stops it.
NOWHERE = 'url: "localhost:1"'


def _gone(pid: int, within: float = 30.0) -> bool:
    """True once `pid` no longer runs (or is a zombie) within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One pool server for the module's tests (every hostile request goes to the same one),
    preloading only Beam's worker module; its socket path and process."""
    directory = tmp_path_factory.mktemp("pool")
    path = str(directory / "pool.sock")
    proc = subprocess.Popen(
        [sys.executable, warm_workers.__file__, path, str(os.getpid()), BEAM_WORKER_MODULE],
        cwd=str(directory),
    )
    assert warm_workers.wait_for_socket(path)
    yield path, proc
    proc.terminate()
    proc.wait(timeout=10)


def _ask(path: str, payload: bytes) -> bytes:
    """Send `payload` as a client would and return the pool's first reply line (b"" when the
    pool closed or reset the connection instead)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.settimeout(60)
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            return s.makefile("rb").readline()
        except OSError:
            return b""


def _children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _worker_request(cwd: str, **env) -> bytes:
    environment = {"CONTROL_API_SERVICE_DESCRIPTOR": NOWHERE, "PATH": os.environ["PATH"], **env}
    return json.dumps({"env": environment, "cwd": cwd}).encode() + b"\n"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json\n",
        b"[1, 2]\n",
        b'{"env": {}}\n',
        b'{"env": {"A": 1}, "cwd": "/"}\n',
        b'{"env": {"": "x"}, "cwd": "/"}\n',
        b'{"env": {"A=B": "x"}, "cwd": "/"}\n',
        b'{"env": {"A": "x\\u0000y"}, "cwd": "/"}\n',
        b'{"env": {}, "cwd": "/no/such/directory"}\n',
        b'{"env": [], "cwd": "/"}\n',
        b"\xff\xfe\n",
        b'{"env": {}, "cwd": "/"',  # never ends its line
        b"x" * (2**21 + 10),  # longer than any environment
    ],
    ids=lambda payload: repr(payload[:24]) + (f"+{len(payload) - 24}" if len(payload) > 24 else ""),
)
def test_a_malformed_request_starts_no_worker_and_the_pool_keeps_serving(server, payload):
    path, proc = server
    assert not _ask(path, payload).startswith(b"started")
    assert proc.poll() is None
    # ...and a well-formed request right after still gets a worker, which stops with its client.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(_worker_request(str(Path(path).parent)))
        reply = s.makefile("rb").readline()
    assert reply.startswith(b"started ")
    assert _gone(int(reply.split()[1]))


def test_a_worker_stops_when_its_client_is_killed(server, tmp_path):
    """Beam stops a worker by killing the process it started (the client): the forked worker,
    which is not that process's child, must stop too."""
    path, _ = server
    (tmp_path / "client").mkdir()
    client = subprocess.Popen(
        [sys.executable, "-S", str(warm_workers.CLIENT), path],
        env={"CONTROL_API_SERVICE_DESCRIPTOR": NOWHERE, "PATH": os.environ["PATH"]},
        cwd=str(tmp_path / "client"),
    )
    worker = None
    deadline = time.monotonic() + 30
    while worker is None and time.monotonic() < deadline:
        worker = next(iter(_children(server[1].pid)), None)
        time.sleep(0.1)
    assert worker is not None, "no worker was forked for the client"
    assert os.readlink(f"/proc/{worker}/cwd") == str(tmp_path / "client")  # the client's
    client.send_signal(signal.SIGKILL)
    client.wait()
    assert _gone(worker)


def test_the_client_runs_beams_own_worker_when_there_is_no_pool(tmp_path):
    """No pool at the socket path: the client execs Beam's worker command, which here fails
    on the missing control descriptor, as Beam's own worker started without one does."""
    result = subprocess.run(
        [sys.executable, "-S", str(warm_workers.CLIENT), str(tmp_path / "none.sock")],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "CONTROL_API_SERVICE_DESCRIPTOR" in result.stderr
    assert "sdk_worker_main" in result.stderr


def test_the_pool_stops_when_its_runner_is_gone(tmp_path):
    """A runner killed mid-run leaves no pool behind: the server watches its parent."""
    path = str(tmp_path / "pool.sock")
    launcher = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, subprocess, sys; "
            f"p = subprocess.Popen([sys.executable, {warm_workers.__file__!r}, {path!r}, "
            "str(os.getpid()), 'json']); print(p.pid)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert _gone(int(launcher.stdout.split()[-1]))


def test_the_client_command_survives_a_shell_whatever_the_socket_path(tmp_path):
    """Beam runs the worker command through a shell: the interpreter, the client and a socket
    path with spaces or quotes each reach it as one argument."""
    import shlex

    path = str(tmp_path / "a b'c $HOME" / "pool.sock")
    argv = shlex.split(warm_workers.client_command(path))
    assert argv == [sys.executable, "-S", str(warm_workers.CLIENT), path]
    echoed = subprocess.run(
        f"printf '%s\\n' {warm_workers.client_command(path)}",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    )
    assert echoed.stdout.splitlines() == argv


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (multi_processing_beam_args(), True),
        (multi_processing_beam_args(2) + ["--runner=DirectRunner"], True),
        (in_memory_beam_args(), False),
        ([], False),
        (["--direct_running_mode=multi_threading"], False),
        (multi_processing_beam_args() + ["--runner=DataflowRunner"], False),
        (multi_processing_beam_args() + ["--direct_running_mode=in_memory"], False),
    ],
)
def test_only_the_direct_runners_multi_processing_mode_starts_worker_processes(args, expected):
    assert warm_workers.uses_worker_processes(args) is expected


def test_no_pool_where_no_worker_process_starts_or_when_turned_off():
    with warm_workers.warm_pool(in_memory_beam_args()) as pid:
        assert pid is None
    with warm_workers.warm_pool(multi_processing_beam_args(), enabled=False) as pid:
        assert pid is None


def _facts(x: int) -> str:
    """Where a worker runs: its parent's pid, whether TensorFlow was already imported and
    whether Beam's introspection is pipeline/local/beam_fixed_cost.py's and TFDV's histogram
    data_stats/equi_width_histogram.py's (as imported there: a cold worker has no TFDV)."""
    from apache_beam.transforms import core

    fixed = core.get_function_args_defaults.__module__ == "pipeline.local.beam_fixed_cost"
    quantiles = sys.modules.get("tensorflow_data_validation.utils.quantiles_util")
    histogram = getattr(quantiles, "generate_equi_width_histogram", None)
    ours = getattr(histogram, "__module__", None) == "data_stats.equi_width_histogram"
    return json.dumps([x, os.getppid(), "tensorflow" in sys.modules, fixed and ours])


def _run_beam(out: Path) -> list[list]:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    with beam.Pipeline(options=PipelineOptions(multi_processing_beam_args(2))) as p:
        _ = p | beam.Create(range(40)) | beam.Map(_facts) | beam.io.WriteToText(str(out))
    return [json.loads(line) for f in glob.glob(f"{out}*") for line in open(f)]


@pytest.mark.slow
def test_multi_processing_workers_are_forked_from_the_warm_pool(tmp_path):
    """A real multi-processing Beam pipeline inside warm_pool: every element is processed, by
    workers whose parent is the pool, with the preloaded stack (TensorFlow) already imported;
    after the block Beam starts its own workers again."""
    with warm_workers.warm_pool(multi_processing_beam_args(2)) as pool:
        rows = _run_beam(tmp_path / "warm")
    assert sorted(r[0] for r in rows) == list(range(40))
    assert {(r[1], r[2], r[3]) for r in rows} == {(pool, True, True)}
    assert _gone(pool)
    cold = _run_beam(tmp_path / "cold")
    assert sorted(r[0] for r in cold) == list(range(40))
    assert pool not in {r[1] for r in cold}
    assert not any(r[3] for r in cold)  # Beam's own workers run Beam's and TFDV's code unchanged


@pytest.mark.slow
def test_a_missing_pool_costs_only_speed(tmp_path):
    """The patch in place but no server at its socket: the clients run Beam's own workers and
    the pipeline still processes every element."""
    with warm_workers._Patch(str(tmp_path / "nobody-listens.sock")):  # noqa: SLF001
        rows = _run_beam(tmp_path / "out")
    assert sorted(r[0] for r in rows) == list(range(40))
    assert all(r[2] is False for r in rows)


@pytest.mark.slow
def test_a_multi_processing_run_gives_the_in_memory_runs_data_through_warm_workers(
    small_pipeline, tmp_path
):
    """The small pipeline again, Beam multi-processing (the pool on, as by default): it
    completes and pushes, its Beam components ran in the pool's forked workers (the run's log
    names each fork), and its cleaned examples are the in-memory run's, row for row."""
    from pipeline.local.run import run_pipeline
    from pipeline.testing.samples import small_config, write_sample
    from pipeline.testing.transform_run import transformed_rows
    from pipeline.validation.quarantine import CLEANED_EXAMPLES

    config = small_config(
        tmp_path, write_sample(tmp_path / "data"), beam_args=tuple(multi_processing_beam_args(2))
    )
    exit_code, report = run_pipeline(config)
    assert exit_code == 0
    assert {c.state for c in report.components} == {"COMPLETE"}
    logs = glob.glob(os.path.join(config.pipeline_root, "logs", "*.log"))
    forks = [line for f in logs for line in open(f) if line.startswith(warm_workers.FORKED)]
    assert (
        len(forks) >= 2 * 4
    )  # two workers for each of ExampleGen, RowCleaner, StatisticsGen, Transform

    def cleaned(root: str, split: str):
        uris = glob.glob(os.path.join(root, "RowCleaner", CLEANED_EXAMPLES, "*"))
        assert len(uris) == 1
        return transformed_rows(uris[0], split)

    for split in ("train", "eval"):
        ours = cleaned(config.pipeline_root, split)
        assert ours and ours == cleaned(small_pipeline.config.pipeline_root, split)
