"""REST adapter: TF Serving's /v1 API (api_rest) over aiohttp, translating JSON <-> data plane.

As in KServe's REST server, a route table maps each endpoint (status, metadata, predict,
classify, regress; by model, version or label) to one short handler that only decodes the
request and encodes the data plane's answer; every rule lives in serving/dataplane.py. One
middleware does the rest: metrics (one count and latency per request, named by the version that
answered) and errors: every failure is `{"error": msg}` with the HTTP status TF Serving maps the
canonical code to, including unknown paths (404) and HTTP-parser errors, which aiohttp would
otherwise answer in plain text (see `_JsonErrorHandler`).

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
from serving import codec, json_count
from serving.canary import ROUTING_KEY_HEADER
from serving.dataplane import DataPlane, ModelRef
from serving.errors import ServingError, invalid_argument
from serving.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

# TF Serving's URL grammar: /v1/models/NAME[/versions/N|/labels/L][/metadata|:VERB]. The route
# table below is built from these segments; _MODEL_RE is the same grammar as one regex, for
# checking paths written elsewhere (e.g. the canary HTTPRoute in deploy/).
_SEGMENT = "[^/:]+"
_SELECTORS = ("", f"/versions/{{version:{_SEGMENT}}}", f"/labels/{{label:{_SEGMENT}}}")
_MODEL_RE = re.compile(
    rf"^/v1/models/(?P<name>{_SEGMENT})"
    rf"(?:/versions/(?P<version>{_SEGMENT})|/labels/(?P<label>{_SEGMENT}))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?/?$"
)
_JSON = "application/json"
# Which version answered an inference request, and the label that routed it there (if any).
VERSION_HEADER = "X-Model-Version"
LABEL_HEADER = "X-Model-Version-Label"
_OFF_LOOP_BYTES = 256 * 1024  # bodies larger than this are counted and decoded in a thread
# The top-level arrays each method's limits count, checked from the bytes of a large body
# before it is parsed (serving/json_count.py).
_COUNTED_KEYS = {"predict": ("instances",), "classify": ("examples",), "regress": ("examples",)}
_LEAF_COUNTED_KEYS = ("inputs",)  # predict's columnar format: its values are counted


class _ClientGone(Exception):
    """The client closed the connection before its request was read."""


class _Call:
    """What one request resolved to: its API method and the version (and label) that answered,
    for the metrics line and the X-Model-Version headers."""

    __slots__ = ("method", "model", "version", "label", "status")

    def __init__(self, model: str) -> None:
        self.method, self.model, self.status = "malformed", model, "OK"
        self.version: int | None = None
        self.label: str | None = None


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

    def routes(self) -> list[web.RouteDef]:
        """Every endpoint, by model, version or label, with and without a trailing slash."""
        table = []
        # Inference first: the router tries these routes in order (issue 26: each miss is a
        # regex match on every request).
        for suffix, method, handler in (
            (":predict", "POST", self.predict),
            (":classify", "POST", self.classify),
            (":regress", "POST", self.regress),
            ("", "GET", self.status),
            ("/metadata", "GET", self.metadata),
        ):
            for selector in _SELECTORS:
                path = f"/v1/models/{{name:{_SEGMENT}}}{selector}{suffix}"
                table += [web.route(method, path, handler), web.route(method, path + "/", handler)]
        if self.metrics_path:
            table.append(web.get(self.metrics_path, self.prometheus))
        return [*table, web.route("*", "/v1/{tail:.*}", self.malformed)]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_bytes, middlewares=[self._observed])
        app.router.add_routes(self.routes())
        return app

    def runner(self, keepalive_timeout: float) -> web.AppRunner:
        """keepalive_timeout also bounds how long a connection may take to send a request head."""
        return _AppRunner(
            self.app(), access_log=None, handle_signals=False, keepalive_timeout=keepalive_timeout
        )

    # ---- the middleware: metrics and errors in one layer ----------------------------------------
    # One middleware, not two nested ones: each layer is a coroutine frame and a wrapper call
    # per request on the event loop (issue 26).
    @web.middleware
    async def _observed(self, request: web.Request, handler) -> web.StreamResponse:
        v1 = request.path.startswith("/v1/")
        call = request["call"] = _Call(request.match_info.get("name", "") if v1 else "")
        started = time.perf_counter()
        try:
            response = await handler(request)
        except ServingError as e:
            call.status = e.code.name
            response = _error(e.http_status, e.message)
        except web.HTTPRequestEntityTooLarge as e:
            call.status = "RESOURCE_EXHAUSTED"
            response = _error(413, f"Request body too large: {e.text}")
        except web.HTTPException as e:  # no route: TF Serving's shape, not aiohttp's text
            call.status = "NOT_FOUND" if e.status == 404 else "INVALID_ARGUMENT"
            what = "Not found" if e.status == 404 else e.reason
            response = _error(e.status, f"{what}: {request.method} {request.path}")
        except TimeoutError:
            call.status = "DEADLINE_EXCEEDED"
            response = _error(408, f"Request body not received within {self.body_timeout:g} s")
            response.force_close()
        except (_ClientGone, asyncio.CancelledError):
            call.status = "CANCELLED"
            raise
        except Exception as e:  # noqa: BLE001 - a bug must still answer in TF Serving's shape
            call.status = "INTERNAL"
            log.exception("REST request failed: %s %s", request.method, request.path)
            response = _error(500, f"Internal error: {type(e).__name__}: {e}")
        finally:
            if v1:
                self.metrics.observe(
                    "rest",
                    call.method,
                    call.model,
                    call.version,
                    call.status,
                    started,
                    request.path,
                )
        if v1 and call.method in _INFERENCE and call.version is not None:
            response.headers[VERSION_HEADER] = str(call.version)
            if call.label:
                response.headers[LABEL_HEADER] = call.label
        return response

    # ---- one handler per endpoint --------------------------------------------------------------
    async def status(self, request: web.Request) -> web.Response:
        return _ok(_status_json(self.dp.status(self._ref(request, "status"))))

    async def metadata(self, request: web.Request) -> web.Response:
        servable, sigmap = self.dp.metadata(self._ref(request, "metadata"))
        request["call"].version = servable.version
        return _ok(_metadata_json(servable, sigmap))

    async def predict(self, request: web.Request) -> web.Response:
        ref, servable, body, large = await self._inference(request, "predict")
        _, out = await self.dp.predict_json(ref, body, large, servable)
        return await self._answer(out, large)

    async def classify(self, request: web.Request) -> web.Response:
        ref, servable, body, large = await self._inference(request, "classify")
        examples = await self._off_loop(large, self.dp.examples_from_json, body)
        result = await self.dp.classify(ref, examples, servable)
        return await self._answer({"results": _classify_json(result)}, large)

    async def regress(self, request: web.Request) -> web.Response:
        ref, servable, body, large = await self._inference(request, "regress")
        examples = await self._off_loop(large, self.dp.examples_from_json, body)
        result = await self.dp.regress(ref, examples, servable)
        return await self._answer({"results": result.values}, large)

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def malformed(self, request: web.Request) -> web.Response:
        raise invalid_argument(f"Malformed request: {request.method} {request.path}")

    # ---- decoding and encoding -----------------------------------------------------------------
    def _ref(self, request: web.Request, method: str, signature_name: str = "") -> ModelRef:
        """The model, version or label the URL names (a version must be a decimal number)."""
        call = request["call"]
        call.method = method
        info = request.match_info
        version = info.get("version")
        if version is not None:
            call.version = parsed = parse_version(version)
            if parsed is None:
                raise invalid_argument(f"Failed to convert version: {version} to numeric.")
            version = parsed
        key = request.headers.get(ROUTING_KEY_HEADER)
        return ModelRef(info["name"], version, info.get("label"), signature_name, key)

    async def _inference(self, request: web.Request, method: str):
        """(ref, the version it is routed to, JSON body, whether the body is large)."""
        request["call"].method = method  # a body that never arrives is still counted as `method`
        body, large = await self._json_body(request, _COUNTED_KEYS[method])
        ref = self._ref(request, method, body.get("signature_name", ""))
        servable, label = self.dp.route(ref)
        call = request["call"]
        call.version, call.label = servable.version, label
        return ref, servable, body, large

    @staticmethod
    async def _off_loop(large: bool, fn, *args):
        """Run a decoding step in a worker thread for a large body, so the loop keeps serving."""
        return await asyncio.to_thread(fn, *args) if large else fn(*args)

    async def _answer(self, out: object, large: bool) -> web.Response:
        """A large request usually has a large answer: encode it off the loop too."""
        return web.Response(body=await self._off_loop(large, codec.dumps, out), content_type=_JSON)

    async def _read_large(self, request: web.Request) -> bytes:
        """A large (or chunked) body, its chunks joined in a worker thread. aiohttp's
        `request.read()` grows one bytearray on the event loop and copies it into bytes there:
        57-87 ms with the GIL held for 64 MiB on this machine, during which no other request
        runs (issue 26). bytes.join releases the GIL for large joins (12 ms worst gap)."""
        chunks, size = [], 0
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > self.max_body_bytes:  # a chunked body declares no length up front
                raise web.HTTPRequestEntityTooLarge(max_size=self.max_body_bytes, actual_size=size)
            chunks.append(chunk)
        return await asyncio.to_thread(b"".join, chunks)

    async def _json_body(
        self, request: web.Request, counted: tuple[str, ...] = ()
    ) -> tuple[dict, bool]:
        """(body, whether it is large enough to decode off the event loop). A large body's
        `counted` arrays are counted from its bytes first, so an over-limit one is never
        parsed."""
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise web.HTTPRequestEntityTooLarge(
                max_size=self.max_body_bytes, actual_size=request.content_length
            )
        length = request.content_length
        try:
            if length is not None and length <= _OFF_LOOP_BYTES and request.content.is_eof():
                raw = await request.read()  # the whole body came with the head: no wait, no timer
            else:
                # asyncio.timeout, not wait_for: wait_for wraps the read in a task of its own, a
                # visible per-request cost on the event loop (issue 26); the same TimeoutError.
                async with asyncio.timeout(self.body_timeout):
                    if length is not None and length <= _OFF_LOOP_BYTES:
                        raw = await request.read()
                    else:
                        raw = await self._read_large(request)
        except (ConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as e:
            raise _ClientGone(str(e)) from None
        large = len(raw) > _OFF_LOOP_BYTES
        if large and counted:
            leaves = _LEAF_COUNTED_KEYS if counted == _COUNTED_KEYS["predict"] else ()
            await asyncio.to_thread(self.dp.limits.check_json_body, raw, counted, leaves)
        try:
            if large and counted:  # a slice of items per orjson call: the loop is never held long
                body = await asyncio.to_thread(
                    json_count.loads_in_slices, raw, counted[0].encode(), pause=_yield_gil
                )
            else:
                body = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise invalid_argument(f"JSON Parse error: {e}") from None
        if not isinstance(body, dict):
            raise invalid_argument("JSON Parse error: request body must be a JSON object")
        return body, large


_INFERENCE = ("predict", "classify", "regress")


def _yield_gil() -> None:
    """Between slices of a large body: release the GIL so the event loop runs (sleep(0) does)."""
    time.sleep(0)


def _status_json(statuses) -> dict:
    return {
        "model_version_status": [
            {
                "version": str(v),
                "state": st.state_name,
                "status": {"error_code": st.error_code.name, "error_message": st.error_message},
            }
            for v, st in statuses
        ]
    }


def _metadata_json(servable, sigmap) -> dict:
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


def _classify_json(result) -> list:
    """TF Serving's REST classify results: per example, [[label, score], ...] per class."""
    return [
        [
            [label if label is not None else str(j), score if score is not None else 0.0]
            for j, (label, score) in enumerate(row)
        ]
        for row in result.results
    ]
