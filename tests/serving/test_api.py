"""Wire-level tests of the REST and gRPC APIs against a real `mlops serve` process.

One server per module: two models from a ModelServerConfig file (versions, labels, policies),
queried with plain HTTP and the official tensorflow-serving-api stubs.
"""

from __future__ import annotations

import base64
import json

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from modules import features
from tests import serving_models as sm
from tests.paths import PROJECT_ROOT

MAX_BODY = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    sm.build_model(root / "taxi" / "1", bias=-10.0)
    sm.build_model(root / "taxi" / "2", bias=10.0)
    sm.build_model(root / "other" / "7", bias=10.0)
    config = root / "models.config"
    config.write_text(
        f"""
model_config_list {{
  config {{
    name: "taxi"
    base_path: "{root / "taxi"}"
    model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
  config {{
    name: "other"
    base_path: "other"
    model_platform: "tensorflow"
  }}
}}
"""
    )
    proc = sm.ServerProcess(
        f"--model_config_file={config}", "--enable_batching", f"--max_body_bytes={MAX_BODY}"
    ).wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.grpc_target)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def model_stub(server):
    channel = grpc.insecure_channel(server.grpc_target)
    yield model_service_pb2_grpc.ModelServiceStub(channel)
    channel.close()


EXAMPLE = sm.make_example(sm.SAMPLE_ROW)
B64 = base64.b64encode(EXAMPLE).decode()


def rest(server, method: str, path: str, body: object = None, raw: bytes | None = None):
    r = requests.request(method, server.rest_url + path, json=body, data=raw, timeout=30)
    return r.status_code, r.json()


# ---- REST: status and metadata ------------------------------------------------------------------
def test_rest_status_lists_all_policy_versions(server):
    code, body = rest(server, "GET", "/v1/models/taxi")
    assert code == 200
    versions = {s["version"]: s for s in body["model_version_status"]}
    assert set(versions) == {"1", "2"}
    assert versions["2"]["state"] == "AVAILABLE"
    assert versions["2"]["status"] == {"error_code": "OK", "error_message": ""}


def test_rest_status_by_version_and_label(server):
    assert (
        rest(server, "GET", "/v1/models/taxi/versions/1")[1]["model_version_status"][0]["version"]
        == "1"
    )
    assert (
        rest(server, "GET", "/v1/models/taxi/labels/canary")[1]["model_version_status"][0][
            "version"
        ]
        == "2"
    )
    # The model with the default (latest) policy serves its only version from a relative base_path.
    assert rest(server, "GET", "/v1/models/other")[1]["model_version_status"][0]["version"] == "7"


def test_rest_metadata_has_signature_defs(server):
    code, body = rest(server, "GET", "/v1/models/taxi/versions/1/metadata")
    assert code == 200
    assert body["model_spec"] == {"name": "taxi", "signature_name": "", "version": "1"}
    sigs = body["metadata"]["signature_def"]["signature_def"]
    assert set(sigs) >= {
        "serving_default",
        "serving_raw",
        "transform_features",
        "classification",
        "regression",
    }
    assert sigs["serving_default"]["inputs"]["examples"]["dtype"] == "DT_STRING"
    assert sigs["serving_default"]["outputs"]["probabilities"]["dtype"] == "DT_FLOAT"
    assert sigs["classification"]["method_name"] == "tensorflow/serving/classify"
    assert set(sigs["serving_raw"]["inputs"]) == set(features.RAW_FEATURE_KEYS)


# ---- REST: predict ------------------------------------------------------------------------------
def test_rest_predict_row_format_b64_examples(server):
    code, body = rest(server, "POST", "/v1/models/taxi:predict", {"instances": [{"b64": B64}] * 3})
    assert code == 200
    preds = np.array(body["predictions"])
    assert preds.shape == (3, 1)
    assert np.all(preds > 0.99)  # latest = version 2 (bias +10)


def test_rest_predict_columnar_and_versions_and_labels(server):
    lo = rest(
        server,
        "POST",
        "/v1/models/taxi/versions/1:predict",
        {"inputs": {"examples": [{"b64": B64}]}},
    )
    hi = rest(server, "POST", "/v1/models/taxi/labels/canary:predict", {"inputs": [{"b64": B64}]})
    stable = rest(
        server, "POST", "/v1/models/taxi/labels/stable:predict", {"instances": [{"b64": B64}]}
    )
    assert lo[0] == hi[0] == stable[0] == 200
    assert lo[1]["outputs"][0][0] < 0.01 and hi[1]["outputs"][0][0] > 0.99
    assert stable[1]["predictions"][0][0] == pytest.approx(lo[1]["outputs"][0][0])


def test_rest_predict_matches_in_process_model(server, tmp_path):
    model = tf.saved_model.load(sm.build_model(tmp_path / "m", bias=10.0))
    want = model.signatures["serving_default"](examples=tf.constant([EXAMPLE]))[
        "probabilities"
    ].numpy()
    _, body = rest(
        server, "POST", "/v1/models/taxi/versions/2:predict", {"instances": [{"b64": B64}]}
    )
    np.testing.assert_allclose(body["predictions"], want, rtol=1e-6)


def _raw_row(row):
    return {k: row[k] for k in features.RAW_FEATURE_KEYS}


def test_rest_predict_raw_features_rows_and_columns(server):
    rows = [_raw_row(sm.SAMPLE_ROW), {**_raw_row(sm.SAMPLE_ROW), "fare": 100.0}]
    code, by_rows = rest(
        server,
        "POST",
        "/v1/models/taxi/versions/1:predict",
        {"signature_name": "serving_raw", "instances": rows},
    )
    assert code == 200, by_rows
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    code, by_cols = rest(
        server,
        "POST",
        "/v1/models/taxi/versions/1:predict",
        {"signature_name": "serving_raw", "inputs": cols},
    )
    assert code == 200, by_cols
    np.testing.assert_allclose(by_rows["predictions"], by_cols["outputs"], rtol=1e-6)
    assert by_rows["predictions"][1][0] > by_rows["predictions"][0][0]  # higher fare, higher score
    # The raw signature and the tf.Example signature agree on the same row.
    _, ex = rest(
        server, "POST", "/v1/models/taxi/versions/1:predict", {"instances": [{"b64": B64}]}
    )
    assert by_rows["predictions"][0][0] == pytest.approx(ex["predictions"][0][0], rel=1e-5)


def test_rest_predict_multi_output_rows_are_objects(server):
    code, body = rest(
        server,
        "POST",
        "/v1/models/taxi:predict",
        {"signature_name": "classification", "instances": [{"b64": B64}]},
    )
    assert code == 200
    row = body["predictions"][0]
    assert row["classes"] == ["0", "1"] and len(row["scores"]) == 2


def test_rest_classify_and_regress(server):
    example = {k: v for k, v in sm.SAMPLE_ROW.items()}
    example = {k: (float(v) if features.raw_dtype(k) == "float" else v) for k, v in example.items()}
    code, body = rest(
        server,
        "POST",
        "/v1/models/taxi/versions/2:classify",
        {"signature_name": "classification", "examples": [example, example]},
    )
    assert code == 200, body
    assert len(body["results"]) == 2
    (label0, s0), (label1, s1) = body["results"][0]
    assert (label0, label1) == ("0", "1") and s1 > 0.99 and s0 + s1 == pytest.approx(1.0)
    code, body = rest(
        server,
        "POST",
        "/v1/models/taxi/versions/2:regress",
        {"signature_name": "regression", "examples": [example]},
    )
    assert code == 200 and body["results"][0] > 0.99


def test_rest_classify_on_predict_signature_is_tf_serving_error(server):
    code, body = rest(server, "POST", "/v1/models/taxi:classify", {"examples": [{"fare": 1.0}]})
    assert code == 400
    assert "tensorflow/serving/classify" in body["error"]


# ---- REST: errors -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method,path,body,raw,status,needle",
    [
        ("POST", "/v1/models/taxi:predict", None, b"{not json", 400, "JSON Parse error"),
        (
            "POST",
            "/v1/models/taxi:predict",
            {"instances": ["not-b64-but-plain"] * 1, "signature_name": "serving_raw"},
            None,
            400,
            "fare",
        ),
        (
            "POST",
            "/v1/models/taxi:predict",
            {"signature_name": "serving_raw", "inputs": {"fare": [1.0]}},
            None,
            400,
            "Missing but required",
        ),
        (
            "POST",
            "/v1/models/taxi:predict",
            {
                "signature_name": "serving_raw",
                "inputs": {**{k: [0] for k in features.RAW_FEATURE_KEYS}, "fare": ["abc"]},
            },
            None,
            400,
            "not of expected type: float",
        ),
        ("POST", "/v1/models/taxi:predict", {"instances": [{"b64": "###"}]}, None, 400, "base64"),
        (
            "POST",
            "/v1/models/taxi:predict",
            {"instances": [{"b64": base64.b64encode(b"garbage").decode()}]},
            None,
            400,
            "",
        ),
        (
            "POST",
            "/v1/models/taxi:predict",
            {"instances": [{"b64": B64}], "inputs": [{"b64": B64}]},
            None,
            400,
            "Not both",
        ),
        (
            "POST",
            "/v1/models/taxi:predict",
            {"signature_name": "nope", "instances": [{"b64": B64}]},
            None,
            400,
            'Serving signature key "nope" not found',
        ),
        (
            "POST",
            "/v1/models/nope:predict",
            {"instances": [{"b64": B64}]},
            None,
            404,
            "Servable not found for request: Latest(nope)",
        ),
        (
            "POST",
            "/v1/models/taxi/versions/9:predict",
            {"instances": [{"b64": B64}]},
            None,
            404,
            "Specific(taxi, 9)",
        ),
        (
            "POST",
            "/v1/models/taxi/labels/nope:predict",
            {"instances": [{"b64": B64}]},
            None,
            400,
            "Unrecognized servable version label: nope",
        ),
        ("GET", "/v1/models/nope", None, None, 404, "Could not find any versions of model nope"),
        (
            "GET",
            "/v1/models/taxi/versions/9",
            None,
            None,
            404,
            "Could not find version 9 of model taxi",
        ),
        ("GET", "/v1/models/taxi/metadata/extra", None, None, 400, "Malformed request"),
        ("POST", "/v1/models/taxi:explode", {}, None, 400, "Malformed request"),
        (
            "POST",
            "/v1/models/taxi:predict",
            None,
            b'{"instances": ["' + b"x" * (MAX_BODY + 10) + b'"]}',
            413,
            "too large",
        ),
    ],
    ids=[
        "malformed-json",
        "wrong-shape-for-multi-input",
        "missing-inputs",
        "wrong-dtype",
        "bad-b64",
        "garbage-example",
        "rows-and-columns",
        "unknown-signature",
        "unknown-model",
        "unknown-version",
        "unknown-label",
        "status-unknown-model",
        "status-unknown-version",
        "bad-path",
        "bad-verb",
        "oversized",
    ],
)
def test_rest_errors_have_tf_serving_shape_and_server_keeps_serving(
    server, method, path, body, raw, status, needle
):
    headers = {"Content-Type": "application/json"}
    r = requests.request(
        method, server.rest_url + path, json=body, data=raw, headers=headers, timeout=30
    )
    assert r.status_code == status, r.text
    payload = r.json()
    assert set(payload) == {"error"} and needle in payload["error"]
    code, ok = rest(server, "POST", "/v1/models/taxi:predict", {"instances": [{"b64": B64}]})
    assert code == 200 and len(ok["predictions"]) == 1


# ---- gRPC ---------------------------------------------------------------------------------------
def _predict_request(model="taxi", signature="", version=None, label=None):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.model_spec.signature_name = signature
    if version is not None:
        req.model_spec.version.value = version
    if label is not None:
        req.model_spec.version_label = label
    return req


def test_grpc_predict_serialized_examples(stub):
    req = _predict_request()
    req.inputs["examples"].CopyFrom(tf.make_tensor_proto([EXAMPLE, EXAMPLE], dtype=tf.string))
    resp = stub.Predict(req, timeout=30)
    assert resp.model_spec.name == "taxi" and resp.model_spec.version.value == 2
    assert resp.model_spec.signature_name == "serving_default"
    probs = tf.make_ndarray(resp.outputs["probabilities"])
    assert probs.shape == (2, 1) and np.all(probs > 0.99)


def test_grpc_predict_raw_features_by_label(stub):
    req = _predict_request(signature="serving_raw", label="stable")
    for key in features.RAW_FEATURE_KEYS:
        kind = features.raw_dtype(key)
        dtype = {"bytes": tf.string, "int64": tf.int64, "float": tf.float32}[kind]
        req.inputs[key].CopyFrom(tf.make_tensor_proto([sm.SAMPLE_ROW[key]], dtype=dtype))
    resp = stub.Predict(req, timeout=30)
    assert resp.model_spec.version.value == 1
    assert tf.make_ndarray(resp.outputs["probabilities"])[0, 0] < 0.01


def test_grpc_predict_output_filter(stub):
    req = _predict_request(signature="classification")
    req.inputs["inputs"].CopyFrom(tf.make_tensor_proto([EXAMPLE], dtype=tf.string))
    req.output_filter.append("scores")
    resp = stub.Predict(req, timeout=30)
    assert list(resp.outputs) == ["scores"]


def test_grpc_metadata(stub):
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = "taxi"
    req.model_spec.version.value = 1
    req.metadata_field.append("signature_def")
    resp = stub.GetModelMetadata(req, timeout=30)
    sigmap = get_model_metadata_pb2.SignatureDefMap()
    assert resp.metadata["signature_def"].Unpack(sigmap)
    assert resp.model_spec.version.value == 1
    assert sigmap.signature_def["regression"].method_name == "tensorflow/serving/regress"
    assert "examples" in sigmap.signature_def["serving_default"].inputs


def test_grpc_model_status(model_stub):
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "taxi"
    resp = model_stub.GetModelStatus(req, timeout=30)
    states = {s.version: s.state for s in resp.model_version_status}
    assert states == {
        1: get_model_status_pb2.ModelVersionStatus.AVAILABLE,
        2: get_model_status_pb2.ModelVersionStatus.AVAILABLE,
    }


def _input_examples(msg, n=2):
    for _ in range(n):
        msg.input.example_list.examples.add().ParseFromString(EXAMPLE)


def test_grpc_classify_regress_multi_inference(stub):
    creq = classification_pb2.ClassificationRequest()
    creq.model_spec.name = "taxi"
    creq.model_spec.signature_name = "classification"
    _input_examples(creq)
    cresp = stub.Classify(creq, timeout=30)
    assert len(cresp.result.classifications) == 2
    assert [c.label for c in cresp.result.classifications[0].classes] == ["0", "1"]
    assert cresp.result.classifications[0].classes[1].score > 0.99

    rreq = regression_pb2.RegressionRequest()
    rreq.model_spec.name = "taxi"
    rreq.model_spec.signature_name = "regression"
    _input_examples(rreq, 3)
    rresp = stub.Regress(rreq, timeout=30)
    assert len(rresp.result.regressions) == 3 and rresp.result.regressions[0].value > 0.99

    mreq = inference_pb2.MultiInferenceRequest()
    for sig, method in (
        ("classification", "tensorflow/serving/classify"),
        ("regression", "tensorflow/serving/regress"),
    ):
        task = mreq.tasks.add(method_name=method)
        task.model_spec.name = "taxi"
        task.model_spec.signature_name = sig
    _input_examples(mreq)
    mresp = stub.MultiInference(mreq, timeout=30)
    assert len(mresp.results) == 2
    assert len(mresp.results[0].classification_result.classifications) == 2
    assert len(mresp.results[1].regression_result.regressions) == 2


def test_grpc_errors_use_tf_serving_status_codes(stub):
    def code_of(call, req):
        with pytest.raises(grpc.RpcError) as err:
            call(req, timeout=30)
        return err.value.code(), err.value.details()

    good = tf.make_tensor_proto([EXAMPLE], dtype=tf.string)
    req = _predict_request(model="nope")
    req.inputs["examples"].CopyFrom(good)
    assert code_of(stub.Predict, req)[0] == grpc.StatusCode.NOT_FOUND
    req = _predict_request(version=42)
    req.inputs["examples"].CopyFrom(good)
    assert code_of(stub.Predict, req) == (
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Specific(taxi, 42)",
    )
    req = _predict_request(signature="nope")
    req.inputs["examples"].CopyFrom(good)
    assert code_of(stub.Predict, req)[0] == grpc.StatusCode.FAILED_PRECONDITION
    req = _predict_request()
    req.inputs["examples"].CopyFrom(tf.make_tensor_proto([1.0], dtype=tf.float32))
    code, details = code_of(stub.Predict, req)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "string" in details
    req = _predict_request()
    req.inputs["wrong_name"].CopyFrom(good)
    assert code_of(stub.Predict, req)[0] == grpc.StatusCode.INVALID_ARGUMENT
    req = _predict_request()
    req.inputs["examples"].CopyFrom(tf.make_tensor_proto([b"not an example"], dtype=tf.string))
    assert code_of(stub.Predict, req)[0] == grpc.StatusCode.INVALID_ARGUMENT
    creq = classification_pb2.ClassificationRequest()
    creq.model_spec.name = "taxi"  # serving_default is a predict signature
    _input_examples(creq)
    assert code_of(stub.Classify, creq)[0] == grpc.StatusCode.INVALID_ARGUMENT
    # ...and the server keeps answering.
    req = _predict_request()
    req.inputs["examples"].CopyFrom(good)
    assert stub.Predict(req, timeout=30).model_spec.version.value == 2


# ---- monitoring ---------------------------------------------------------------------------------
def test_prometheus_metrics_count_requests_by_model_and_version(server, stub):
    req = _predict_request(version=1)
    req.inputs["examples"].CopyFrom(tf.make_tensor_proto([EXAMPLE], dtype=tf.string))
    stub.Predict(req, timeout=30)
    text = requests.get(server.rest_url + "/monitoring/prometheus/metrics", timeout=10).text
    assert (
        'tfserving_request_count_total{method="predict",model_name="taxi",protocol="grpc",status="OK",version="1"}'
        in text
    )
    assert 'status="NOT_FOUND"' in text
    assert "tfserving_request_latency_seconds_bucket" in text
    assert 'tfserving_model_version_state{model_name="taxi",version="2"} 30.0' in text


def test_config_file_text_proto_round_trip():
    from serving.config import BatchingOptions, parse_model_config

    cfg = parse_model_config(
        'model_config_list { config { name: "a" base_path: "rel" '
        "model_version_policy { specific { versions: 3 versions: 4 } } } }",
        base_dir="/base",
    )
    assert cfg.model_config_list.config[0].base_path == "/base/rel"
    opts = BatchingOptions.from_text_proto(
        "max_batch_size { value: 64 } batch_timeout_micros { value: 500 } num_batch_threads "
        "{ value: 2 }"
    )
    assert (opts.max_batch_size, opts.batch_timeout_micros, opts.num_batch_threads) == (64, 500, 2)
    assert json.dumps(text_format.MessageToString(cfg))  # still a valid ModelServerConfig


# ---- dynamic batching ---------------------------------------------------------------------------
def _batch_counts(server) -> tuple[float, float, float]:
    """(model calls, examples in them, predicted scores recorded), summed over every series."""
    text = requests.get(server.rest_url + "/monitoring/prometheus/metrics", timeout=10).text
    count = total = scores = 0.0
    for line in text.splitlines():
        if line.startswith("tfserving_batch_size_count"):
            count += float(line.rsplit(" ", 1)[1])
        elif line.startswith("tfserving_batch_size_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("tfserving_prediction_score_count"):
            scores += float(line.rsplit(" ", 1)[1])
    return count, total, scores


def test_concurrent_requests_are_batched_and_results_stay_with_their_request(server, tmp_path):
    import asyncio

    model = tf.saved_model.load(sm.build_model(tmp_path / "m", bias=-10.0))
    rows = [{**sm.SAMPLE_ROW, "fare": float(i), "trip_seconds": 10 * i} for i in range(64)]
    examples = [sm.make_example(r) for r in rows]
    want = model.signatures["serving_default"](examples=tf.constant(examples))[
        "probabilities"
    ].numpy()
    before = _batch_counts(server)

    async def fire():
        async with grpc.aio.insecure_channel(server.grpc_target) as channel:
            astub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            reqs = []
            for ex in examples:
                req = _predict_request(version=1)
                req.inputs["examples"].CopyFrom(tf.make_tensor_proto([ex], dtype=tf.string))
                reqs.append(req)
            bad = _predict_request(version=1)
            bad.inputs["examples"].CopyFrom(tf.make_tensor_proto([b"garbage"], dtype=tf.string))
            calls = [astub.Predict(r, timeout=30) for r in reqs] + [astub.Predict(bad, timeout=30)]
            return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(fire())
    # The malformed request fails alone; its 64 neighbours (possibly in its batch) all succeed.
    assert isinstance(results[-1], grpc.aio.AioRpcError)
    assert results[-1].code() == grpc.StatusCode.INVALID_ARGUMENT
    got = np.concatenate([tf.make_ndarray(r.outputs["probabilities"]) for r in results[:-1]])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    count, total, scores = (a - b for a, b in zip(_batch_counts(server), before, strict=True))
    assert total >= 64
    assert count < 64, f"{count} model calls for {total} examples: nothing was batched"
    # Scores are recorded once per model call (in the batch thread), for the 64 rows the model
    # answered: none twice when a failed merged call is retried request by request, none for
    # the malformed request.
    assert scores == 64


def test_deploy_configs_are_valid_tf_serving_text_protos():
    """deploy/serving is what production runs; a typo there should fail CI, not a rollout."""

    import yaml

    from serving.config import (
        BatchingOptions,
        load_model_config_file,
        load_monitoring_path,
        parse_model_config,
    )

    deploy = PROJECT_ROOT / "deploy" / "serving"
    assert (
        load_model_config_file(str(deploy / "models.config")).model_config_list.config[0].name
        == "taxi"
    )
    assert (
        BatchingOptions.from_text_proto((deploy / "batching.config").read_text()).max_batch_size
        == 256
    )
    assert (
        load_monitoring_path(str(deploy / "monitoring.config")) == "/monitoring/prometheus/metrics"
    )
    docs = {d["kind"]: d for d in yaml.safe_load_all((deploy / "kubernetes.yaml").read_text())}
    assert set(docs) == {"ConfigMap", "PersistentVolumeClaim", "Deployment", "Service"}
    cfg = parse_model_config(docs["ConfigMap"]["data"]["models.config"])
    assert cfg.model_config_list.config[0].base_path == "/models/taxi"
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("tensorflow/serving:")
    compose = yaml.safe_load((deploy / "docker-compose.yml").read_text())
    assert "../../serving_model:/models:ro" in compose["services"]["tfserving"]["volumes"]
