"""gRPC adapter: TF Serving's PredictionService and ModelService on grpc.aio.

The servicers only translate protos <-> data plane values; `_rpc` is the one place that maps a
ServingError to a gRPC status and records metrics. The stubs are the official ones from
tensorflow-serving-api, so any TF Serving client works unchanged. Model management
(HandleReloadConfigRequest) is gated by `--model_management` (off / loopback / any).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import time

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving import codec
from serving.canary import ROUTING_KEY_HEADER
from serving.dataplane import ClassifyResult, DataPlane, ModelRef, RegressResult
from serving.errors import ServingError, failed_precondition, invalid_argument
from serving.metrics import Metrics
from serving.repository import Servable

log = logging.getLogger(__name__)

MODEL_MANAGEMENT_CHOICES = ("off", "loopback", "any")


_ROUTING_KEY = ROUTING_KEY_HEADER.lower()  # gRPC metadata keys are lower case


def _ref(spec: model_pb2.ModelSpec, signature_name: str | None = None, context=None) -> ModelRef:
    choice = spec.WhichOneof("version_choice")
    sig = spec.signature_name if signature_name is None else signature_name
    if choice == "version":
        return ModelRef(spec.name, spec.version.value, None, sig)
    if choice == "version_label":
        return ModelRef(spec.name, None, spec.version_label, sig)
    key = None
    if context is not None:
        key = next((v for k, v in context.invocation_metadata() or () if k == _ROUTING_KEY), None)
    return ModelRef(spec.name, None, None, sig, key if isinstance(key, str) else None)


def _fill_spec(out: model_pb2.ModelSpec, servable: Servable, signature_name: str) -> None:
    out.name = servable.name
    out.version.value = servable.version
    out.signature_name = signature_name


def is_loopback_peer(peer: str) -> bool:
    """grpc peer strings: 'ipv4:127.0.0.1:5000', 'ipv6:[::1]:5000', 'unix:/path'."""
    kind, _, rest = peer.partition(":")
    if kind == "unix":
        return True
    if kind == "ipv4":
        host = rest.rsplit(":", 1)[0]
    elif kind == "ipv6":
        host = rest.rsplit(":", 1)[0].strip("[]")
    else:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Call:
    """What one RPC resolved to, for its metrics line and the answering-version metadata."""

    __slots__ = ("version", "label")

    def __init__(self) -> None:
        self.version: int | None = None
        self.label: str | None = None

    def resolved(self, servable: Servable) -> Servable:
        self.version = servable.version
        return servable

    def routed(self, routed: tuple[Servable, str | None]) -> Servable:
        """DataPlane.route's answer: remember the version and the label that chose it."""
        servable, self.label = routed
        return self.resolved(servable)

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        """x-model-version (+ x-model-version-label), as REST's response headers."""
        if self.version is None:
            return ()
        out = (("x-model-version", str(self.version)),)
        return out + ((("x-model-version-label", self.label),) if self.label else ())


class _Undecodable:
    """A request whose bytes are not the method's protobuf: answered INVALID_ARGUMENT by `_rpc`
    (grpc's own deserializer failure would be UNKNOWN)."""

    def __init__(self, message_type: str, error: Exception) -> None:
        self.message = f"Could not parse the request as a {message_type}: {error}"


def _lenient(message_class):
    def parse(data: bytes):
        try:
            return message_class.FromString(data)
        except (DecodeError, RuntimeWarning, ValueError) as e:
            return _Undecodable(message_class.DESCRIPTOR.full_name, e)

    return parse


def _rpc(method: str, model_of=lambda request: request.model_spec.name):
    """Times the RPC, counts it by status, and turns ServingErrors into gRPC status codes. A
    client that goes away mid-call is CANCELLED; only unexpected exceptions log a traceback."""

    def wrap(fn):
        @functools.wraps(fn)
        async def handler(self, request, context):
            call, started = _Call(), time.perf_counter()
            if isinstance(request, _Undecodable):
                self.metrics.observe("grpc", method, "", None, "INVALID_ARGUMENT", started)
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            model = model_of(request)
            try:
                response = await fn(self, request, context, call)
                if call.version is not None:
                    context.set_trailing_metadata(call.trailing_metadata())
            except ServingError as e:
                code, msg = e.code, e.message
            except asyncio.CancelledError:
                self.metrics.observe("grpc", method, model, call.version, "CANCELLED", started)
                raise
            except Exception as e:  # noqa: BLE001 - a bug still answers with a status
                log.exception("gRPC %s failed", method)
                code, msg = grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}"
            else:
                self.metrics.observe("grpc", method, model, call.version, "OK", started)
                return response
            self.metrics.observe("grpc", method, model, call.version, code.name, started)
            await context.abort(code, msg, call.trailing_metadata())

        return handler

    return wrap


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, dataplane: DataPlane, metrics: Metrics) -> None:
        self.dp = dataplane
        self.metrics = metrics

    @_rpc("predict")
    async def Predict(
        self, request: predict_pb2.PredictRequest, context, call
    ) -> predict_pb2.PredictResponse:  # noqa: N802
        ref = _ref(request.model_spec, context=context)
        servable = call.routed(self.dp.route(ref))
        inputs = self.dp.tensors_from_protos(request.inputs)
        result = await self.dp.predict(ref, inputs, list(request.output_filter), servable)
        response = predict_pb2.PredictResponse()
        _fill_spec(response.model_spec, servable, result.signature_name)
        for k, v in result.outputs.items():
            response.outputs[k].CopyFrom(
                codec.ndarray_to_proto(v, result.signature.outputs[k].dtype)
            )
        return response

    @_rpc("metadata")
    async def GetModelMetadata(
        self, request, context, call
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:  # noqa: N802
        if not request.metadata_field:
            raise invalid_argument(
                "GetModelMetadataRequest must specify at least one metadata_field"
            )
        for field in request.metadata_field:
            if field != "signature_def":
                raise invalid_argument(f"Metadata field {field} is not supported")
        servable, sigmap = self.dp.metadata(_ref(request.model_spec))
        call.resolved(servable)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        _fill_spec(response.model_spec, servable, "")
        packed = any_pb2.Any()
        packed.Pack(sigmap)
        response.metadata["signature_def"].CopyFrom(packed)
        return response

    @staticmethod
    def _encode(result: ClassifyResult | RegressResult, spec, out) -> None:
        """A data-plane result into a ClassificationResult / RegressionResult (+ its spec)."""
        _fill_spec(spec, result.servable, result.signature_name)
        if isinstance(result, RegressResult):
            for v in result.values:
                out.regressions.add().value = v
            return
        for row in result.results:
            c = out.classifications.add()
            for label, score in row:
                cls = c.classes.add()
                if label is not None:
                    cls.label = label
                if score is not None:
                    cls.score = score

    @_rpc("classify")
    async def Classify(self, request, context, call) -> classification_pb2.ClassificationResponse:  # noqa: N802
        ref = _ref(request.model_spec, context=context)
        servable = call.routed(self.dp.route(ref))
        examples = self.dp.examples_from_input(request.input)
        response = classification_pb2.ClassificationResponse()
        result = await self.dp.classify(ref, examples, servable)
        self._encode(result, response.model_spec, response.result)
        return response

    @_rpc("regress")
    async def Regress(self, request, context, call) -> regression_pb2.RegressionResponse:  # noqa: N802
        ref = _ref(request.model_spec, context=context)
        servable = call.routed(self.dp.route(ref))
        examples = self.dp.examples_from_input(request.input)
        response = regression_pb2.RegressionResponse()
        result = await self.dp.regress(ref, examples, servable)
        self._encode(result, response.model_spec, response.result)
        return response

    @_rpc("multi_inference", lambda r: r.tasks[0].model_spec.name if r.tasks else "")
    async def MultiInference(self, request, context, call) -> inference_pb2.MultiInferenceResponse:  # noqa: N802
        tasks = [
            (_ref(t.model_spec, context=context if i == 0 else None), t.method_name)
            for i, t in enumerate(request.tasks)
        ]
        servable = call.routed(self.dp.route(self.dp.multi_inference_ref(tasks)))
        examples = self.dp.examples_from_input(request.input)
        response = inference_pb2.MultiInferenceResponse()
        for result in await self.dp.multi_inference(tasks, examples, servable):
            out = response.results.add()
            target = (
                out.regression_result
                if isinstance(result, RegressResult)
                else out.classification_result
            )
            self._encode(result, out.model_spec, target)
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(
        self,
        dataplane: DataPlane,
        metrics: Metrics,
        model_management: str = "loopback",
        workers: int = 1,
    ) -> None:
        if model_management not in MODEL_MANAGEMENT_CHOICES:
            raise ValueError(f"model_management must be one of {MODEL_MANAGEMENT_CHOICES}")
        self.dp = dataplane
        self.metrics = metrics
        self.model_management = model_management
        self.workers = workers

    @_rpc("status")
    async def GetModelStatus(
        self, request, context, call
    ) -> get_model_status_pb2.GetModelStatusResponse:  # noqa: N802
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, st in self.dp.status(_ref(request.model_spec)):
            entry = response.model_version_status.add(version=version, state=st.state)
            entry.status.error_code = st.error_code.value[0]
            entry.status.error_message = st.error_message
        return response

    @_rpc("reload_config", lambda r: "")
    async def HandleReloadConfigRequest(
        self, request, context, call
    ) -> model_management_pb2.ReloadConfigResponse:  # noqa: N802
        if self.model_management == "off" or (
            self.model_management == "loopback" and not is_loopback_peer(context.peer())
        ):
            raise ServingError(
                grpc.StatusCode.PERMISSION_DENIED,
                "Model management is "
                f"{'disabled' if self.model_management == 'off' else 'loopback-only'}"
                " on this server (--model_management)",
            )
        if self.workers > 1:  # the call reaches one worker of N: the others would not change
            raise failed_precondition(
                f"HandleReloadConfigRequest reaches one of the {self.workers} server workers "
                "(--workers); change the served models through --model_config_file with "
                "--model_config_file_poll_wait_seconds, which every worker re-reads"
            )
        await self.dp.reload_config(request.config)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = 0
        return response


# What the generated add_*Servicer_to_server functions register (tensorflow_serving/apis/
# prediction_service.proto, model_service.proto): service -> method -> (request, response).
_SERVICES = {
    "tensorflow.serving.PredictionService": {
        "Classify": (
            classification_pb2.ClassificationRequest,
            classification_pb2.ClassificationResponse,
        ),
        "Regress": (regression_pb2.RegressionRequest, regression_pb2.RegressionResponse),
        "Predict": (predict_pb2.PredictRequest, predict_pb2.PredictResponse),
        "MultiInference": (
            inference_pb2.MultiInferenceRequest,
            inference_pb2.MultiInferenceResponse,
        ),
        "GetModelMetadata": (
            get_model_metadata_pb2.GetModelMetadataRequest,
            get_model_metadata_pb2.GetModelMetadataResponse,
        ),
    },
    "tensorflow.serving.ModelService": {
        "GetModelStatus": (
            get_model_status_pb2.GetModelStatusRequest,
            get_model_status_pb2.GetModelStatusResponse,
        ),
        "HandleReloadConfigRequest": (
            model_management_pb2.ReloadConfigRequest,
            model_management_pb2.ReloadConfigResponse,
        ),
    },
}


def _handler(servicer, service: str) -> grpc.GenericRpcHandler:
    """The generated registration, with request bytes parsed by `_lenient`."""
    handlers = {
        method: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method),
            request_deserializer=_lenient(request),
            response_serializer=response.SerializeToString,
        )
        for method, (request, response) in _SERVICES[service].items()
    }
    return grpc.method_handlers_generic_handler(service, handlers)


def add_services(
    server: grpc.aio.Server,
    dataplane: DataPlane,
    metrics: Metrics,
    model_management: str = "loopback",
    workers: int = 1,
) -> None:
    server.add_generic_rpc_handlers(
        (
            _handler(
                PredictionServicer(dataplane, metrics), "tensorflow.serving.PredictionService"
            ),
            _handler(
                ModelServicer(dataplane, metrics, model_management, workers),
                "tensorflow.serving.ModelService",
            ),
        )
    )
