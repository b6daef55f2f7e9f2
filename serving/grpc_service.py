"""gRPC adapter: TF Serving's PredictionService and ModelService on grpc.aio.

The servicers only translate protos <-> numpy and ServingError -> status code; everything else
is the data plane's. The stubs are the official ones from tensorflow-serving-api, so any TF
Serving client works unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from google.protobuf import any_pb2
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
from serving.dataplane import DataPlane
from serving.errors import ServingError, invalid_argument
from serving.metrics import Metrics
from serving.repository import Servable

log = logging.getLogger(__name__)


def _spec_args(spec: model_pb2.ModelSpec) -> tuple[str, int | None, str | None]:
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return spec.name, spec.version.value, None
    if choice == "version_label":
        return spec.name, None, spec.version_label
    return spec.name, None, None


def _fill_spec(out: model_pb2.ModelSpec, servable: Servable, signature_name: str) -> None:
    out.name = servable.name
    out.version.value = servable.version
    out.signature_name = signature_name


class _Observed:
    """Times one RPC, counts it by status, and turns ServingErrors into gRPC status codes."""

    __slots__ = ("metrics", "method", "context", "model", "version", "started")

    def __init__(self, metrics: Metrics, method: str, context, model: str) -> None:
        self.metrics, self.method, self.context, self.model = metrics, method, context, model
        self.version: int | None = None
        self.started = time.perf_counter()

    async def fail(self, e: Exception):
        if isinstance(e, ServingError):
            code, msg = e.code, e.message
        else:
            log.exception("gRPC %s failed", self.method)
            code, msg = grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}"
        self.metrics.observe("grpc", self.method, self.model, self.version, code.name, self.started)
        await self.context.abort(code, msg)

    def ok(self) -> None:
        self.metrics.observe("grpc", self.method, self.model, self.version, "OK", self.started)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, dataplane: DataPlane, metrics: Metrics) -> None:
        self.dp = dataplane
        self.metrics = metrics

    def _resolve(self, obs: _Observed, spec: model_pb2.ModelSpec) -> Servable:
        servable = self.dp.servable(*_spec_args(spec))
        obs.version = servable.version
        return servable

    async def Predict(self, request: predict_pb2.PredictRequest, context) -> predict_pb2.PredictResponse:  # noqa: N802
        obs = _Observed(self.metrics, "predict", context, request.model_spec.name)
        try:
            servable = self._resolve(obs, request.model_spec)
            inputs = {k: codec.proto_to_ndarray(v) for k, v in request.inputs.items()}
            sig_name, sig, outputs = await self.dp.predict(
                servable, request.model_spec.signature_name, inputs, list(request.output_filter)
            )
            response = predict_pb2.PredictResponse()
            _fill_spec(response.model_spec, servable, sig_name)
            for k, v in outputs.items():
                response.outputs[k].CopyFrom(codec.ndarray_to_proto(v, sig.outputs[k].dtype))
        except Exception as e:  # noqa: BLE001
            await obs.fail(e)
        obs.ok()
        return response

    async def GetModelMetadata(self, request, context) -> get_model_metadata_pb2.GetModelMetadataResponse:  # noqa: N802
        obs = _Observed(self.metrics, "metadata", context, request.model_spec.name)
        try:
            if not request.metadata_field:
                raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != "signature_def":
                    raise invalid_argument(f"Metadata field {field} is not supported")
            servable = self._resolve(obs, request.model_spec)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            _fill_spec(response.model_spec, servable, "")
            packed = any_pb2.Any()
            packed.Pack(self.dp.metadata(servable))
            response.metadata["signature_def"].CopyFrom(packed)
        except Exception as e:  # noqa: BLE001
            await obs.fail(e)
        obs.ok()
        return response

    async def _classify(self, servable: Servable, spec, input_proto, out) -> None:
        sig_name, classes, scores = await self.dp.classify(
            servable, spec.signature_name, codec.examples_from_input(input_proto)
        )
        _fill_spec(out.model_spec, servable, sig_name)
        k = (scores if scores is not None else classes).shape[1]
        for i in range((scores if scores is not None else classes).shape[0]):
            c = out.result.classifications.add()
            for j in range(k):
                cls = c.classes.add()
                if classes is not None:
                    cls.label = classes[i, j].decode(errors="replace")
                if scores is not None:
                    cls.score = float(scores[i, j])

    async def _regress(self, servable: Servable, spec, input_proto, out) -> None:
        sig_name, values = await self.dp.regress(
            servable, spec.signature_name, codec.examples_from_input(input_proto)
        )
        _fill_spec(out.model_spec, servable, sig_name)
        for v in values.tolist():
            out.result.regressions.add().value = v

    async def Classify(self, request, context) -> classification_pb2.ClassificationResponse:  # noqa: N802
        obs = _Observed(self.metrics, "classify", context, request.model_spec.name)
        try:
            servable = self._resolve(obs, request.model_spec)
            response = classification_pb2.ClassificationResponse()
            await self._classify(servable, request.model_spec, request.input, response)
        except Exception as e:  # noqa: BLE001
            await obs.fail(e)
        obs.ok()
        return response

    async def Regress(self, request, context) -> regression_pb2.RegressionResponse:  # noqa: N802
        obs = _Observed(self.metrics, "regress", context, request.model_spec.name)
        try:
            servable = self._resolve(obs, request.model_spec)
            response = regression_pb2.RegressionResponse()
            await self._regress(servable, request.model_spec, request.input, response)
        except Exception as e:  # noqa: BLE001
            await obs.fail(e)
        obs.ok()
        return response

    async def MultiInference(self, request, context) -> inference_pb2.MultiInferenceResponse:  # noqa: N802
        """All tasks share one model version (TF Serving's rule) and one set of examples."""
        first = request.tasks[0].model_spec.name if request.tasks else ""
        obs = _Observed(self.metrics, "multi_inference", context, first)
        try:
            if not request.tasks:
                raise invalid_argument("Tasks is empty")
            specs = [t.model_spec for t in request.tasks]
            if len({(s.name, s.version.value, s.version_label) for s in specs}) != 1:
                raise invalid_argument("All ModelSpecs in a MultiInferenceRequest must access the same model name")
            if len({s.signature_name or "serving_default" for s in specs}) != len(specs):
                raise invalid_argument("Duplicate evaluation of signature")
            servable = self._resolve(obs, specs[0])
            response = inference_pb2.MultiInferenceResponse()
            for task in request.tasks:
                result = response.results.add()
                if task.method_name == "tensorflow/serving/classify":
                    out = classification_pb2.ClassificationResponse()
                    await self._classify(servable, task.model_spec, request.input, out)
                    result.classification_result.CopyFrom(out.result)
                elif task.method_name == "tensorflow/serving/regress":
                    out = regression_pb2.RegressionResponse()
                    await self._regress(servable, task.model_spec, request.input, out)
                    result.regression_result.CopyFrom(out.result)
                else:
                    raise invalid_argument(f"Unsupported signature method_name: {task.method_name}")
                result.model_spec.CopyFrom(out.model_spec)
        except Exception as e:  # noqa: BLE001
            await obs.fail(e)
        obs.ok()
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, dataplane: DataPlane, metrics: Metrics) -> None:
        self.dp = dataplane
        self.metrics = metrics

    async def GetModelStatus(self, request, context) -> get_model_status_pb2.GetModelStatusResponse:  # noqa: N802
        obs = _Observed(self.metrics, "status", context, request.model_spec.name)
        try:
            response = get_model_status_pb2.GetModelStatusResponse()
            for version, st in self.dp.status(*_spec_args(request.model_spec)):
                entry = response.model_version_status.add(version=version, state=st.state)
                entry.status.error_code = st.error_code.value[0]
                entry.status.error_message = st.error_message
        except Exception as e:  # noqa: BLE001
            await obs.fail(e)
        obs.ok()
        return response

    async def HandleReloadConfigRequest(self, request, context) -> model_management_pb2.ReloadConfigResponse:  # noqa: N802
        obs = _Observed(self.metrics, "reload_config", context, "")
        try:
            await asyncio.to_thread(self.dp.repository.reload_config, request.config)
        except Exception as e:  # noqa: BLE001
            await obs.fail(e)
        obs.ok()
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = 0
        return response


def add_services(server: grpc.aio.Server, dataplane: DataPlane, metrics: Metrics) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(dataplane, metrics), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(dataplane, metrics), server)
