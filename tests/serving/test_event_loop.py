"""`mlops serve --event_loop`: uvloop by default, Python's asyncio loop a flag away; both serve
REST and gRPC, answer a malformed request with TF Serving's error shape and keep serving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from serving import testing as sm
from serving_api import client


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("event-loop") / "taxi"
    sm.build_model(root / "1")
    return str(root)


def _post(server: sm.ServerProcess, body: bytes) -> tuple[int, dict]:
    """A raw REST predict body, as a client that writes its own JSON sends it."""
    req = urllib.request.Request(
        server.rest_url + "/v1/models/taxi:predict",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _loaded_libraries(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as f:
        return f.read()


@pytest.mark.parametrize(
    ("flags", "loop"), [((), "uvloop"), (("--event_loop=asyncio",), "asyncio")]
)
def test_serves_on_the_chosen_loop(base, flags, loop):
    server = sm.ServerProcess(
        "--model_name=taxi", f"--model_base_path={base}", "--log_level=INFO", *flags
    ).wait_ready()
    try:
        assert f"Event loop: {loop}" in server.log_all()
        # What the process really runs, not only what it logs: uvloop's extension is loaded
        # only when the server runs on it.
        assert ("uvloop/loop." in _loaded_libraries(server.proc.pid)) is (loop == "uvloop")

        example = sm.make_example(sm.SAMPLE_ROW)
        rest = client.RestClient(port=server.rest_port)
        answer = rest.predict("taxi", {"examples": [example]})
        assert len(answer) == 1 and answer[0]["probabilities"], answer
        bad_status, bad = _post(server, b'{"instances": [')
        assert bad_status == 400 and set(bad) == {"error"}, bad
        grpc_client = client.GrpcClient(port=server.grpc_port)
        try:
            assert grpc_client.predict("taxi", {"examples": [example]})[0]["probabilities"]
        finally:
            grpc_client.close()
        assert rest.predict("taxi", {"examples": [example]}) == answer  # still serving
    finally:
        server.stop()
    # The server's log file is the helper's own: gone once stopped, its text still readable, so
    # a test run leaves no mlops-serve-*.log behind in the temp directory.
    assert not os.path.exists(server.log_path)
    assert f"Event loop: {loop}" in server.log_all()


def test_unknown_event_loop_is_refused():
    out = subprocess.run(
        [sys.executable, "-m", "mlops.cli", "serve", "--event_loop=trio"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "Invalid value for '--event_loop'" in out.stderr and "Traceback" not in out.stderr
