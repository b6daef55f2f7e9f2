"""REST adapter: TF Serving's /v1 API (api_rest) over aiohttp, translating JSON <-> data plane.

Routing is one regex over the path, as TF Serving's http_rest_api_handler does, so URL edge
cases (labels, versions, verbs after ':') behave the same. Every failure is `{"error": msg}` with
the HTTP status TF Serving maps the canonical code to.
"""

from __future__ import annotations

import logging
import re
import time

import numpy as np
import orjson
from aiohttp import web
from google.protobuf import json_format

from serving import codec
from serving.dataplane import DataPlane
from serving.errors import ServingError, invalid_argument
from serving.metrics import CONTENT_TYPE, Metrics
from serving.repository import State

log = logging.getLogger(__name__)

_MODEL_RE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?/?$"
)
_JSON = "application/json"


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"error": message}), content_type=_JSON)


def _ok(body: object) -> web.Response:
    return web.Response(body=codec.dumps(body), content_type=_JSON)


class RestApi:
    def __init__(self, dataplane: DataPlane, metrics: Metrics, metrics_path: str | None, max_body_bytes: int) -> None:
        self.dp = dataplane
        self.metrics = metrics
        self.metrics_path = metrics_path
        self.max_body_bytes = max_body_bytes

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if self.metrics_path and path == self.metrics_path and request.method == "GET":
            return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})
        if not path.startswith("/v1/"):
            return _error(404, f"Not found: {request.method} {path}")
        started = time.perf_counter()
        m = _MODEL_RE.match(path)
        name = m.group("name") if m else ""
        method = "malformed"
        version_used: int | None = None
        status = "OK"
        try:
            if m is None:
                raise invalid_argument(f"Malformed request: {request.method} {path}")
            version = m.group("version")
            if version is not None:
                if not version.isdigit():
                    raise invalid_argument(f"Failed to convert version: {version} to numeric.")
                version = int(version)
            label = m.group("label")
            verb = m.group("verb")
            if request.method == "GET" and verb is None:
                method = "metadata" if m.group("metadata") else "status"
                if method == "status":
                    return _ok(self._status(name, version, label))
                servable = self.dp.servable(name, version, label)
                version_used = servable.version
                return _ok(self._metadata(servable))
            if request.method == "POST" and verb in ("predict", "classify", "regress"):
                method = verb
                body = await self._json_body(request)
                servable = self.dp.servable(name, version, label)
                version_used = servable.version
                if verb == "predict":
                    return _ok(await self._predict(servable, body))
                return _ok(await self._classify_regress(servable, verb, body))
            raise invalid_argument(f"Malformed request: {request.method} {path}")
        except ServingError as e:
            status = e.code.name
            return _error(e.http_status, e.message)
        except web.HTTPRequestEntityTooLarge as e:
            status = "RESOURCE_EXHAUSTED"
            return _error(413, f"Request body too large: {e.text}")
        except Exception as e:  # noqa: BLE001 - a bug must still answer in TF Serving's shape
            status = "INTERNAL"
            log.exception("REST request failed: %s %s", request.method, path)
            return _error(500, f"Internal error: {type(e).__name__}: {e}")
        finally:
            self.metrics.observe("rest", method, name, version_used, status, started, path)

    async def _json_body(self, request: web.Request) -> dict:
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise web.HTTPRequestEntityTooLarge(
                max_size=self.max_body_bytes, actual_size=request.content_length
            )
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise invalid_argument(f"JSON Parse error: {e}") from None
        if not isinstance(body, dict):
            raise invalid_argument("JSON Parse error: request body must be a JSON object")
        return body

    # ---- status / metadata ---------------------------------------------------------------------
    def _status(self, name: str, version: int | None, label: str | None) -> dict:
        out = []
        for v, st in self.dp.status(name, version, label):
            out.append(
                {
                    "version": str(v),
                    "state": State.Name(st.state),
                    "status": {"error_code": st.error_code.name, "error_message": st.error_message},
                }
            )
        return {"model_version_status": out}

    def _metadata(self, servable) -> dict:
        sigmap = json_format.MessageToDict(
            self.dp.metadata(servable),
            preserving_proto_field_name=True,
            including_default_value_fields=True,
        )
        return {
            "model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
            "metadata": {"signature_def": sigmap},
        }

    # ---- predict -------------------------------------------------------------------------------
    async def _predict(self, servable, body: dict) -> dict:
        sig_name, sig = self.dp.signature(servable, body.get("signature_name", ""))
        has_rows, has_cols = "instances" in body, "inputs" in body
        if has_rows == has_cols:
            raise invalid_argument(
                "Missing 'inputs' or 'instances' key" if not has_rows
                else "Not both of 'instances' and 'inputs' can be specified"
            )
        input_names = sorted(sig.inputs)
        if has_rows:
            inputs = self._rows_to_tensors(body["instances"], sig, input_names)
        else:
            inputs = self._columns_to_tensors(body["inputs"], sig, input_names)
        _, sig, outputs = await self.dp.predict(servable, sig_name, inputs)
        names = sorted(outputs)
        if has_cols:
            if len(names) == 1:
                return {"outputs": codec.ndarray_to_json(outputs[names[0]], names[0])}
            return {"outputs": {k: codec.ndarray_to_json(outputs[k], k) for k in names}}
        if len(names) == 1:
            return {"predictions": codec.ndarray_to_json(outputs[names[0]], names[0])}
        n = {outputs[k].shape[0] if outputs[k].ndim else -1 for k in names}
        if len(n) != 1 or -1 in n:
            raise invalid_argument("Output tensors have inconsistent batch sizes; use the 'inputs' (columnar) format.")
        cols = {k: codec.ndarray_to_json(outputs[k], k) for k in names}
        return {"predictions": [{k: cols[k][i] for k in names} for i in range(n.pop())]}

    @staticmethod
    def _is_named(value: object) -> bool:
        return isinstance(value, dict) and not (len(value) == 1 and "b64" in value)

    def _rows_to_tensors(self, instances: object, sig, input_names: list[str]) -> dict[str, np.ndarray]:
        if not isinstance(instances, list) or not instances:
            raise invalid_argument("'instances' must be a non-empty JSON list")
        named = self._is_named(instances[0])
        if not named:
            if len(input_names) != 1:
                raise invalid_argument(
                    f"The signature has {len(input_names)} inputs ({', '.join(input_names)}); "
                    "each of 'instances' must be a JSON object keyed by input name"
                )
            name = input_names[0]
            return {name: codec.json_to_ndarray(instances, sig.inputs[name].dtype, f"'instances' input {name}")}
        columns: dict[str, list] = {}
        for i, row in enumerate(instances):
            if not self._is_named(row):
                raise invalid_argument(f"Failed to process element: {i} of 'instances' list. Expected a JSON object")
            for key, value in row.items():
                columns.setdefault(key, []).append(value)
        for key, values in columns.items():
            if len(values) != len(instances):
                raise invalid_argument(
                    f"Failed to process 'instances' list: input {key} is missing from some instances"
                )
        return {
            k: codec.json_to_ndarray(v, sig.inputs[k].dtype if k in sig.inputs else codec.DT_STRING, f"'instances' input {k}")
            for k, v in columns.items()
        }

    def _columns_to_tensors(self, inputs: object, sig, input_names: list[str]) -> dict[str, np.ndarray]:
        if self._is_named(inputs):
            return {
                k: codec.json_to_ndarray(v, sig.inputs[k].dtype if k in sig.inputs else codec.DT_STRING, f"'inputs' input {k}")
                for k, v in inputs.items()
            }
        if len(input_names) != 1:
            raise invalid_argument(
                f"The signature has {len(input_names)} inputs; 'inputs' must be a JSON object keyed by input name"
            )
        name = input_names[0]
        return {name: codec.json_to_ndarray(inputs, sig.inputs[name].dtype, f"'inputs' input {name}")}

    # ---- classify / regress --------------------------------------------------------------------
    async def _classify_regress(self, servable, verb: str, body: dict) -> dict:
        examples = body.get("examples")
        if not isinstance(examples, list) or not examples:
            raise invalid_argument("'examples' must be a non-empty JSON list")
        context = codec.json_to_example(body["context"], "'context'") if "context" in body else None
        parsed = [codec.json_to_example(e, f"Failed to process element: {i} of 'examples' list") for i, e in enumerate(examples)]
        serialized = codec.serialize_examples(parsed, context)
        sig_name = body.get("signature_name", "")
        if verb == "regress":
            _, values = await self.dp.regress(servable, sig_name, serialized)
            return {"results": values.tolist()}
        _, classes, scores = await self.dp.classify(servable, sig_name, serialized)
        results = []
        for i in range(len(serialized)):
            k = (scores if scores is not None else classes).shape[1]
            row = []
            for j in range(k):
                label = classes[i, j].decode(errors="replace") if classes is not None else str(j)
                score = float(scores[i, j]) if scores is not None else 0.0
                row.append([label, score])
            results.append(row)
        return {"results": results}

