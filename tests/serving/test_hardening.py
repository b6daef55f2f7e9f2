"""Hostile and careless use of a real `mlops serve` process (issue 10): request limits, input
errors that must be 4xx / INVALID_ARGUMENT, slow and broken clients, half-copied versions,
model management, TLS, bind addresses, and request logging of accepted requests only."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import threading
import time

import grpc
import numpy as np
import pytest
import requests
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from modules import features
from serving import testing as sm
from serving.grpc_service import is_loopback_peer

EXAMPLE = sm.make_example(sm.SAMPLE_ROW)
B64 = base64.b64encode(EXAMPLE).decode()
GOOD = {"instances": [{"b64": B64}]}
MAX_ELEMENTS = 1000
TIMEOUT = 2.0  # the test server's keep-alive and body timeouts


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("hardening")
    sm.build_model(root / "taxi" / "1", bias=10.0)
    proc = sm.ServerProcess(
        "--model_name=taxi",
        f"--model_base_path={root / 'taxi'}",
        f"--max_request_elements={MAX_ELEMENTS}",
        f"--request_log_dir={root / 'requests'}",
        f"--http_keepalive_timeout_seconds={TIMEOUT}",
        f"--http_body_timeout_seconds={TIMEOUT}",
        "--model_management=off",
    ).wait_ready()
    proc.request_log_dir = root / "requests"
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def stub(served):
    channel = grpc.insecure_channel(served.grpc_target)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


def _still_serving(server) -> None:
    r = requests.post(server.rest_url + "/v1/models/taxi:predict", json=GOOD, timeout=30)
    assert r.status_code == 200 and r.json()["predictions"][0][0] > 0.99


def _nested(depth: int, leaf: object) -> object:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def _raw_columns(**override) -> dict:
    cols = {k: [sm.SAMPLE_ROW[k]] for k in features.RAW_FEATURE_KEYS}
    cols.update(override)
    return {"signature_name": "serving_raw", "inputs": cols}


# ---- REST: every input error is a 4xx in TF Serving's shape --------------------------------------
REST_CASES = {
    "signature-name-list": (
        "/v1/models/taxi:predict",
        {**GOOD, "signature_name": ["a"]},
        "signature_name",
    ),
    "signature-name-object": (
        "/v1/models/taxi:predict",
        {**GOOD, "signature_name": {"a": 1}},
        "signature_name",
    ),
    "non-ascii-digit-version": (
        "/v1/models/taxi/versions/²:predict",
        GOOD,
        "Failed to convert version",
    ),
    "strings-990-deep": (
        "/v1/models/taxi:predict",
        b'{"instances": ' + b"[" * 990 + b'"x"' + b"]" * 990 + b"}",
        "nested deeper",
    ),
    "40-dims": (
        "/v1/models/taxi:predict",
        {"inputs": {"examples": _nested(40, B64)}},
        "nested deeper",
    ),
    "classify-int-2^64-1": (
        "/v1/models/taxi:classify",
        {"signature_name": "classification", "examples": [{"trip_seconds": 2**64 - 1}]},
        "out of range for int64",
    ),
    "raw-int64-2^64-1": (
        "/v1/models/taxi:predict",
        _raw_columns(trip_seconds=[2**64 - 1]),
        "out of range",
    ),
    "raw-int64-1e19": (
        "/v1/models/taxi:predict",
        _raw_columns(trip_seconds=[1e19]),
        "out of range",
    ),
    "raw-int64-huge-python-int": (
        "/v1/models/taxi:predict",
        _raw_columns(trip_seconds=[2**70]),
        "out of range",
    ),
    "too-many-instances": (
        "/v1/models/taxi:predict",
        {"instances": [{"b64": B64}] * (MAX_ELEMENTS + 1)},
        "exceed the limit",
    ),
    "too-many-examples": (
        "/v1/models/taxi:classify",
        {"signature_name": "classification", "examples": [{"fare": 1.0}] * (MAX_ELEMENTS + 1)},
        "exceed the limit",
    ),
}


@pytest.mark.parametrize("case", sorted(REST_CASES))
def test_rest_input_errors_are_400_and_server_keeps_serving(served, case):
    path, body, needle = REST_CASES[case]
    if isinstance(body, bytes):
        r = requests.post(served.rest_url + path, data=body, timeout=60)
    else:
        r = requests.post(served.rest_url + path, json=body, timeout=60)
    assert r.status_code == 400, (r.status_code, r.text[:300])
    payload = r.json()
    assert set(payload) == {"error"} and needle in payload["error"], payload
    _still_serving(served)


# ---- gRPC: declared shapes and amplification -----------------------------------------------------
def _tensor(dims: list[int], dtype=types_pb2.DT_STRING, strings=(EXAMPLE,), content: bytes = b""):
    tp = tensor_pb2.TensorProto(dtype=dtype, tensor_content=content)
    tp.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims)
    if dtype == types_pb2.DT_STRING:
        tp.string_val.extend(strings)
    return tp


GRPC_CASES = {
    "amplification-200k-rows-one-string": _tensor([200_000]),
    "dim-2^40": _tensor([2**40]),
    "dim-minus-1": _tensor([-1]),
    "40-dims": _tensor([1] * 40),
    # No elements, but dimensions numpy cannot shape (found by the fuzz test: was INTERNAL).
    "zero-dim-beside-huge-dims": _tensor([0, 444192378, 5191090896], types_pb2.DT_FLOAT, ()),
    "tensor-content-short": _tensor([4], types_pb2.DT_FLOAT, content=b"\0" * 3),
    "unsupported-dtype": _tensor([1], types_pb2.DT_RESOURCE),
}


@pytest.mark.parametrize("case", sorted(GRPC_CASES))
def test_grpc_declared_shapes_are_invalid_argument(served, stub, case):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "taxi"
    req.inputs["examples"].CopyFrom(GRPC_CASES[case])
    assert req.ByteSize() < 1000
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(req, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    _still_serving(served)


def test_grpc_classify_int_out_of_range_cannot_be_sent_but_large_example_count_is_limited(stub):
    creq = classification_pb2.ClassificationRequest()
    creq.model_spec.name = "taxi"
    creq.model_spec.signature_name = "classification"
    ex = creq.input.example_list.examples.add()
    ex.features.feature["fare"].float_list.value.append(1.0)
    for _ in range(MAX_ELEMENTS):
        creq.input.example_list.examples.add().CopyFrom(ex)
    with pytest.raises(grpc.RpcError) as err:
        stub.Classify(creq, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit" in err.value.details()


# ---- request log: only accepted requests ---------------------------------------------------------
def _logged_bytes(log_dir) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in log_dir.iterdir()} if log_dir.exists() else {}


def test_rejected_requests_are_not_logged(served):
    log_dir = served.request_log_dir
    before = _logged_bytes(log_dir)
    bad = [
        {
            "instances": [{"b64": base64.b64encode(b"garbage").decode()}]
        },  # the model's parser refuses
        {"instances": [{"b64": B64}], "signature_name": ["x"]},  # malformed request
        _raw_columns(trip_seconds=[1e19]),  # range check
    ]
    for body in bad:
        assert (
            requests.post(
                served.rest_url + "/v1/models/taxi:predict", json=body, timeout=30
            ).status_code
            == 400
        )
    assert _logged_bytes(log_dir) == before, "a rejected request was logged"
    _still_serving(served)
    assert _logged_bytes(log_dir) != before  # the accepted one was


# ---- slow and broken clients ---------------------------------------------------------------------
def _connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.rest_port), timeout=10)


def _read_response(sock: socket.socket) -> bytes:
    """One HTTP response (by its Content-Length), or b"" when the server closed the connection."""
    out = b""
    while True:
        head, sep, body = out.partition(b"\r\n\r\n")
        if sep:
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            if len(body) >= length:
                return out
        chunk = sock.recv(65536)
        if not chunk:
            return out
        out += chunk


def test_body_shorter_than_content_length_gets_408_json(served):
    with _connect(served) as s:
        s.sendall(
            b"POST /v1/models/taxi:predict HTTP/1.1\r\nHost: x\r\nContent-Type: "
            b"application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"instances": '
        )
        started = time.monotonic()
        response = _read_response(s)
    assert time.monotonic() - started < TIMEOUT + 5
    assert response.startswith(b"HTTP/1.1 408") and b'{"error":' in response, response[:200]
    _still_serving(served)


def test_slowloris_connections_are_closed(served):
    socks = [_connect(served) for _ in range(50)]
    try:
        for s in socks:
            s.sendall(b"POST /v1/models/taxi:predict HTTP/1.1\r\nHost: x\r\n")
        time.sleep(1.0)
        for s in socks:
            s.sendall(b"X-Slow: 1\r\n")  # still trickling header lines
        deadline = time.monotonic() + TIMEOUT + 10
        closed = 0
        for s in socks:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                closed += _read_response(s) == b""
            except ConnectionResetError:
                closed += 1
            except TimeoutError:
                pass
    finally:
        for s in socks:
            s.close()
    assert closed == len(socks)
    _still_serving(served)


def test_client_disconnect_mid_body_is_cancelled_without_traceback(served):
    with _connect(served) as s:
        s.sendall(
            b"POST /v1/models/taxi:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
            + b'{"instances": ["'
            + b"x" * 1000
        )
        time.sleep(0.3)
    time.sleep(1.0)
    text = requests.get(served.rest_url + "/monitoring/prometheus/metrics", timeout=10).text
    assert 'method="predict",model_name="taxi",protocol="rest",status="CANCELLED"' in text
    assert 'protocol="rest",status="INTERNAL"' not in text
    with open(served.log_path, errors="replace") as f:
        assert "Traceback" not in f.read()
    _still_serving(served)


def test_http_parser_errors_are_json(served):
    with _connect(served) as s:
        s.sendall(b"GARBAGE / HTTP/9.9\r\n\x00\x01\r\n\r\n")
        response = _read_response(s)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 400 " in head.split(b"\r\n")[0], head
    assert body.startswith(b'{"error":"Malformed HTTP request'), body
    _still_serving(served)


def test_large_body_does_not_stop_other_requests(tmp_path):
    """Good requests keep being answered while a 64 MiB JSON body is decoded and run (latency
    figures: bench/serving_hostile_bench.py; timings are not asserted in unit tests)."""
    sm.build_model(tmp_path / "taxi" / "1", bias=10.0)
    server = sm.ServerProcess(
        "--model_name=taxi",
        f"--model_base_path={tmp_path / 'taxi'}",
        f"--max_body_bytes={80 << 20}",
        "--max_request_elements=0",
    ).wait_ready()
    try:
        n = (64 << 20) // 12
        big = (
            b'{"signature_name": "serving_default", "instances": ['
            + b",".join([b'"abcdefghij"'] * n)
            + b"]}"
        )
        done = threading.Event()
        big_time = {}

        def send_big():
            t = time.perf_counter()
            requests.post(server.rest_url + "/v1/models/taxi:predict", data=big, timeout=300)
            big_time["s"] = time.perf_counter() - t
            done.set()

        session = requests.Session()
        for _ in range(5):
            session.post(server.rest_url + "/v1/models/taxi:predict", json=GOOD, timeout=30)
        worker = threading.Thread(target=send_big)
        worker.start()
        latencies = []
        while not done.wait(0.02):
            t = time.perf_counter()
            r = session.post(server.rest_url + "/v1/models/taxi:predict", json=GOOD, timeout=60)
            latencies.append(time.perf_counter() - t)
            assert r.status_code == 200
        worker.join()
        worst = max(latencies)
        print(
            f"64 MiB body took {big_time['s']:.2f}s; {len(latencies)} good requests meanwhile, "
            f"median {np.median(latencies) * 1000:.1f} ms, worst {worst * 1000:.1f} ms"
        )
        assert len(latencies) >= 3
    finally:
        server.stop()


# ---- half-copied versions ------------------------------------------------------------------------
def test_version_copied_in_two_steps_is_retried_and_loads(tmp_path):
    base = tmp_path / "taxi"
    sm.build_model(base / "1", bias=-10.0)
    staged = sm.build_model(tmp_path / "staging" / "2", bias=10.0)
    server = sm.ServerProcess(
        "--model_name=taxi",
        f"--model_base_path={base}",
        "--file_system_poll_wait_seconds=0.2",
    ).wait_ready()
    try:
        # step 1: the graph (and assets) only -- a careless `cp` caught half-way
        os.makedirs(base / "2")
        for name in os.listdir(staged):
            if name != "variables":
                src = os.path.join(staged, name)
                (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, base / "2" / name)

        def status_of_2():
            body = requests.get(server.rest_url + "/v1/models/taxi/versions/2", timeout=10).json()
            return body.get("model_version_status", [{}])[0]

        deadline = time.time() + 60
        while (
            time.time() < deadline
            and status_of_2().get("status", {}).get("error_code", "OK") == "OK"
        ):
            time.sleep(0.1)
        assert status_of_2()["state"] == "END", "the half-copied version was not tried"
        r = requests.post(server.rest_url + "/v1/models/taxi:predict", json=GOOD, timeout=30).json()
        assert r["predictions"][0][0] < 0.01  # version 1 (bias -10) keeps serving
        # step 2: the variables arrive a few seconds later
        time.sleep(1.0)
        shutil.copytree(os.path.join(staged, "variables"), base / "2" / "variables")
        deadline = time.time() + 60
        while time.time() < deadline and status_of_2().get("state") != "AVAILABLE":
            time.sleep(0.2)
        assert status_of_2()["state"] == "AVAILABLE"
        r = requests.post(server.rest_url + "/v1/models/taxi:predict", json=GOOD, timeout=30).json()
        assert r["predictions"][0][0] > 0.99  # version 2 (bias +10) now serves
    finally:
        server.stop()


# ---- model management, TLS, bind addresses -------------------------------------------------------
def test_reload_config_is_refused_when_model_management_is_off(served):
    with grpc.insecure_channel(served.grpc_target) as channel:
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        req = model_management_pb2.ReloadConfigRequest()
        c = req.config.model_config_list.config.add(
            name="evil", base_path="/tmp", model_platform="tensorflow"
        )
        assert c.name == "evil"
        with pytest.raises(grpc.RpcError) as err:
            models.HandleReloadConfigRequest(req, timeout=30)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        status = models.GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "taxi"}), timeout=30
        )
        assert (
            status.model_version_status[0].state
            == get_model_status_pb2.ModelVersionStatus.AVAILABLE
        )


def test_loopback_peer_detection():
    assert is_loopback_peer("ipv4:127.0.0.1:5000") and is_loopback_peer("ipv4:127.3.2.1:1")
    assert is_loopback_peer("ipv6:[::1]:5000") and is_loopback_peer("unix:/tmp/s")
    assert not is_loopback_peer("ipv4:10.0.0.7:5000") and not is_loopback_peer(
        "ipv6:[2001:db8::1]:80"
    )
    assert not is_loopback_peer("ipv6:[::ffff:192.168.0.1]:80") and not is_loopback_peer("weird")


def _self_signed(tmp_path):
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    config = tmp_path / "ssl.config"
    config.write_text(
        f"server_key: {key_pem!r}\nserver_cert: {cert_pem!r}\nclient_verify: false\n".replace(
            "'", '"'
        )
    )
    return config, cert_pem


def test_grpc_tls_from_ssl_config_file_and_separate_bind_addresses(tmp_path):
    sm.build_model(tmp_path / "taxi" / "1", bias=10.0)
    config, cert_pem = _self_signed(tmp_path)
    server = sm.ServerProcess(
        "--model_name=taxi",
        f"--model_base_path={tmp_path / 'taxi'}",
        f"--ssl_config_file={config}",
        "--grpc_host=127.0.0.1",
        rest_host="127.0.0.2",
    ).wait_ready()
    try:
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "taxi"
        req.inputs["examples"].CopyFrom(_tensor([1]))
        creds = grpc.ssl_channel_credentials(root_certificates=cert_pem.encode())
        with grpc.secure_channel(f"127.0.0.1:{server.grpc_port}", creds) as channel:
            resp = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                req, timeout=30
            )
            assert resp.outputs["probabilities"].float_val[0] > 0.99
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            with pytest.raises(grpc.RpcError):
                prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=5)
        # REST listens on 127.0.0.2 only; gRPC on 127.0.0.1 only.
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{server.rest_port}/v1/models/taxi", timeout=5)
        assert requests.get(f"{server.rest_url}/v1/models/taxi", timeout=5).status_code == 200
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.2", server.grpc_port), timeout=5).close()
    finally:
        server.stop()


def test_shapes_numpy_cannot_hold_are_invalid_argument_even_without_limits():
    """With --max_request_elements 0 the codec itself turns numpy's refusal into the request's
    error (INVALID_ARGUMENT), not the server's."""
    from serving import codec
    from serving.errors import ServingError
    from serving.limits import UNLIMITED

    for dims in ([0, 444192378, 5191090896], [2**40, 2**40]):
        with pytest.raises(ServingError) as err:
            codec.proto_to_ndarray(_tensor(dims, types_pb2.DT_FLOAT, ()), UNLIMITED)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
