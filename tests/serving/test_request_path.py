"""The per-request trims of issue 26 keep every answer: the REST route table with inference
first, one middleware, and a body read without a timer when it came with the head (and with one
when it did not); validation answers per signature whatever was validated before."""

from __future__ import annotations

import base64
import json
import socket
import time

import numpy as np
import pytest
import requests
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from serving.dataplane import DataPlane
from serving.errors import ServingError
from tests import serving_models as sm


def _sig(inputs: dict[str, tuple[int, list[int] | None]]) -> meta_graph_pb2.SignatureDef:
    sig = meta_graph_pb2.SignatureDef()
    for name, (dtype, dims) in inputs.items():
        info = sig.inputs[name]
        info.dtype = dtype
        if dims is None:
            info.tensor_shape.unknown_rank = True
        else:
            for d in dims:
                info.tensor_shape.dim.add(size=d)
    return sig


def _error(dp: DataPlane, sig, inputs) -> str:
    with pytest.raises(ServingError) as e:
        dp.validate(sig, inputs)
    return e.value.message


def test_validation_answers_per_signature_whatever_was_validated_before():
    dp = DataPlane(None)
    a = _sig({"x": (types_pb2.DT_FLOAT, [-1, 2])})
    b = _sig({"y": (types_pb2.DT_INT64, [-1]), "z": (types_pb2.DT_STRING, None)})
    good_a = {"x": np.zeros((3, 2), np.float32)}
    good_b = {"y": np.zeros(3, np.int64), "z": np.array([[b"s"]], dtype=object)}
    for _ in range(3):  # alternate: each answer is its own signature's, first time or cached
        dp.validate(a, good_a)
        dp.validate(b, good_b)
        assert "Missing but required: {x}" in _error(dp, a, good_b)
        assert "Sent extra: {x}" in _error(dp, b, {**good_b, **good_a})
        assert "expected shape [None, 2] but got [3, 3]" in _error(
            dp, a, {"x": np.zeros((3, 3), np.float32)}
        )
        assert "Expects arg[0] (y) to be int64 but float is provided" in _error(
            dp, b, {"y": np.zeros(3, np.float32), "z": good_b["z"]}
        )
        assert "not finite" in _error(dp, a, {"x": np.array([[np.inf, 0]], np.float32)})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("path") / "taxi"
    sm.build_model(base / "1")
    proc = sm.ServerProcess("--model_name=taxi", f"--model_base_path={base}").wait_ready()
    yield proc
    proc.stop()


EXAMPLE_B64 = base64.b64encode(sm.make_example(sm.SAMPLE_ROW)).decode()


@pytest.mark.parametrize("selector", ["", "/versions/1", "/labels/stable"])
@pytest.mark.parametrize("slash", ["", "/"])
def test_every_route_by_model_version_and_label(server, selector, slash):
    base = f"{server.rest_url}/v1/models/taxi{selector}"
    predict = requests.post(
        f"{base}:predict{slash}", json={"instances": [{"b64": EXAMPLE_B64}]}, timeout=30
    )
    status = requests.get(f"{base}{slash}", timeout=30)
    metadata = requests.get(f"{base}/metadata{slash}", timeout=30)
    if selector.startswith("/labels"):  # no label assigned: TF Serving's error, as JSON
        for r in (predict, status, metadata):
            assert r.status_code in (400, 404) and "error" in r.json(), r.text
        return
    assert predict.status_code == 200 and predict.headers["X-Model-Version"] == "1"
    assert len(predict.json()["predictions"]) == 1
    assert status.json()["model_version_status"][0]["state"] == "AVAILABLE"
    assert "serving_default" in metadata.json()["metadata"]["signature_def"]["signature_def"]
    examples = {"examples": [{"trip_miles": 1.0}]}
    for verb, sig in (("classify", "classification"), ("regress", "regression")):
        r = requests.post(
            f"{base}:{verb}{slash}", json={"signature_name": sig, **examples}, timeout=30
        )
        assert r.status_code in (200, 400), r.text  # the shape: JSON either way
        assert ("results" in r.json()) == (r.status_code == 200)


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/v1/models/taxi:predict", 400),
        ("POST", "/v1/models/taxi", 400),
        ("POST", "/v1/models/taxi:explain", 400),
        ("GET", "/v1/nothing/here", 400),
        ("GET", "/elsewhere", 404),
        ("POST", "/v1/models/taxi/versions/x:predict", 400),
    ],
)
def test_wrong_routes_answer_tf_serving_shaped_json(server, method, path, status):
    r = requests.request(method, server.rest_url + path, data=b"{}", timeout=30)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"}


def _raw_post(server, head_then_body: list[bytes], pause: float) -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as s:
        for i, part in enumerate(head_then_body):
            if i:
                time.sleep(pause)
            s.sendall(part)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
            data.split(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0]
            if b"Content-Length: " in data
            else 1 << 30
        ):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize("split", [False, True], ids=["with-head", "after-head"])
def test_body_with_or_after_the_head_is_read_whole(server, split):
    body = json.dumps({"instances": [{"b64": EXAMPLE_B64}] * 3}).encode()
    head = (
        b"POST /v1/models/taxi:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    )
    parts = [head, body[:10], body[10:]] if split else [head + body]
    status, answer = _raw_post(server, parts, pause=0.3)
    assert status == 200, answer
    assert len(answer["predictions"]) == 3


def test_large_and_chunked_bodies_are_read_whole_and_bounded(tmp_path):
    """Bodies over 256 KiB, or without a Content-Length (chunked), are read chunk by chunk and
    joined off the event loop; a chunked body still cannot exceed --max_body_bytes."""
    base = tmp_path / "taxi"
    sm.build_model(base / "1")
    limit = 2_000_000
    item = json.dumps({"b64": EXAMPLE_B64}).encode()
    body = b'{"instances": [' + b",".join([item] * 2_000) + b"]}"  # ~1.3 MB
    assert 256 * 1024 < len(body) < limit
    server = sm.ServerProcess(
        "--model_name=taxi", f"--model_base_path={base}", f"--max_body_bytes={limit}"
    ).wait_ready()
    url = server.rest_url + "/v1/models/taxi:predict"

    def chunked(data: bytes, size: int = 50_000):
        for i in range(0, len(data), size):
            yield data[i : i + size]

    try:
        for data in (body, chunked(body)):  # with a Content-Length, then chunked
            r = requests.post(url, data=data, timeout=120)
            assert r.status_code == 200, r.text
            assert len(r.json()["predictions"]) == 2_000
        small = b'{"instances": [' + item + b"]}"
        r = requests.post(url, data=chunked(small, 7), timeout=60)  # tiny chunks, no length
        assert r.status_code == 200 and len(r.json()["predictions"]) == 1
        over = b'{"instances": [' + b",".join([item] * 3_500) + b"]}"  # ~2.2 MB, no length
        r = requests.post(url, data=chunked(over), timeout=60)
        assert r.status_code == 413, r.text
        assert set(r.json()) == {"error"} and "too large" in r.json()["error"]
        r = requests.post(url, data=b"{", timeout=30)  # and the server still answers
        assert r.status_code == 400 and "JSON Parse error" in r.json()["error"]
    finally:
        server.stop()
