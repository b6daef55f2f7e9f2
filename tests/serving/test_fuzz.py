"""Fuzz the model server's input boundary (issue 10 part 5) against a real `mlops serve` process.

Hypothesis generates REST JSON bodies and URLs, and gRPC PredictRequests with arbitrary dtypes,
declared shapes and values; and hostile values (issue 23): numbers that are not finite in float32
(NaN, infinities, overflow, literals beyond double) in every method, and labels of any text and
length in ReloadConfig. Whatever arrives: no 5xx, no INTERNAL/UNKNOWN status, a good request
still answers after each case, and the server's memory (VmRSS from /proc) stays bounded.
Derandomized (fixed seed per test), so CI runs the same cases every time.
"""

from __future__ import annotations

import base64

import grpc
import orjson
import pytest
import requests
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from model_layout.config_rules import LABEL_PATTERN
from modules import features
from modules.values import FLOAT32_MAX
from serving import testing as sm

EXAMPLE = sm.make_example(sm.SAMPLE_ROW)
GOOD = {"instances": [{"b64": base64.b64encode(EXAMPLE).decode()}]}
FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
RSS_GROWTH_LIMIT = 400 << 20
SERVER_ERROR_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    sm.build_model(root / "taxi" / "1", bias=10.0)
    proc = sm.ServerProcess(
        "--model_name=taxi",
        f"--model_base_path={root / 'taxi'}",
        "--enable_batching",
        "--log_level=WARNING",
    ).wait_ready()
    session = requests.Session()
    for _ in range(20):  # warm up, so RSS growth measures the fuzzing, not first-call set-up
        session.post(proc.rest_url + "/v1/models/taxi:predict", json=GOOD, timeout=30)
    proc.session = session
    proc.rss_start = proc.rss_bytes()
    proc.base_path = str(root / "taxi")
    proc.channel = grpc.insecure_channel(proc.grpc_target)
    yield proc
    proc.channel.close()
    proc.stop()


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.grpc_target)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


def _good_request_answers(server) -> None:
    r = server.session.post(server.rest_url + "/v1/models/taxi:predict", json=GOOD, timeout=30)
    assert r.status_code == 200 and r.json()["predictions"][0][0] > 0.99


# ---- REST ----------------------------------------------------------------------------------------
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_b64 = st.binary(max_size=64).map(lambda b: {"b64": base64.b64encode(b).decode()})
_feature_value = _json | _b64 | st.sampled_from([2**64 - 1, 1e19, -(2**63) - 1, 1e39, "Cash"])
_named_row = st.dictionaries(
    st.sampled_from([*features.RAW_FEATURE_KEYS, "examples", "x"]), _feature_value, max_size=6
)
_tensor_value = _json | st.lists(_b64, max_size=3) | st.lists(_named_row, max_size=3)
_signature = (
    st.sampled_from(
        [
            "",
            "serving_default",
            "serving_raw",
            "classification",
            "regression",
            "transform_features",
            "nope",
        ]
    )
    | _json
)
_body = st.fixed_dictionaries(
    {},
    optional={
        "signature_name": _signature,
        "instances": _tensor_value,
        "inputs": _tensor_value
        | st.dictionaries(st.sampled_from(features.RAW_FEATURE_KEYS), _json),
        "examples": st.lists(_named_row, max_size=3) | _json,
        "context": _named_row | _json,
    },
)
_path = st.tuples(
    st.sampled_from(["taxi", "nope", "t%C3%A4xi"]),
    st.sampled_from(["", "/versions/1", "/versions/2", "/versions/²", "/versions/-1", "/labels/x"]),
    st.sampled_from([":predict", ":classify", ":regress", "/metadata", ":x", ""]),
).map(lambda t: "/v1/models/" + "".join(t))


@FUZZ
@given(path=_path, body=_body | _json)
def test_rest_fuzz_never_5xx(server, path, body):
    r = server.session.post(server.rest_url + path, json=body, timeout=30)
    assert r.status_code < 500, (path, body, r.status_code, r.text[:300])
    assert r.headers["Content-Type"].startswith("application/json")
    payload = r.json()
    assert r.status_code == 200 or set(payload) == {"error"}
    _good_request_answers(server)


@FUZZ
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_rest_fuzz_raw_bodies(server, raw):
    r = server.session.post(server.rest_url + "/v1/models/taxi:predict", data=raw, timeout=30)
    assert r.status_code < 500 and "error" in r.json()
    _good_request_answers(server)


# ---- gRPC ----------------------------------------------------------------------------------------
_dtypes = st.sampled_from(sorted(types_pb2.DataType.values())) | st.integers(-5, 400)
_dims = st.lists(st.integers(-3, 2**45) | st.integers(0, 5), max_size=6) | st.lists(
    st.just(1), min_size=30, max_size=40
)


@st.composite
def _tensor_protos(draw):
    dtype = draw(_dtypes)
    tp = tensor_pb2.TensorProto()
    try:
        tp.dtype = dtype
    except ValueError:
        tp.dtype = types_pb2.DT_FLOAT
    tp.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in draw(_dims))
    tp.tensor_shape.unknown_rank = draw(st.booleans()) and draw(st.booleans())
    kind = draw(st.sampled_from(["string", "float", "int64", "int", "content", "none"]))
    if kind == "string":
        tp.string_val.extend(draw(st.lists(st.binary(max_size=32) | st.just(EXAMPLE), max_size=4)))
    elif kind == "float":
        tp.float_val.extend(draw(st.lists(st.floats(width=32), max_size=4)))
    elif kind == "int64":
        tp.int64_val.extend(draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4)))
    elif kind == "int":
        tp.int_val.extend(draw(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4)))
    elif kind == "content":
        tp.tensor_content = draw(st.binary(max_size=64))
    return tp


_input_names = st.sampled_from(["examples", *features.RAW_FEATURE_KEYS, "inputs", ""])


@FUZZ
@given(
    inputs=st.dictionaries(_input_names, _tensor_protos(), max_size=4),
    signature=st.sampled_from(["", "serving_raw", "classification", "transform_features", "nope"]),
    version=st.none() | st.integers(-1, 3),
    output_filter=st.lists(st.sampled_from(["probabilities", "x", ""]), max_size=2),
)
def test_grpc_fuzz_never_internal(server, stub, inputs, signature, version, output_filter):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "taxi"
    req.model_spec.signature_name = signature
    if version is not None:
        req.model_spec.version.value = version
    req.output_filter.extend(output_filter)
    for k, v in inputs.items():
        req.inputs[k].CopyFrom(v)
    try:
        stub.Predict(req, timeout=30)
    except grpc.RpcError as e:
        assert e.code() not in SERVER_ERROR_CODES, (e.code(), e.details(), req)
    _good_request_answers(server)


# ---- hostile values (issue 23): non-finite, float32 overflow, beyond double, huge labels ---------
_NUMBER_SLOT = "-12345.5"  # replaced by a JSON number literal Python cannot write
_hostile_number = (
    st.floats(min_value=FLOAT32_MAX * 1.0001, max_value=1.7e308).map(repr)
    | st.floats(min_value=FLOAT32_MAX * 1.0001, max_value=1.7e308).map(lambda v: repr(-v))
    | st.integers(39, 9999).map(lambda e: f"1e{e}")
    | st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
)
_fine_number = st.floats(-FLOAT32_MAX, FLOAT32_MAX, width=32).map(repr)


def _body_with(verb: str, feature: str) -> dict:
    if verb == "predict":
        cols = {k: [sm.SAMPLE_ROW[k]] for k in features.RAW_FEATURE_KEYS}
        return {"signature_name": "serving_raw", "inputs": {**cols, feature: [-12345.5]}}
    signature = {"classify": "classification", "regress": "regression"}[verb]
    return {"signature_name": signature, "examples": [{**sm.SAMPLE_ROW, feature: -12345.5}]}


@FUZZ
@given(
    verb=st.sampled_from(["predict", "classify", "regress"]),
    feature=st.sampled_from(
        [k for k in features.RAW_FEATURE_KEYS if features.raw_dtype(k) == "float"]
    ),
    number=_hostile_number | _fine_number,
)
def test_rest_hostile_numbers_are_refused_by_every_method(server, verb, feature, number):
    """A float feature value that is not finite in float32 is a 400 in every method; any finite
    float32 is answered (modules/values.py is the one rule)."""
    text = orjson.dumps(_body_with(verb, feature)).decode().replace(_NUMBER_SLOT, number, 1)
    r = server.session.post(
        server.rest_url + f"/v1/models/taxi:{verb}",
        data=text,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    value = float(number)
    finite = abs(value) <= FLOAT32_MAX  # NaN compares False
    assert r.status_code == (200 if finite else 400), (verb, number, r.text[:300])
    _good_request_answers(server)


@FUZZ
@given(
    value=st.sampled_from([float("nan"), float("inf"), float("-inf")])
    | st.floats(width=32, allow_nan=False, allow_infinity=False),
    kind=st.sampled_from(["predict", "classify"]),
)
def test_grpc_non_finite_floats_are_invalid_argument(server, stub, value, kind):
    finite = value == value and abs(value) <= FLOAT32_MAX
    try:
        if kind == "predict":
            req = predict_pb2.PredictRequest()
            req.model_spec.name, req.model_spec.signature_name = "taxi", "serving_raw"
            for k in features.RAW_FEATURE_KEYS:
                v = value if k == "fare" else sm.SAMPLE_ROW[k]
                dtype = {"int64": tf.int64, "float": tf.float32, "bytes": tf.string}[
                    features.raw_dtype(k)
                ]
                req.inputs[k].CopyFrom(tf.make_tensor_proto([v], dtype=dtype))
            stub.Predict(req, timeout=30)
        else:
            req = classification_pb2.ClassificationRequest()
            req.model_spec.name, req.model_spec.signature_name = "taxi", "classification"
            ex = example_pb2.Example.FromString(EXAMPLE)
            ex.features.feature["fare"].float_list.value[:] = [value]
            req.input.example_list.examples.add().CopyFrom(ex)
            stub.Classify(req, timeout=30)
        assert finite, f"{kind} accepted {value!r}"
    except grpc.RpcError as e:
        assert not finite and e.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.code(), e.details())


@FUZZ
@given(label=st.text(max_size=80) | st.text(alphabet="ab-_9", min_size=60, max_size=5000))
def test_reload_config_takes_a_label_only_when_it_follows_the_rule(server, label):
    """ReloadConfig with one label on version 1: accepted exactly when the label matches
    [A-Za-z0-9_-]{1,64} (model_layout/config_rules.py); a refused one changes nothing."""
    req = model_management_pb2.ReloadConfigRequest()
    entry = req.config.model_config_list.config.add(
        name="taxi", base_path=server.base_path, model_platform="tensorflow"
    )
    entry.version_labels[label] = 1
    models = model_service_pb2_grpc.ModelServiceStub(server.channel)
    try:
        models.HandleReloadConfigRequest(req, timeout=60)
        accepted = True
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
        accepted = False
    assert accepted == bool(LABEL_PATTERN.fullmatch(label)), label
    r = server.session.get(server.rest_url + "/v1/models/taxi", timeout=30)
    assert r.status_code == 200
    _good_request_answers(server)


def test_memory_stays_bounded_after_fuzzing_and_amplification(server, stub):
    """Runs last in this module: RSS after every case above plus the 450-byte amplification."""
    before = server.rss_bytes()
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "taxi"
    tp = req.inputs["examples"]
    tp.dtype = types_pb2.DT_STRING
    tp.tensor_shape.dim.add(size=200_000)
    tp.string_val.append(
        sm.make_example({k: sm.SAMPLE_ROW[k] for k in ("fare", "trip_miles", "company")})
    )
    assert req.ByteSize() <= 450
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(req, timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = server.rss_bytes()
    print(
        f"\nserver RSS: start {server.rss_start / 2**20:.0f} MiB, after fuzzing "
        f"{before / 2**20:.0f} MiB, "
        f"after the amplification request {after / 2**20:.0f} MiB"
    )
    assert after - before < 50 << 20
    assert after - server.rss_start < RSS_GROWTH_LIMIT
    _good_request_answers(server)
