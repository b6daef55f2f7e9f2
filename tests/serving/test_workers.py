"""`mlops serve --workers N`: N processes on the same two ports, and what they must not do.

Real servers on free ports. Each test asserts something only the multi-process path gets right:
requests reach more than one worker on both protocols, ReloadConfig is refused (it would reach one
worker of N), a port held by another program is refused before any model loads, a dead worker or
a killed supervisor takes the rest down with it (no orphan keeps serving a port).
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import time

import grpc
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.workers import all_ready_message
from tests import serving_models as sm

EXAMPLE = sm.make_example(sm.SAMPLE_ROW)


def _wait(predicate, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _worker_pids(server) -> list[int]:
    m = re.search(r"Started (\d+) server workers: pids \[([\d, ]+)\]", server.log_all())
    assert m, server.log()
    return [int(p) for p in m.group(2).split(",")]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def _maps_tensorflow(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as f:
        return "libtensorflow_framework" in f.read()


def _start(base, *extra: str):
    # A new interpreter: what the supervisor imports is under test (no TensorFlow), and a fork
    # of the tests' preloaded server process (tests/server_forks.py) has it already.
    server = sm.ServerProcess(
        "--model_name=taxi", f"--model_base_path={base}", "--workers=2", *extra, fresh=True
    ).wait_ready()
    try:
        _wait(lambda: all_ready_message(2) in server.log_all(), what="both workers")
    except BaseException:
        server.stop()  # no server left behind when a worker never comes up
        raise
    return server


@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
    base = tmp_path_factory.mktemp("workers") / "taxi"
    sm.build_model(base / "1")
    return base


def test_two_workers_share_both_ports_and_refuse_reload_config(model_base, tmp_path):
    access = tmp_path / "access.log"
    server = _start(model_base, f"--access_log={access}")
    try:
        pids = _worker_pids(server)
        assert len(set(pids)) == 2
        # The supervisor only watches: TensorFlow's library is mapped in the workers, not in it.
        assert all(_maps_tensorflow(p) for p in pids)
        assert not _maps_tensorflow(server.proc.pid)
        # Fresh connections (no session): the kernel spreads them over the listening workers.
        url = server.rest_url + "/v1/models/taxi:predict"
        body = {"instances": [{"b64": base64.b64encode(EXAMPLE).decode()}]}
        answers = set()
        for _ in range(40):
            r = requests.post(url, json=body, timeout=30, headers={"Connection": "close"})
            assert r.status_code == 200, r.text
            answers.add(round(r.json()["predictions"][0][-1], 6))
        assert len(answers) == 1  # every worker serves the same version
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "taxi"
        req.inputs["examples"].CopyFrom(tf.make_tensor_proto([EXAMPLE]))
        for _ in range(20):  # one channel per call: its own connection
            with grpc.insecure_channel(
                server.grpc_target, options=[("grpc.use_local_subchannel_pool", 1)]
            ) as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                out = stub.Predict(req, timeout=30)
                assert round(out.outputs["probabilities"].float_val[-1], 6) in answers
        _wait(lambda: access.read_text().count("\n") >= 60, timeout=10, what="the access log")
        lines = access.read_text().splitlines()
        by_pid = {int(p) for p in re.findall(r"pid=(\d+) rest predict", "\n".join(lines))}
        assert by_pid <= set(pids) and len(by_pid) == 2, lines[:5]
        grpc_pids = {int(p) for p in re.findall(r"pid=(\d+) grpc predict", "\n".join(lines))}
        assert grpc_pids <= set(pids) and len(grpc_pids) == 2, lines[-5:]

        # ReloadConfig would reach one worker of two: refused, and nothing changes.
        with grpc.insecure_channel(server.grpc_target) as channel:
            models = model_service_pb2_grpc.ModelServiceStub(channel)
            reload = model_management_pb2.ReloadConfigRequest()
            m = reload.config.model_config_list.config.add()
            m.name, m.base_path, m.model_platform = "other", str(model_base), "tensorflow"
            with pytest.raises(grpc.RpcError) as e:
                models.HandleReloadConfigRequest(reload, timeout=30)
            assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "--model_config_file" in e.value.details()
        r = requests.get(server.rest_url + "/v1/models/other", timeout=10)
        assert r.status_code == 404 and "error" in r.json()

        # One worker dies: the supervisor stops the other and exits non-zero, in one line.
        os.kill(pids[0], signal.SIGKILL)
        assert server.proc.wait(timeout=60) != 0
        _wait(lambda: not _alive(pids[1]), timeout=30, what="the other worker to stop")
        assert "worker exited" in server.log()
    finally:
        server.stop()


def test_sigterm_stops_every_worker_and_sigkill_of_the_supervisor_takes_them_down(model_base):
    server = _start(model_base)
    try:
        pids = _worker_pids(server)
        server.proc.terminate()
        assert server.proc.wait(timeout=60) == 0  # a requested stop is a clean exit
        assert not any(_alive(p) for p in pids)
    finally:
        server.stop()
    server = _start(model_base)
    try:
        pids = _worker_pids(server)
        server.proc.kill()  # no handler runs: the workers' parent-death signal stops them
        server.proc.wait(timeout=10)
        _wait(lambda: not any(_alive(p) for p in pids), timeout=60, what="orphaned workers")
        with socket.socket() as probe:  # the REST port is free again for a restarted server
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
            probe.bind(("127.0.0.1", server.rest_port))
    finally:
        server.stop()


def _serve(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlops.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("reuse", [False, True], ids=["plain", "so_reuseport"])
def test_a_port_held_by_another_program_is_refused_before_loading(tmp_path, reuse):
    """Even a socket that itself allows SO_REUSEPORT: the workers must not join it."""
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse:
            held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        out = _serve(
            f"--port={sm.free_port()}",
            f"--rest_api_port={port}",
            f"--model_base_path={tmp_path / 'missing'}",
            "--workers=2",
        )
    assert out.returncode == 5, out.stderr  # Exit.UNREACHABLE, as with one process
    assert "cannot listen" in out.stderr and str(port) in out.stderr
    assert "Traceback" not in out.stderr and "Loading servable" not in out.stderr


@pytest.mark.parametrize(
    "args, status, text",
    [
        (["--workers=0"], 2, "--workers"),
        (["--workers=-3"], 2, "--workers"),
        (["--workers=two"], 2, "--workers"),
        (["--workers=2", "--port=0"], 2, "fixed --port"),
    ],
)
def test_bad_worker_flags_fail_in_one_line(tmp_path, args, status, text):
    out = _serve("--model_base_path", str(tmp_path), "--rest_api_port=0", *args)
    assert out.returncode == status, out.stderr
    assert text in out.stderr and "Traceback" not in out.stderr
