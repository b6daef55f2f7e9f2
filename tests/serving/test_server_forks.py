"""Test servers forked from the preloaded process (tests/server_forks.py) behave as the fresh
`python -m mlops.cli serve` they stand in for.

Each test starts a real server the way the rest of the suite does. It checks something the
fork could get wrong:
- the caller's working directory, environment and log file;
- the exit status of a refusal and of a requested stop;
- the test process's own __main__, which must not run again in the child;
- a server still running when its test process exits;
- falling back to a new interpreter on request or when PYTHONPATH points at other code.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import types

import pytest
import requests

from serving import testing as sm
from tests import server_forks


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("forks")
    sm.build_model(root / "taxi" / "1")
    return root


@pytest.fixture(autouse=True)
def _forks_on(monkeypatch):
    monkeypatch.setenv(server_forks.FORKED_ENV, "1")


def _predict(server: sm.ServerProcess) -> list:
    example = base64.b64encode(sm.make_example(sm.SAMPLE_ROW)).decode()
    body = {"instances": [{"b64": example}]}
    r = requests.post(server.rest_url + "/v1/models/taxi:predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def test_a_forked_server_runs_in_the_callers_directory_and_logs_to_its_file(models, monkeypatch):
    monkeypatch.chdir(models)  # a relative model path only resolves from the caller's directory
    server = sm.ServerProcess("--model_name=taxi", "--model_base_path=taxi", "--log_level=INFO")
    try:
        assert isinstance(server.proc, server_forks.ForkedServer)
        assert server.proc.pid != os.getpid()
        server.wait_ready()
        assert _predict(server)
        assert f"Running gRPC ModelServer at 127.0.0.1:{server.grpc_port}" in server.log_all()
        server.proc.terminate()  # a requested stop is a clean exit, as for a fresh server
        assert server.proc.wait(timeout=30) == 0
    finally:
        server.stop()


def test_a_refusal_is_one_line_in_the_log_and_the_clis_exit_status(models):
    # The gRPC port is held: `serve` refuses before loading anything (exit 5, UNREACHABLE).
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        server = sm.ServerProcess(
            f"--model_base_path={models / 'taxi'}", "--model_name=taxi", f"--port={port}"
        )
        try:
            assert server.proc.wait(timeout=60) == 5
            lines = [line for line in server.log_all().splitlines() if line.strip()]
            assert len(lines) == 1 and str(port) in lines[0], lines
        finally:
            server.stop()


def test_the_child_does_not_run_the_test_processs_main_module(models, monkeypatch, tmp_path):
    """multiprocessing re-runs the parent's __main__ in a child; a test can leave a script there
    (Streamlit's AppTest left apps/ui/app.py, which then failed inside the server)."""
    marker = tmp_path / "main-ran"
    script = tmp_path / "left_behind.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit(7)\n")
    left = types.ModuleType("__main__")
    left.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", left)
    server = sm.ServerProcess("--model_name=taxi", f"--model_base_path={models / 'taxi'}")
    try:
        server.wait_ready()
        assert _predict(server)
    finally:
        server.stop()
    assert not marker.exists()
    assert sys.modules["__main__"] is left  # the test process's own __main__ is put back


def test_the_child_sees_the_callers_environment(models, monkeypatch):
    """A variable set in the caller after the forkserver started reaches the child's CLI:
    `mlops lineage` reads its store from MLMD_CONNECTION."""
    sm.ServerProcess("--model_base_path=/nonexistent", "--model_name=x").stop()  # forkserver up
    monkeypatch.setenv("MLMD_CONNECTION", "mysql://nobody@127.0.0.1:1/not-a-db")
    log = models / "lineage.log"
    log.write_bytes(b"")
    child = server_forks.ForkedServer(["lineage", "runs"], str(log))
    assert child.wait(timeout=60) != 0
    assert "cannot read metadata store mysql://nobody@127.0.0.1:1" in log.read_text()


def test_other_code_on_pythonpath_gets_a_new_interpreter(models, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(models))
    assert not server_forks.usable()
    server = sm.ServerProcess("--model_base_path=/nonexistent", "--model_name=x", "--port=-1")
    try:
        assert isinstance(server.proc, subprocess.Popen)
        assert server.proc.wait(timeout=60) == 2  # click's usage error, from a new process
    finally:
        server.stop()


@pytest.mark.parametrize("how", ["fresh=True", "MLOPS_TEST_FORKED_SERVERS=0"])
def test_a_new_interpreter_on_request(models, monkeypatch, how):
    if how.startswith(server_forks.FORKED_ENV):
        monkeypatch.setenv(server_forks.FORKED_ENV, "0")
    fresh = how == "fresh=True"
    server = sm.ServerProcess("--model_base_path=/nonexistent", "--port=-1", fresh=fresh)
    try:
        assert isinstance(server.proc, subprocess.Popen)
        assert server.proc.wait(timeout=60) == 2
    finally:
        server.stop()


def test_kill_and_send_signal_reach_the_child(models):
    server = sm.ServerProcess(
        "--model_name=taxi", f"--model_base_path={models / 'taxi'}"
    ).wait_ready()
    try:
        server.proc.send_signal(signal.SIGKILL)
        assert server.proc.wait(timeout=30) == -signal.SIGKILL
        server.proc.kill()  # on a stopped child: nothing to do, no error
    finally:
        server.stop()


def test_a_server_left_running_does_not_keep_the_test_process_from_exiting(tmp_path):
    """A test process that exits with a forked server still running (a failed test's leftover)
    kills it instead of waiting in multiprocessing's exit handler, which joins every child."""
    import time

    from tests.paths import PROJECT_ROOT

    log = tmp_path / "left.log"
    log.write_bytes(b"")
    script = f"""
from tests import server_forks
child = server_forks.ForkedServer(
    ["serve", "--port=0", "--rest_api_port=0", "--model_name=x",
     "--model_base_path={tmp_path / "no-versions-yet"}"],
    {str(log)!r},
)
print(child.pid, flush=True)
while "Running gRPC ModelServer" not in open({str(log)!r}).read():
    assert child.poll() is None, open({str(log)!r}).read()
    __import__("time").sleep(0.2)
"""
    (tmp_path / "no-versions-yet").mkdir()
    try:
        parent = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=PROJECT_ROOT,  # `tests` imports from the project root, as under pytest
        )
    except subprocess.TimeoutExpired as e:  # the exit hung: stop the server it left, then fail
        for pid in (e.stdout or b"").split():
            os.kill(int(pid), signal.SIGKILL)
        raise AssertionError("the test process did not exit with its server running") from e
    assert parent.returncode == 0, parent.stderr
    pid = int(parent.stdout.split()[0])
    deadline = time.time() + 10
    while os.path.exists(f"/proc/{pid}") and time.time() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}"), "the forked server outlived its test process"


@pytest.mark.parametrize("value", ["false", "no", "", " 0", "1\n", "\ufeff1", "２", "0; rm -rf /"])
def test_a_value_other_than_0_or_1_is_refused(monkeypatch, value):
    monkeypatch.setenv(server_forks.FORKED_ENV, value)
    with pytest.raises(ValueError, match="must be 0 .* or 1, not"):
        server_forks.requested()


def test_pytest_stops_in_one_line_on_a_bad_value(tmp_path):
    """What a user who typed MLOPS_TEST_FORKED_SERVERS=false meets: pytest's usage error, exit 4,
    before any test runs (not the forked servers they meant to turn off)."""
    from tests.paths import PROJECT_ROOT

    env = {**os.environ, server_forks.FORKED_ENV: "false"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "tests/modules/test_phase_timer.py",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 4, run.stdout + run.stderr
    assert "MLOPS_TEST_FORKED_SERVERS must be 0" in run.stderr
    assert "passed" not in run.stdout
