"""Version lifecycle on a live server: hot swap under load, a corrupt version, config reload."""

from __future__ import annotations

import base64
import os
import shutil
import threading
import time

import grpc
import requests
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests import serving_models as sm

EXAMPLE = sm.make_example(sm.SAMPLE_ROW)
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


def _wait(predicate, timeout=30.0, what=""):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _push(base, version: int, bias: float, staging) -> None:
    """Pusher-style atomic publish: build elsewhere, then rename into the base path."""
    tmp = sm.build_model(staging / f"v{version}", bias=bias)
    os.rename(tmp, base / str(version))


def test_hot_swap_under_load_corrupt_version_and_reload(tmp_path):
    base = tmp_path / "taxi"
    staging = tmp_path / "staging"
    sm.build_model(base / "1", bias=-10.0)
    server = sm.ServerProcess(
        "--model_name=taxi",
        f"--model_base_path={base}",
        "--file_system_poll_wait_seconds=0.2",
        "--enable_batching",
    ).wait_ready()
    channel = grpc.insecure_channel(server.grpc_target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    try:
        # -- a client loops requests over both protocols while version 2 appears ------------------
        stop = threading.Event()
        seen: dict[str, set] = {"grpc": set(), "rest": set()}
        failures: list[str] = []
        counts = {"grpc": 0, "rest": 0}

        def grpc_loop():
            req = predict_pb2.PredictRequest()
            req.model_spec.name = "taxi"
            req.inputs["examples"].CopyFrom(tf.make_tensor_proto([EXAMPLE], dtype=tf.string))
            while not stop.is_set():
                try:
                    resp = stub.Predict(req, timeout=10)
                    seen["grpc"].add(resp.model_spec.version.value)
                    counts["grpc"] += 1
                except grpc.RpcError as e:
                    failures.append(f"grpc {e.code()} {e.details()}")

        def rest_loop():
            session = requests.Session()
            body = {"instances": [{"b64": base64.b64encode(EXAMPLE).decode()}]}
            while not stop.is_set():
                r = session.post(server.rest_url + "/v1/models/taxi:predict", json=body, timeout=10)
                if r.status_code != 200:
                    failures.append(f"rest {r.status_code} {r.text}")
                else:
                    p = r.json()["predictions"][0][0]
                    seen["rest"].add(2 if p > 0.5 else 1)
                    counts["rest"] += 1

        threads = [threading.Thread(target=f) for f in (grpc_loop, grpc_loop, rest_loop)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        _push(base, 2, 10.0, staging)
        _wait(lambda: 2 in seen["grpc"] and 2 in seen["rest"], what="version 2 to serve")
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        assert failures == []
        assert seen["grpc"] == {1, 2} and counts["grpc"] > 20 and counts["rest"] > 10

        status = models.GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "taxi"}), timeout=10
        )
        states = {s.version: s.state for s in status.model_version_status}
        assert states == {2: AVAILABLE, 1: END}  # latest policy unloaded version 1

        # -- a corrupt version 3: reported in status, version 2 keeps serving --------------------
        (base / "3").mkdir()
        (base / "3" / "saved_model.pb").write_bytes(b"this is not a SavedModel")

        def v3_failed():
            body = requests.get(server.rest_url + "/v1/models/taxi/versions/3", timeout=10).json()
            st = body.get("model_version_status", [{}])[0]
            return st.get("state") == "END" and st["status"]["error_code"] != "OK"

        _wait(v3_failed, what="version 3 to fail")
        body = requests.get(server.rest_url + "/v1/models/taxi/versions/3", timeout=10).json()
        assert "version 3" in body["model_version_status"][0]["status"]["error_message"]
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "taxi"
        req.inputs["examples"].CopyFrom(tf.make_tensor_proto([EXAMPLE], dtype=tf.string))
        assert stub.Predict(req, timeout=10).model_spec.version.value == 2

        # -- fixing the directory (a real model under the same number) is picked up --------------
        shutil.rmtree(base / "3")
        _push(base, 3, -10.0, staging)
        _wait(
            lambda: stub.Predict(req, timeout=10).model_spec.version.value == 3,
            what="version 3 to load",
        )

        # -- HandleReloadConfigRequest adds a model with a label ---------------------------------
        other = tmp_path / "other"
        sm.build_model(other / "5", bias=10.0)
        reload = model_management_pb2.ReloadConfigRequest()
        for name, path in (("taxi", base), ("other", other)):
            cfg = reload.config.model_config_list.config.add(
                name=name, base_path=str(path), model_platform="tensorflow"
            )
            if name == "other":
                cfg.version_labels["stable"] = 5
        assert models.HandleReloadConfigRequest(reload, timeout=60).status.error_code == 0
        req.model_spec.name = "other"
        req.model_spec.version_label = "stable"
        resp = stub.Predict(req, timeout=10)
        assert resp.model_spec.name == "other" and resp.model_spec.version.value == 5
    finally:
        channel.close()
        server.stop()
