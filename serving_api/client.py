"""Python client for the model server (or real TF Serving): raw rows in, predictions out.

Rows are encoded with the dataset spec (modules/dataset_spec.py; default: the active dataset's,
modules/features.py), the same single source of feature names and kinds the pipeline trains
with, either as serialized tf.Examples for `serving_default` or as one typed tensor per raw
feature for `serving_raw`. Both protocols return the same shape of result: one dict of output
name -> value per row.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import sys
from collections.abc import Iterable, Mapping
from typing import TextIO

from modules import features
from modules.dataset_spec import DatasetSpec
from serving_api.examples import row_to_example

_RAW_DEFAULTS = {"int64": 0, "float": 0.0, "bytes": ""}


# ---- rows ----------------------------------------------------------------------------------
def read_rows(source: str | TextIO, fmt: str | None = None) -> list[dict[str, object]]:
    """Rows from a CSV (header row) or JSON (a list of objects, one object, or one object per
    line) file; '-' reads stdin, whose format is taken from its first character."""
    if isinstance(source, str):
        if fmt is None and source != "-":  # stdin: decided by its first character below
            fmt = "json" if source.endswith((".json", ".jsonl")) else "csv"
        stream = sys.stdin if source == "-" else open(source, newline="")  # noqa: SIM115
    else:
        stream = source
    try:
        text = stream.read()
    finally:
        if stream is not sys.stdin and isinstance(source, str):
            stream.close()
    if fmt is None:
        fmt = "json" if text.lstrip().startswith(("[", "{")) else "csv"
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(text)))
    text = text.strip()
    try:
        whole = json.loads(text)
    except ValueError:  # not one JSON document: JSON lines
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return whole if isinstance(whole, list) else [whole]


def _typed(key: str, value: object, spec: DatasetSpec | None = None) -> object:
    """CSV gives strings; turn them into the feature's kind (None when missing)."""
    if value is None or value == "":
        return None
    kind = (spec or features.SPEC).raw_dtype(key)
    if kind == "bytes":
        return str(value)
    if kind == "int64":
        return int(float(value))
    return float(value)


def encode_example(row: Mapping[str, object], spec: DatasetSpec | None = None) -> bytes:
    """Serialize a raw row as a tf.Example; missing values are left out for the model to default."""
    return row_to_example(row, spec=spec)


def raw_columns(
    rows: Iterable[Mapping[str, object]], spec: DatasetSpec | None = None
) -> dict[str, list]:
    """One typed column per raw feature for `serving_raw`; a tensor cannot have holes, so missing
    values take the feature kind's zero value."""
    spec = spec or features.SPEC
    rows = list(rows)
    cols: dict[str, list] = {}
    for key in spec.raw_feature_keys:
        default = _RAW_DEFAULTS[spec.raw_dtype(key)]
        cols[key] = [
            v if (v := _typed(key, r.get(key), spec)) is not None else default for r in rows
        ]
    return cols


# ---- clients -------------------------------------------------------------------------------
class RestClient:
    """TF Serving REST API (`/v1/models/...`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8501, timeout: float = 30.0) -> None:
        import requests

        self.base = f"http://{host}:{port}/v1/models"
        self.session = requests.Session()
        self.timeout = timeout
        self._output_names: dict[tuple, list[str]] = {}

    def _url(self, model: str, version: int | None, label: str | None) -> str:
        url = f"{self.base}/{model}"
        if version is not None:
            url += f"/versions/{version}"
        elif label:
            url += f"/labels/{label}"
        return url

    def _call(self, method: str, url: str, body: object = None) -> dict:
        import requests

        try:
            r = self.session.request(method, url, json=body, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout):
            raise ServerUnreachable(self.base.split("/v1/")[0]) from None
        try:
            payload = r.json()
        except ValueError:
            raise ServingClientError(
                r.status_code, f"not a TF Serving answer: {r.text[:200]!r}"
            ) from None
        if r.status_code != 200:
            raise ServingClientError(r.status_code, payload.get("error", r.text))
        return payload

    def metadata(self, model: str, version: int | None = None, label: str | None = None) -> dict:
        return self._call("GET", self._url(model, version, label) + "/metadata")

    def status(self, model: str, version: int | None = None, label: str | None = None) -> dict:
        return self._call("GET", self._url(model, version, label))

    def predict(
        self,
        model: str,
        inputs: Mapping[str, list],
        signature_name: str = "serving_default",
        version: int | None = None,
        label: str | None = None,
    ) -> list[dict[str, object]]:
        """Columnar request; bytes values go as {"b64": ...}. Returns one dict per row."""
        body_inputs = {
            k: [{"b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v for v in vals]
            for k, vals in inputs.items()
        }
        url = self._url(model, version, label)
        payload = self._call(
            "POST", url + ":predict", {"signature_name": signature_name, "inputs": body_inputs}
        )
        outputs = payload["outputs"]
        if not isinstance(outputs, dict):  # single output: TF Serving drops the name
            key = (url, signature_name)
            if key not in self._output_names:
                sigs = self.metadata(model, version, label)["metadata"]["signature_def"][
                    "signature_def"
                ]
                self._output_names[key] = sorted(sigs[signature_name]["outputs"])
            outputs = {self._output_names[key][0]: outputs}
        n = len(next(iter(outputs.values())))
        return [{k: v[i] for k, v in outputs.items()} for i in range(n)]


class GrpcClient:
    """TF Serving gRPC PredictionService via the official tensorflow-serving-api stubs."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8500,
        timeout: float = 30.0,
        spec: DatasetSpec | None = None,
    ) -> None:
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        # Types numeric raw-feature columns (int64 or float32) in Predict requests.
        self.spec = spec or features.SPEC
        self.target = f"{host}:{port}"
        self.channel = grpc.insecure_channel(self.target)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.timeout = timeout

    def predict(
        self,
        model: str,
        inputs: Mapping[str, list],
        signature_name: str = "serving_default",
        version: int | None = None,
        label: str | None = None,
    ) -> list[dict[str, object]]:
        import grpc
        import numpy as np
        import tensorflow as tf  # the serving API's protos import it anyway
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature_name
        if version is not None:
            request.model_spec.version.value = version
        elif label:
            request.model_spec.version_label = label
        for k, vals in inputs.items():
            if vals and isinstance(vals[0], bytes | str):
                arr = np.empty(len(vals), dtype=object)
                arr[:] = [v if isinstance(v, bytes) else v.encode() for v in vals]
            else:
                kind = self.spec.raw_dtype(k) if k in self.spec.kinds else "float"
                arr = np.asarray(vals, dtype=np.int64 if kind == "int64" else np.float32)
            request.inputs[k].CopyFrom(tf.make_tensor_proto(arr))
        try:
            response = self.stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                raise ServerUnreachable(f"{self.target} ({e.details()})") from None
            raise ServingClientError(e.code().name, e.details()) from None
        outputs = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
        n = len(next(iter(outputs.values())))
        return [
            {
                k: _as_rest_json(v[i].tolist(), k) if v.dtype == object else v[i].tolist()
                for k, v in outputs.items()
            }
            for i in range(n)
        ]

    def close(self) -> None:
        self.channel.close()


class ServingClientError(Exception):
    """The server answered with an error. `message` is the server's text as sent; str() is one
    line (the first non-blank one): a TF runtime error carries a multi-line graph dump
    (`[[{{node ...}}]]`) after the sentence that says what is wrong, and callers that print the
    error (`mlops predict`, the web app) promise one line."""

    def __init__(self, code: object, message: str) -> None:
        self.code = code
        self.message = message
        self.summary = one_line(message)
        super().__init__(f"{code}: {self.summary}")


def one_line(text: str) -> str:
    """The first non-blank line of `text`, stripped ('' for none)."""
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


class ServerUnreachable(Exception):
    """Nothing answers at the server's address (connection refused, DNS, timeout)."""


def predict_rows(
    client: RestClient | GrpcClient,
    model: str,
    rows: list[Mapping[str, object]],
    encoding: str = "examples",
    signature_name: str | None = None,
    version: int | None = None,
    label: str | None = None,
    batch_size: int = 100,
    spec: DatasetSpec | None = None,
) -> list[dict[str, object]]:
    """Encode raw rows per `spec` (default: the active dataset's) and predict them in batches;
    `encoding` is "examples" or "raw"."""
    if encoding not in ("examples", "raw"):
        raise ValueError(f"encoding must be 'examples' or 'raw', not {encoding!r}")
    signature = signature_name or ("serving_default" if encoding == "examples" else "serving_raw")
    results: list[dict[str, object]] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        if encoding == "examples":
            inputs = {"examples": [encode_example(r, spec) for r in chunk]}
        else:
            inputs = raw_columns(chunk, spec)
        results.extend(client.predict(model, inputs, signature, version, label))
    return results


def _as_rest_json(value: object, name: str) -> object:
    """A gRPC string output as TF Serving's REST API writes it: text, or {"b64": ...} for an
    output named `*_bytes`, so both clients return the same rows."""
    if isinstance(value, list):
        return [_as_rest_json(v, name) for v in value]
    if isinstance(value, bytes):
        if name.endswith("_bytes"):
            return {"b64": base64.b64encode(value).decode()}
        return value.decode("utf-8", "replace")
    return value
