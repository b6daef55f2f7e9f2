"""Gates that hold (issue 23), against a real `mlops serve` process: the model config rules in
the file watcher and ReloadConfig, readiness when nothing is servable, limits counted before a
body is decoded, float32 validity in every method, and the small protocol cases."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time

import grpc
import pytest
import requests
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from modules import features
from serving import testing as sm
from serving.dataplane import CLASSIFY_METHOD

EXAMPLE = sm.make_example(sm.SAMPLE_ROW)
GOOD = {"instances": [{"b64": base64.b64encode(EXAMPLE).decode()}]}
MAX_ELEMENTS = 1000
POLL = 0.2


class _Strict(tf.Module):
    """A classifier whose tf.Example parsing requires `fare` (no default): a missing feature is
    a TensorFlow error inside the graph."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        fare = tf.io.parse_example(inputs, {"fare": tf.io.FixedLenFeature([], tf.float32)})["fare"]
        p = tf.sigmoid(fare)[:, None]
        classes = tf.tile(tf.constant([["0", "1"]]), [tf.shape(p)[0], 1])
        return {"classes": classes, "scores": tf.concat([1.0 - p, p], axis=1)}


def _config_text(root, models: dict[str, dict[str, int]]) -> str:
    entries = []
    for name, labels in models.items():
        label_text = "".join(
            f' version_labels {{ key: "{k}" value: {v} }}' for k, v in labels.items()
        )
        entries.append(
            f'config {{ name: "{name}" base_path: "{root / name}" model_platform: "tensorflow"'
            f" model_version_policy {{ all {{}} }}{label_text} }}"
        )
    return "model_config_list { " + " ".join(entries) + " }\n"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("gates")
    sm.build_model(root / "taxi" / "1", bias=10.0)
    sm.build_model(root / "other" / "1", bias=10.0)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "saved_model.pb").write_bytes(b"")  # 0 bytes
    strict = _Strict()
    tf.saved_model.save(
        strict,
        str(root / "strict" / "1"),
        signatures={"classification": strict.classify.get_concrete_function()},
    )
    sm._patch_method_names(str(root / "strict" / "1"), {"classification": CLASSIFY_METHOD})
    return root


GOOD_MODELS = {"taxi": {"stable": 1}, "broken": {}, "strict": {}}


@pytest.fixture(scope="module")
def served(root):
    config = root / "models.config"
    config.write_text(_config_text(root, GOOD_MODELS))
    proc = sm.ServerProcess(
        f"--model_config_file={config}",
        f"--model_config_file_poll_wait_seconds={POLL}",
        f"--max_request_elements={MAX_ELEMENTS}",
    ).wait_ready()
    proc.config = config
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def channel(served):
    with grpc.insecure_channel(served.grpc_target) as channel:
        yield channel


def _serves(server, path="/v1/models/taxi:predict") -> None:
    r = requests.post(server.rest_url + path, json=GOOD, timeout=30)
    assert r.status_code == 200 and r.json()["predictions"][0][0] > 0.99, r.text


def _replace_config(path, text: str) -> None:
    """Swap the config file in one rename, as a deploy tool does: write_text truncates first, and a
    poll between the truncate and the write sees an empty file (rejected for another reason)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _watcher_verdicts(server) -> tuple[int, int]:
    """(applied, rejected) config file changes so far, from the server's log."""
    text = server.log_all()
    return text.count("Applied model config file"), text.count("Rejected model config file")


# ---- 1. the config rules, in the file watcher and in ReloadConfig -------------------------------
BAD_CONFIGS = {
    "empty-file": ("", "names no model"),
    "no-model": ("model_config_list { }\n", "names no model"),
    "path-like-name": (
        lambda root: _config_text(root, {"taxi": {}}).replace('"taxi"', '"../taxi"', 1),
        "invalid model name",
    ),
    "label-to-missing-version": (
        lambda root: _config_text(root, {"taxi": {"stable": 7}}),
        "not currently available",
    ),
    "huge-label": (
        lambda root: _config_text(root, {"taxi": {"x" * 5000: 1}}),
        "invalid version label",
    ),
    "label-with-space": (
        lambda root: _config_text(root, {"taxi": {"a b": 1}}),
        "invalid version label",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_config_watcher_refuses_a_bad_config_and_keeps_serving(served, root, case):
    text, needle = BAD_CONFIGS[case]
    applied, rejected = _watcher_verdicts(served)
    _replace_config(served.config, text(root) if callable(text) else text)
    try:
        deadline = time.time() + 30
        while _watcher_verdicts(served) == (applied, rejected) and time.time() < deadline:
            time.sleep(POLL)
        assert _watcher_verdicts(served) == (applied, rejected + 1), served.log()[-600:]
        last = [line for line in served.log_all().splitlines() if "Rejected model config" in line]
        assert needle in last[-1]
        _serves(served)
        _serves(served, "/v1/models/taxi/labels/stable:predict")
    finally:
        before = _watcher_verdicts(served)
        _replace_config(served.config, _config_text(root, GOOD_MODELS))
        deadline = time.time() + 30
        while _watcher_verdicts(served) == before and time.time() < deadline:
            time.sleep(POLL)


def _reload(channel, root, models: dict[str, dict[str, int]], name_override=None):
    request = model_management_pb2.ReloadConfigRequest()
    for name, labels in models.items():
        entry = request.config.model_config_list.config.add(
            name=name_override if name_override is not None else name,
            base_path=str(root / name),
            model_platform="tensorflow",
        )
        entry.model_version_policy.all.SetInParent()
        for k, v in labels.items():
            entry.version_labels[k] = v
    return model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
        request, timeout=60
    )


@pytest.mark.parametrize(
    "models,name,code,needle",
    [
        ({}, None, grpc.StatusCode.INVALID_ARGUMENT, "names no model"),
        ({"taxi": {}}, "", grpc.StatusCode.INVALID_ARGUMENT, "model name is empty"),
        ({"taxi": {}}, "a/b", grpc.StatusCode.INVALID_ARGUMENT, "invalid model name"),
        ({"taxi": {"stable": 99}}, None, grpc.StatusCode.FAILED_PRECONDITION, "not currently"),
        ({"taxi": {"y" * 65: 1}}, None, grpc.StatusCode.INVALID_ARGUMENT, "invalid version label"),
    ],
    ids=["empty", "empty-name", "path-name", "label-to-missing-version", "65-char-label"],
)
def test_reload_config_refuses_with_a_status_and_keeps_serving(
    served, root, channel, models, name, code, needle
):
    with pytest.raises(grpc.RpcError) as e:
        _reload(channel, root, models, name)
    assert e.value.code() == code and needle in e.value.details()
    _serves(served)
    _serves(served, "/v1/models/taxi/labels/stable:predict")


def test_reload_config_accepts_a_good_config(served, root, channel):
    assert _reload(channel, root, GOOD_MODELS).status.error_code == 0
    _serves(served, "/v1/models/taxi/labels/stable:predict")


# ---- 2. readiness ----------------------------------------------------------------------------
def test_status_is_unavailable_when_no_version_is_servable(served, channel):
    r = requests.get(served.rest_url + "/v1/models/broken", timeout=10)
    assert r.status_code == 503, r.text
    assert "no servable version" in r.json()["error"]
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    with pytest.raises(grpc.RpcError) as e:
        stub.GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "broken"}), timeout=10
        )
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert requests.get(served.rest_url + "/v1/models/taxi", timeout=10).status_code == 200


def test_empty_saved_model_pb_is_a_clear_error_state(served):
    body = requests.get(served.rest_url + "/v1/models/broken/versions/1", timeout=10).json()
    (status,) = body["model_version_status"]
    assert status["state"] == "END"
    message = status["status"]["error_message"]
    assert "IndexError" not in message and "0 bytes" in message and "saved_model.pb" in message


# ---- 3. memory over load/unload cycles -----------------------------------------------------------
CYCLES = 100
CYCLE_GROWTH_MIB = 60  # before the fix: ~10 MiB per cycle with one request per load


@pytest.mark.slow  # a soak: 100 loads and unloads (about a minute)
def test_no_rss_growth_over_load_unload_cycles(served, root, channel):
    """A model loaded, asked once and unloaded 100 times: after the first cycles (TF's one-off
    set-up) resident memory stays flat; an unloaded version's functions are not kept alive."""
    with_other = {**GOOD_MODELS, "other": {}}
    rss = []
    try:
        for i in range(CYCLES):
            _reload(channel, root, with_other)
            _serves(served, "/v1/models/other:predict")
            _reload(channel, root, GOOD_MODELS)
            if i in (9, CYCLES - 1):
                rss.append(served.rss_bytes() >> 20)
    finally:
        _reload(channel, root, GOOD_MODELS)
    print(f"\nserver RSS after cycle 10: {rss[0]} MiB, after cycle {CYCLES}: {rss[1]} MiB")
    assert rss[1] - rss[0] < CYCLE_GROWTH_MIB, rss
    r = requests.post(served.rest_url + "/v1/models/other:predict", json=GOOD, timeout=30)
    assert r.status_code == 404


# ---- 4. limits before work -----------------------------------------------------------------------
def _rss_mib(server) -> dict[str, int]:
    """The server's resident memory now (VmRSS) and at its peak so far (VmHWM), in MiB."""
    out = {}
    with open(f"/proc/{server.proc.pid}/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(line.split()[1]) // 1024
    return out


# A refused body may cost its own bytes and the scan's chunks, not the objects it describes
# (parsing the 300k examples below whole cost ~+100 MiB; as tf.Examples, hundreds more).
REFUSED_BODY_GROWTH_MIB = 50


@pytest.mark.parametrize(
    "method,key,body",
    [
        (
            "classify",
            "examples",
            {"signature_name": "classification", "examples": [{"fare": 7.25}]},
        ),
        ("predict", "instances", {"instances": [{"b64": "AAAA"}]}),
        ("predict", "inputs", {"signature_name": "serving_raw", "inputs": {"fare": [7.25]}}),
    ],
)
def test_over_limit_body_is_refused_before_it_is_parsed(served, method, key, body):
    n = 300 * MAX_ELEMENTS
    if key == "inputs":
        body = {**body, "inputs": {"fare": [7.25] * n, "trip_miles": [1.5] * n}}
    else:
        body = {**body, key: body[key] * n}
    data = json.dumps(body).encode()
    _serves(served)
    before = _rss_mib(served)
    r = requests.post(f"{served.rest_url}/v1/models/taxi:{method}", data=data, timeout=120)
    after = _rss_mib(served)
    assert r.status_code == 400 and "--max_request_elements" in r.json()["error"], r.text
    assert r.json()["error"].startswith(f"'{key}': at least "), r.text
    print(f"\n{method} over the limit: RSS {before} -> {after} MiB")
    assert after["VmRSS"] - before["VmRSS"] < REFUSED_BODY_GROWTH_MIB
    assert after["VmHWM"] - before["VmHWM"] < REFUSED_BODY_GROWTH_MIB
    _serves(served)


def test_a_large_body_within_the_limit_is_still_served(served):
    """The byte-level count lets a large body under the limit through to the real parser."""
    pad = " " * (512 * 1024)  # over the size from which bodies are counted before parsing
    data = json.dumps(GOOD).encode().replace(b"[", b"[" + pad.encode(), 1)
    r = requests.post(served.rest_url + "/v1/models/taxi:predict", data=data, timeout=30)
    assert r.status_code == 200 and r.json()["predictions"][0][0] > 0.99, r.text


def test_inputs_are_counted_together_before_any_is_converted(served):
    cols = {k: [sm.SAMPLE_ROW[k]] * (MAX_ELEMENTS // 8) for k in features.RAW_FEATURE_KEYS}
    body = {"signature_name": "serving_raw", "inputs": cols}
    r = requests.post(served.rest_url + "/v1/models/taxi:predict", json=body, timeout=30)
    assert r.status_code == 400 and "--max_request_elements" in r.json()["error"]


# ---- 5. small protocol cases ------------------------------------------------------------------
def test_grpc_undecodable_request_is_invalid_argument(served, channel):
    for method in ("PredictionService/Predict", "PredictionService/Classify"):
        call = channel.unary_unary(f"/tensorflow.serving.{method}")
        with pytest.raises(grpc.RpcError) as e:
            call(b"\xff\xff\xff\xff", timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
        assert "Could not parse" in e.value.details()
    _serves(served)


@pytest.mark.parametrize(
    "method,path",
    [("GET", "/nope"), ("POST", "/monitoring/prometheus/metrics"), ("GET", "/v1/x/y")],
)
def test_unknown_paths_answer_in_tf_serving_shape(served, method, path):
    r = requests.request(method, served.rest_url + path, timeout=10)
    assert 400 <= r.status_code < 500 and r.headers["Content-Type"] == "application/json"
    assert set(r.json()) == {"error"}


def _post_with_number(server, path: str, body: dict, number: str) -> requests.Response:
    """POST `body` with the JSON number literal `number` where the body holds -12345.5 (1e400
    has no Python float that JSON encoders write)."""
    text = json.dumps(body).replace("-12345.5", number)
    headers = {"Content-Type": "application/json"}
    return requests.post(server.rest_url + path, data=text, headers=headers, timeout=30)


@pytest.mark.parametrize("number", ["1e50", "-1e39", "3.5e38"])
@pytest.mark.parametrize("verb", ["classify", "regress"])
def test_classify_and_regress_refuse_non_finite_floats_as_predict_does(served, verb, number):
    signature = {"classify": "classification", "regress": "regression"}[verb]
    body = {"signature_name": signature, "examples": [{**sm.SAMPLE_ROW, "fare": -12345.5}]}
    r = _post_with_number(served, f"/v1/models/taxi:{verb}", body, number)
    assert r.status_code == 400 and "is not finite in float32" in r.json()["error"], r.text
    cols = {k: [sm.SAMPLE_ROW[k]] for k in features.RAW_FEATURE_KEYS}
    raw = {"signature_name": "serving_raw", "inputs": {**cols, "fare": [-12345.5]}}
    p = _post_with_number(served, "/v1/models/taxi:predict", raw, number)
    assert p.status_code == 400
    problem = r.json()["error"].rsplit(": ", 1)[1]
    assert p.json()["error"].endswith(problem)


@pytest.mark.parametrize("verb", ["classify", "regress", "predict"])
def test_numbers_beyond_double_are_refused_alike_by_every_method(served, verb):
    body = {"signature_name": "serving_raw", "inputs": {"fare": [-12345.5]}}
    if verb != "predict":
        signature = {"classify": "classification", "regress": "regression"}[verb]
        body = {"signature_name": signature, "examples": [{"fare": -12345.5}]}
    r = _post_with_number(served, f"/v1/models/taxi:{verb}", body, "1e400")
    assert r.status_code == 400 and "infinity" in r.json()["error"], r.text


def test_grpc_classify_refuses_a_nan_feature(served, channel):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "taxi"
    request.model_spec.signature_name = "classification"
    example = example_pb2.Example.FromString(EXAMPLE)
    example.features.feature["fare"].float_list.value[:] = [float("nan")]
    request.input.example_list.examples.add().CopyFrom(example)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as e:
        stub.Classify(request, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "fare" in e.value.details() and "NaN" in e.value.details()


def test_raw_rows_without_signature_name_are_told_about_serving_raw(served):
    body = {"instances": [{k: sm.SAMPLE_ROW[k] for k in features.RAW_FEATURE_KEYS}]}
    r = requests.post(served.rest_url + "/v1/models/taxi:predict", json=body, timeout=30)
    assert r.status_code == 400 and '"signature_name": "serving_raw"' in r.json()["error"]


def test_classify_missing_required_feature_is_one_line(served):
    body = {"signature_name": "classification", "examples": [{"trip_miles": 1.0}]}
    r = requests.post(served.rest_url + "/v1/models/strict:classify", json=body, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert "fare" in error and "\n" not in error and "[[" not in error, error


def _ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_grpc_host_ipv6_literal_binds(root):
    proc = sm.ServerProcess(
        "--model_name=taxi", f"--model_base_path={root / 'taxi'}", "--grpc_host=::1"
    ).wait_ready()
    try:
        with grpc.insecure_channel(f"[::1]:{proc.grpc_port}") as ch:
            stub = model_service_pb2_grpc.ModelServiceStub(ch)
            status = stub.GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "taxi"}),
                timeout=30,
            )
        assert status.model_version_status[0].version == 1
    finally:
        proc.stop()


def test_unbindable_grpc_host_fails_before_loading_in_one_line(root):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlops.cli",
            "serve",
            "--model_name=taxi",
            f"--model_base_path={root / 'taxi'}",
            "--grpc_host=192.0.2.1",  # TEST-NET-1: never a local address
            f"--port={sm.free_port()}",
            f"--rest_api_port={sm.free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "Loading servable" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert "cannot bind the gRPC address 192.0.2.1" in last and "Traceback" not in out.stderr
