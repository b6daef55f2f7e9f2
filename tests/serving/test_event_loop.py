"""`mlops serve --event_loop`: uvloop by default, Python's asyncio loop a flag away; both serve
REST and gRPC, answer a malformed request with TF Serving's error shape and keep serving."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request

import grpc
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving import testing as sm
from serving.codec import ndarray_to_proto


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("event-loop") / "taxi"
    sm.build_model(root / "1")
    return str(root)


def _rest_predict(server: sm.ServerProcess, body: bytes) -> tuple[int, dict]:
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


def _grpc_predict(server: sm.ServerProcess) -> predict_pb2.PredictResponse:
    import numpy as np

    examples = np.empty(1, dtype=object)
    examples[:] = [sm.make_example(sm.SAMPLE_ROW)]
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "taxi"
    req.inputs["examples"].CopyFrom(ndarray_to_proto(examples))
    with grpc.insecure_channel(server.grpc_target) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=30)


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

        example = base64.b64encode(sm.make_example(sm.SAMPLE_ROW)).decode()
        ok = json.dumps({"instances": [{"b64": example}]}).encode()
        status, answer = _rest_predict(server, ok)
        assert status == 200 and len(answer["predictions"]) == 1, answer
        bad_status, bad = _rest_predict(server, b'{"instances": [')
        assert bad_status == 400 and set(bad) == {"error"}, bad
        assert _grpc_predict(server).outputs["probabilities"].float_val
        status, again = _rest_predict(server, ok)  # still serving after the malformed one
        assert status == 200 and again == answer
    finally:
        server.stop()


def test_unknown_event_loop_is_refused():
    out = subprocess.run(
        [sys.executable, "-m", "mlops.cli", "serve", "--event_loop=trio"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "Invalid value for '--event_loop'" in out.stderr and "Traceback" not in out.stderr
