"""Test servers forked from the preloaded process (tests/server_forks.py) behave as the fresh
`python -m mlops.cli serve` they stand in for.

Each test starts a real server the way the rest of the suite does. It checks something the
fork could get wrong: the caller's working directory, environment and log file, the exit status
of a refusal and of a requested stop, and falling back to a new interpreter when the caller
points PYTHONPATH at other code.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess

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
