"""REST adapter: TF Serving's /v1 API (api_rest) over aiohttp, translating JSON <-> data plane.

Routing is one regex over the path, as TF Serving's http_rest_api_handler does, so URL edge
cases (labels, versions, verbs after ':') behave the same. Every failure is `{"error": msg}` with
the HTTP status TF Serving maps the canonical code to — including HTTP-parser errors, which
aiohttp would otherwise answer in plain text (see `_JsonErrorHandler`).

Connection hygiene: the keep-alive timeout closes connections that are idle or have not sent a
whole request head in time (slowloris); a body that does not arrive within `body_timeout`
seconds (e.g. shorter than its Content-Length) gets 408; large bodies are decoded in a thread so
one 64 MiB request does not stall every other request on the event loop; a client that hangs up
mid-request is counted as CANCELLED, without a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

import aiohttp
import orjson
from aiohttp import web, web_protocol, web_server
from google.protobuf import json_format

from model_layout import parse_version
from serving import codec
from serving.canary import ROUTING_KEY_HEADER
from serving.dataplane import DataPlane, ModelRef
from serving.errors import ServingError, invalid_argument
from serving.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

_MODEL_RE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?/?$"
)
_JSON = "application/json"
# Which version answered an inference request, and the label that routed it there (if any).
VERSION_HEADER = "X-Model-Version"
LABEL_HEADER = "X-Model-Version-Label"
_OFF_LOOP_BYTES = 256 * 1024  # bodies larger than this are decoded in a worker thread


class _ClientGone(Exception):
    """The client closed the connection before its request was read."""


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"error": message}), content_type=_JSON)


def _ok(body: object) -> web.Response:
    return web.Response(body=codec.dumps(body), content_type=_JSON)


class _JsonErrorHandler(web_protocol.RequestHandler):
    """aiohttp's connection handler, with parser errors in TF Serving's `{"error": ...}` shape
    and logged without a traceback (a malformed request is the client's fault, not ours)."""

    def handle_error(
        self, request, status: int = 500, exc=None, message=None
    ) -> web.StreamResponse:
        self.logger.debug("Bad HTTP request from %s: %s", request.remote, exc)
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already")
        text = message or (getattr(exc, "message", None) or str(exc or "")) or "Bad request"
        resp = _error(status, f"Malformed HTTP request: {text}")
        resp.force_close()
        return resp


class _Server(web_server.Server):
    def __call__(self) -> web_protocol.RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class _AppRunner(web.AppRunner):
    async def _make_server(self) -> web_server.Server:
        server = await super()._make_server()
        server.__class__ = _Server
        return server


class RestApi:
    def __init__(
        self,
        dataplane: DataPlane,
        metrics: Metrics,
        metrics_path: str | None,
        max_body_bytes: int,
        body_timeout: float = 30.0,
    ) -> None:
        self.dp = dataplane
        self.metrics = metrics
        self.metrics_path = metrics_path
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def runner(self, keepalive_timeout: float) -> web.AppRunner:
        """keepalive_timeout also bounds how long a connection may take to send a request head."""
        return _AppRunner(
            self.app(), access_log=None, handle_signals=False, keepalive_timeout=keepalive_timeout
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        answered: list = []  # [(version, label)] once an inference request is routed
        response = await self._handle(request, answered)
        if answered:
            version, label = answered[0]
            response.headers[VERSION_HEADER] = str(version)
            if label:
                response.headers[LABEL_HEADER] = label
        return response

    async def _handle(self, request: web.Request, answered: list) -> web.StreamResponse:
        path = request.path
        if self.metrics_path and path == self.metrics_path and request.method == "GET":
            return web.Response(
                body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE}
            )
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
                parsed = parse_version(version)
                if parsed is None:
                    raise invalid_argument(f"Failed to convert version: {version} to numeric.")
                version = parsed
            label = m.group("label")
            verb = m.group("verb")
            ref = ModelRef(name, version, label)
            # An error before the servable answers is still counted under the version asked for.
            version_used = version
            if request.method == "GET" and verb is None:
                method = "metadata" if m.group("metadata") else "status"
                if method == "status":
                    return _ok(self._status(ref))
                servable, sigmap = self.dp.metadata(ref)
                version_used = servable.version
                return _ok(self._metadata(servable, sigmap))
            if request.method == "POST" and verb in ("predict", "classify", "regress"):
                method = verb
                body, large = await self._json_body(request)
                key = request.headers.get(ROUTING_KEY_HEADER)
                routed, label = self.dp.route(ModelRef(name, version, label, routing_key=key))
                # From here on, metrics and headers name the version that answers, even an error.
                version_used = routed.version
                answered.append((routed.version, label))
                if verb == "predict":
                    servable, out = await self.dp.predict_json(ref, body, large, routed)
                else:
                    servable, out = await self._classify_regress(ref, verb, body, large, routed)
                if large:  # a large request usually has a large answer: encode it off the loop too
                    return web.Response(
                        body=await asyncio.to_thread(codec.dumps, out), content_type=_JSON
                    )
                return _ok(out)
            raise invalid_argument(f"Malformed request: {request.method} {path}")
        except ServingError as e:
            status = e.code.name
            return _error(e.http_status, e.message)
        except web.HTTPRequestEntityTooLarge as e:
            status = "RESOURCE_EXHAUSTED"
            return _error(413, f"Request body too large: {e.text}")
        except TimeoutError:
            status = "DEADLINE_EXCEEDED"
            resp = _error(408, f"Request body not received within {self.body_timeout:g} s")
            resp.force_close()
            return resp
        except (_ClientGone, asyncio.CancelledError):
            status = "CANCELLED"
            raise
        except Exception as e:  # noqa: BLE001 - a bug must still answer in TF Serving's shape
            status = "INTERNAL"
            log.exception("REST request failed: %s %s", request.method, path)
            return _error(500, f"Internal error: {type(e).__name__}: {e}")
        finally:
            self.metrics.observe("rest", method, name, version_used, status, started, path)

    async def _json_body(self, request: web.Request) -> tuple[dict, bool]:
        """(body, whether it is large enough to decode off the event loop)."""
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise web.HTTPRequestEntityTooLarge(
                max_size=self.max_body_bytes, actual_size=request.content_length
            )
        try:
            raw = await asyncio.wait_for(request.read(), self.body_timeout)
        except (ConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as e:
            raise _ClientGone(str(e)) from None
        large = len(raw) > _OFF_LOOP_BYTES
        try:
            body = await asyncio.to_thread(orjson.loads, raw) if large else orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise invalid_argument(f"JSON Parse error: {e}") from None
        if not isinstance(body, dict):
            raise invalid_argument("JSON Parse error: request body must be a JSON object")
        return body, large

    # ---- status / metadata ---------------------------------------------------------------------
    def _status(self, ref: ModelRef) -> dict:
        return {
            "model_version_status": [
                {
                    "version": str(v),
                    "state": st.state_name,
                    "status": {"error_code": st.error_code.name, "error_message": st.error_message},
                }
                for v, st in self.dp.status(ref)
            ]
        }

    @staticmethod
    def _metadata(servable, sigmap) -> dict:
        sigmap = json_format.MessageToDict(
            sigmap, preserving_proto_field_name=True, including_default_value_fields=True
        )
        return {
            "model_spec": {
                "name": servable.name,
                "signature_name": "",
                "version": str(servable.version),
            },
            "metadata": {"signature_def": sigmap},
        }

    # ---- classify / regress: JSON examples -> serialized tf.Examples -> data plane -------------
    async def _classify_regress(
        self, ref: ModelRef, verb: str, body: dict, large: bool, servable=None
    ):
        if large:
            serialized = await asyncio.to_thread(_examples_from_json, body)
        else:
            serialized = _examples_from_json(body)
        ref = ModelRef(ref.name, ref.version, ref.label, body.get("signature_name", ""))
        if verb == "regress":
            result = await self.dp.regress(ref, serialized, servable)
            return result.servable, {"results": result.values}
        result = await self.dp.classify(ref, serialized, servable)
        rows = [
            [
                [label if label is not None else str(j), score if score is not None else 0.0]
                for j, (label, score) in enumerate(row)
            ]
            for row in result.results
        ]
        return result.servable, {"results": rows}


def _examples_from_json(body: dict) -> list[bytes]:
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
        raise invalid_argument("'examples' must be a non-empty JSON list")
    context = codec.json_to_example(body["context"], "'context'") if "context" in body else None
    parsed = [
        codec.json_to_example(e, f"Failed to process element: {i} of 'examples' list")
        for i, e in enumerate(examples)
    ]
    return codec.serialize_examples(parsed, context)
