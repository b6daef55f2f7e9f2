"""Protocol-neutral request logic: everything between decoding a request and encoding a reply.

As in KServe's model server, the REST and gRPC adapters only decode and encode; this module owns
model resolution (including the opt-in canary split, serving/canary.py), request limits, dtype
conversion, validation, the row/columnar predict formats, classify/regress result shaping,
request logging, status and config reload. Inputs and outputs are numpy arrays and plain Python
values; errors are ServingErrors carrying TF Serving's status code and (where practical) its
message text. Validation happens here, before a request joins a batch, so a bad request fails
alone.
"""

from __future__ import annotations

import asyncio
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.config import model_server_config_pb2

from modules.values import FLOAT, array_problem
from serving import codec
from serving.batching import BatchScheduler, Tensors
from serving.canary import CanaryRouter, CanarySplit
from serving.config import BatchingOptions
from serving.errors import ServingError, failed_precondition, invalid_argument
from serving.limits import RequestLimits
from serving.repository import ModelRepository, Servable, State, VersionStatus

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

_CODE_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


def _one_line(message: str) -> str:
    """The message of a TensorFlow error without its graph dump: TF wraps the op's own line
    ("Feature: fare ... is required but could not be found.") in "Graph execution error:",
    the node that raised it, the Python frames that defined it and "[[{{node ...}}]]"."""
    lines = [
        line.strip()
        for line in message.splitlines()
        if line.strip()
        and not line[0].isspace()
        and not line.startswith(("Graph execution error", "Detected at node"))
    ]
    text = lines[-1] if lines else message.strip()
    return text.split("\t [[", 1)[0].split(" [[", 1)[0].split(" [Op:", 1)[0].strip()


def _run_fn(servable: Servable, signature_name: str):
    """The callable a batch thread runs: numpy in, numpy out, TF errors as ServingErrors."""
    import tensorflow as tf

    fn = servable.functions[signature_name]

    def run(inputs: Tensors) -> Tensors:
        try:
            out = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        except tf.errors.OpError as e:
            raise ServingError(
                _CODE_BY_NUMBER.get(e.error_code, grpc.StatusCode.UNKNOWN), _one_line(e.message)
            ) from None
        except (TypeError, ValueError) as e:
            raise invalid_argument(str(e)) from None
        return {k: v.numpy() for k, v in out.items()}

    return run


@dataclass(frozen=True)
class ModelRef:
    """Which model, version or label and signature a request names, in either protocol."""

    name: str
    version: int | None = None
    label: str | None = None
    signature_name: str = ""
    routing_key: str | None = None  # sticky canary split (serving/canary.py), else random


@dataclass
class ClassifyResult:
    servable: Servable
    signature_name: str
    # per example, per class: (label or None when the signature has no classes, score or None)
    results: list[list[tuple[str | None, float | None]]]


@dataclass
class RegressResult:
    servable: Servable
    signature_name: str
    values: list[float]


@dataclass
class PredictResult:
    servable: Servable
    signature_name: str
    signature: meta_graph_pb2.SignatureDef
    outputs: Tensors


class DataPlane:
    """Resolve -> limit -> convert -> validate -> (batch) -> run -> shape results, for every API."""

    def __init__(
        self,
        repository: ModelRepository,
        batching: BatchingOptions | None = None,
        on_batch=None,
        request_log=None,
        limits: RequestLimits | None = None,
        canary: CanarySplit | None = None,
    ) -> None:
        self.repository = repository
        self.canary = CanaryRouter(canary) if canary is not None and canary.enabled else None
        self.request_log = request_log  # serving.request_log.RequestLog or None
        self.limits = limits or RequestLimits()
        self.batcher = BatchScheduler(batching, on_batch) if batching else None
        self._executor = None if batching else ThreadPoolExecutor(4, thread_name_prefix="predict")
        # Per servable, per signature; weak so an unloaded version's model is freed with it.
        self._run_fns: weakref.WeakKeyDictionary[Servable, dict[str, object]] = (
            weakref.WeakKeyDictionary()
        )
        # (servable, outputs) after every successful model call (a whole batch), in the thread that
        # ran it, e.g. score metrics
        self.on_outputs = None

    def close(self) -> None:
        if self.request_log is not None:
            self.request_log.close()
        if self.batcher:
            self.batcher.shutdown()
        if self._executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- lookups, status, config ---------------------------------------------------------------
    def servable(self, ref: ModelRef) -> Servable:
        """TF Serving's resolution: the named version or label, else the newest version."""
        return self.repository.resolve(ref.name, ref.version, ref.label)

    def route(self, ref: ModelRef) -> tuple[Servable, str | None]:
        """The version an inference request runs on, and the label that chose it (if any).

        With a canary split (serving/canary.py) an unlabelled request goes to `stable` or
        `canary`; without one, or when a label is missing or its version not loaded, this is
        exactly `servable()`. The adapters report the returned version as the one that answered.
        """
        if self.canary is not None and ref.version is None and not ref.label:
            labels = self.repository.labels_of(ref.name)
            label = None if labels is None else self.canary.pick(ref.name, labels, ref.routing_key)
            if label is not None:
                try:
                    return self.repository.resolve(ref.name, None, label), label
                except ServingError:
                    pass  # the labelled version is not serving (yet): TF Serving's default
        return self.servable(ref), ref.label or None

    def signature(
        self, servable: Servable, signature_name: object
    ) -> tuple[str, meta_graph_pb2.SignatureDef]:
        if not isinstance(signature_name, str):
            raise invalid_argument("'signature_name' must be a string")
        name = signature_name or DEFAULT_SIGNATURE
        sig = servable.signature_defs.get(name)
        if sig is None:
            raise failed_precondition(f'Serving signature key "{name}" not found.')
        return name, sig

    def metadata(self, ref: ModelRef) -> tuple[Servable, get_model_metadata_pb2.SignatureDefMap]:
        servable = self.servable(ref)
        out = get_model_metadata_pb2.SignatureDefMap()
        for k, v in servable.signature_defs.items():
            out.signature_def[k].CopyFrom(v)
        return servable, out

    def status(self, ref: ModelRef) -> list[tuple[int, VersionStatus]]:
        """Version states; a model-level status is a readiness answer, so a model none of whose
        versions is AVAILABLE is UNAVAILABLE (503) with each version's state and error, not OK.
        Naming a version or label asks about that version, which is reported as it is."""
        statuses = self.repository.status(ref.name, ref.version, ref.label)
        if ref.version is None and not ref.label:
            if not any(st.state == State.AVAILABLE for _, st in statuses):
                states = "; ".join(
                    f"version {v} {st.state_name}"
                    + (f" ({_one_line(st.error_message)})" if st.error_message else "")
                    for v, st in statuses
                )
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"Model {ref.name} has no servable version: {states}",
                )
        return statuses

    async def reload_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """Replace the served model set (ModelService.HandleReloadConfigRequest); off the loop."""
        await asyncio.to_thread(self.repository.reload_config, config)

    # ---- decoding helpers the adapters call (limits + dtype conversion live here) ---------------
    def tensors_from_protos(self, protos) -> Tensors:
        """PredictRequest.inputs -> arrays, within the request limits: every declared shape is
        counted, all inputs together, before the first array is built."""
        total = 0
        for k, v in protos.items():
            if not v.tensor_shape.unknown_rank:
                shape = [d.size for d in v.tensor_shape.dim]
                total += self.limits.check_shape(shape, f"input {k}")
                self.limits.check_elements(total, "request")
        return {k: codec.proto_to_ndarray(v, self.limits, f"input {k}") for k, v in protos.items()}

    def examples_from_json(self, body: dict) -> list[bytes]:
        """REST classify/regress: the 'examples' (and 'context') of a JSON body as serialized
        tf.Examples; the example count is checked before any example is built."""
        examples = body.get("examples")
        if not isinstance(examples, list) or not examples:
            raise invalid_argument("'examples' must be a non-empty JSON list")
        self.limits.check_elements(len(examples), "'examples'")
        self.limits.check_json_values(examples, "'examples'")
        context = codec.json_to_example(body["context"], "'context'") if "context" in body else None
        parsed = [
            codec.json_to_example(e, f"Failed to process element: {i} of 'examples' list")
            for i, e in enumerate(examples)
        ]
        return codec.serialize_examples(parsed, context)

    def examples_from_input(self, input_proto) -> list[bytes]:
        """gRPC Classify/Regress/MultiInference: the Input's tf.Examples, counted before they are
        serialized, and refused when a float value is not finite in float32."""
        examples, context = codec.input_examples(input_proto)
        if not examples:
            raise invalid_argument("Input is empty.")
        self.limits.check_elements(len(examples), "examples")
        for i, example in enumerate([context, *examples] if context is not None else examples):
            problem = codec.example_float_problem(example)
            if problem:
                where = "context" if context is not None and i == 0 else "example"
                raise invalid_argument(f"{where}: {problem}")
        return codec.serialize_examples(examples, context)

    def _json_tensor(self, value: object, sig: meta_graph_pb2.SignatureDef, key: str, where: str):
        dtype = sig.inputs[key].dtype if key in sig.inputs else codec.DT_STRING
        return codec.json_to_ndarray(value, dtype, where, self.limits)

    def _rows_to_tensors(self, instances: object, sig) -> Tensors:
        input_names = sorted(sig.inputs)
        if not isinstance(instances, list) or not instances:
            raise invalid_argument("'instances' must be a non-empty JSON list")
        self.limits.check_elements(len(instances), "'instances'")
        named = _is_named(instances[0])
        if not named:
            if len(input_names) != 1:
                raise invalid_argument(
                    f"The signature has {len(input_names)} inputs ({', '.join(input_names)}); "
                    "each of 'instances' must be a JSON object keyed by input name"
                )
            name = input_names[0]
            return {name: self._json_tensor(instances, sig, name, f"'instances' input {name}")}
        columns: dict[str, list] = {}
        for i, row in enumerate(instances):
            if not _is_named(row):
                raise invalid_argument(
                    f"Failed to process element: {i} of 'instances' list. Expected a JSON object"
                )
            for key, value in row.items():
                columns.setdefault(key, []).append(value)
        for key, values in columns.items():
            if len(values) != len(instances):
                raise invalid_argument(
                    f"Failed to process 'instances' list: input {key} is missing from some "
                    "instances"
                )
        self.limits.check_json_values(columns.values(), "'instances'")
        return self._checked_total(
            {k: self._json_tensor(v, sig, k, f"'instances' input {k}") for k, v in columns.items()}
        )

    def _columns_to_tensors(self, inputs: object, sig) -> Tensors:
        input_names = sorted(sig.inputs)
        if _is_named(inputs):
            self.limits.check_json_values(inputs.values(), "'inputs'")
            return self._checked_total(
                {k: self._json_tensor(v, sig, k, f"'inputs' input {k}") for k, v in inputs.items()}
            )
        if len(input_names) != 1:
            raise invalid_argument(
                f"The signature has {len(input_names)} inputs; 'inputs' must be a JSON object "
                "keyed by input name"
            )
        name = input_names[0]
        return {name: self._json_tensor(inputs, sig, name, f"'inputs' input {name}")}

    def _checked_total(self, tensors: Tensors) -> Tensors:
        self.limits.check_elements(sum(a.size for a in tensors.values()), "request")
        return tensors

    # ---- inference -----------------------------------------------------------------------------
    def validate(self, sig: meta_graph_pb2.SignatureDef, inputs: dict[str, np.ndarray]) -> None:
        expected = set(sig.inputs)
        got = set(inputs)
        if expected != got:
            raise invalid_argument(
                f"input size does not match signature: {len(got)}!={len(expected)} "
                f"len({{{', '.join(sorted(got))}}}) != len({{{', '.join(sorted(expected))}}}). "
                f"Sent extra: {{{', '.join(sorted(got - expected))}}}. "
                f"Missing but required: {{{', '.join(sorted(expected - got))}}}."
            )
        for i, (name, info) in enumerate(sorted(sig.inputs.items())):
            arr = inputs[name]
            want = info.dtype
            have = codec.dtype_enum(arr)
            if want != have:
                raise invalid_argument(
                    f"Expects arg[{i}] ({name}) to be {codec.dtype_name(want)} but "
                    f"{codec.dtype_name(have)} is provided"
                )
            if want == codec.DT_FLOAT:
                problem = array_problem(arr, FLOAT)
                if problem:
                    raise invalid_argument(f"Input {name}: {problem}")
            shape = info.tensor_shape
            if shape.unknown_rank:
                continue
            dims = [d.size for d in shape.dim]
            if len(dims) != arr.ndim or any(
                d >= 0 and d != a for d, a in zip(dims, arr.shape, strict=True)
            ):
                raise invalid_argument(
                    f"Input {name}: expected shape {[d if d >= 0 else None for d in dims]} "
                    f"but got {list(arr.shape)}"
                )

    def _run_for(self, servable: Servable, signature_name: str):
        fns = self._run_fns.get(servable)
        if fns is None:
            fns = self._run_fns[servable] = {}
        fn = fns.get(signature_name)
        if fn is None:
            fn = fns[signature_name] = self._observed(servable, _run_fn(servable, signature_name))
        return fn

    def _observed(self, servable: Servable, run):
        """`run`, reporting its outputs to `on_outputs` where the model call runs: once per
        model call (a whole batch), in the batch thread, not once per request on the event loop
        (issue 26: the per-request score histogram was a visible share of the loop's time).
        The servable is held weakly: this function is a value of the WeakKeyDictionary keyed by
        that servable, and a strong reference would keep every unloaded version alive."""
        servable_ref = weakref.ref(servable)

        def observed(inputs: Tensors) -> Tensors:
            outputs = run(inputs)
            observed_servable = servable_ref()
            if self.on_outputs is not None and observed_servable is not None:
                self.on_outputs(observed_servable, outputs)
            return outputs

        return observed

    async def run(self, servable: Servable, signature_name: str, inputs: Tensors) -> Tensors:
        """Run a validated signature call, through the batcher when the inputs share a batch dim;
        `on_outputs` sees every successful model call's outputs."""
        return await self._run(servable, signature_name, inputs)

    async def _run(self, servable: Servable, signature_name: str, inputs: Tensors) -> Tensors:
        run = self._run_for(servable, signature_name)
        sizes = {a.shape[0] if a.ndim else -1 for a in inputs.values()}
        if self.batcher is not None and len(sizes) == 1:
            size = sizes.pop()
            if size > 0:
                key = (servable, signature_name, tuple(sorted(inputs)))
                return await self.batcher.submit(key, run, inputs, size)
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(2, thread_name_prefix="unbatched")
        return await loop.run_in_executor(self._executor, run, inputs)

    async def predict(
        self,
        ref: ModelRef,
        inputs: Tensors,
        output_filter: list[str] | None = None,
        servable: Servable | None = None,
    ) -> PredictResult:
        """Predict on decoded tensors (gRPC's PredictRequest.inputs), on `servable` when the
        caller has routed the request already."""
        servable = servable or self.servable(ref)
        name, sig = self.signature(servable, ref.signature_name)
        return await self._predict(servable, name, sig, inputs, output_filter)

    async def _predict(self, servable, name, sig, inputs, output_filter=None) -> PredictResult:
        self.validate(sig, inputs)
        if output_filter:
            unknown = [o for o in output_filter if o not in sig.outputs]
            if unknown:
                raise invalid_argument(
                    f"output tensor alias not found in signature: {unknown[0]} Outputs expected "
                    "to be "
                    f"in the set {{{','.join(sorted(sig.outputs))}}}."
                )
        outputs = await self.run(servable, name, inputs)
        if self.request_log is not None:  # only what the model accepted
            self.request_log.log_inputs(inputs)
        if output_filter:
            outputs = {k: outputs[k] for k in output_filter}
        return PredictResult(servable, name, sig, outputs)

    async def predict_json(
        self,
        ref: ModelRef,
        body: dict,
        off_loop: bool = False,
        servable: Servable | None = None,
    ) -> tuple[Servable, dict]:
        """TF Serving's REST predict: row ('instances') or columnar ('inputs') format in, the
        matching 'predictions' / 'outputs' structure out (numpy leaves; the adapter serializes).
        `off_loop` converts a large body in a worker thread instead of on the event loop."""
        servable = servable or self.servable(ref)
        name, sig = self.signature(servable, body.get("signature_name", ""))
        has_rows, has_cols = "instances" in body, "inputs" in body
        if not body.get("signature_name"):
            self._check_input_names(servable, name, sig, body)
        if has_rows == has_cols:
            raise invalid_argument(
                "Missing 'inputs' or 'instances' key"
                if not has_rows
                else "Not both of 'instances' and 'inputs' can be specified"
            )
        convert, value = (
            (self._rows_to_tensors, body["instances"])
            if has_rows
            else (self._columns_to_tensors, body["inputs"])
        )
        inputs = await asyncio.to_thread(convert, value, sig) if off_loop else convert(value, sig)
        outputs = (await self._predict(servable, name, sig, inputs)).outputs
        names = sorted(outputs)
        if has_cols:
            if len(names) == 1:
                return servable, {"outputs": codec.ndarray_to_json(outputs[names[0]], names[0])}
            return servable, {"outputs": {k: codec.ndarray_to_json(outputs[k], k) for k in names}}
        if len(names) == 1:
            return servable, {"predictions": codec.ndarray_to_json(outputs[names[0]], names[0])}
        n = {outputs[k].shape[0] if outputs[k].ndim else -1 for k in names}
        if len(n) != 1 or -1 in n:
            raise invalid_argument(
                "Output tensors have inconsistent batch sizes; use the 'inputs' (columnar) format."
            )
        cols = {k: codec.ndarray_to_json(outputs[k], k) for k in names}
        return servable, {"predictions": [{k: cols[k][i] for k in names} for i in range(n.pop())]}

    @staticmethod
    def _check_input_names(servable: Servable, name: str, sig, body: dict) -> None:
        """A request naming inputs of another signature (raw feature rows sent to the default
        signature) is told which signature takes them, before its values are converted."""
        rows, cols = body.get("instances"), body.get("inputs")
        named = cols if _is_named(cols) else None
        if isinstance(rows, list) and rows and _is_named(rows[0]):
            named = rows[0]
        if named is None or set(named) == set(sig.inputs):
            return
        keys = set(named)
        best = max(
            (k for k in servable.signature_defs if k != name),
            key=lambda k: len(keys & set(servable.signature_defs[k].inputs)),
            default=None,
        )
        if best is None or not keys & set(servable.signature_defs[best].inputs):
            return
        raise invalid_argument(
            f"The inputs {', '.join(sorted(keys)[:5])}{', ...' if len(keys) > 5 else ''} are not "
            f'the inputs of signature "{name}" ({", ".join(sorted(sig.inputs))}); they belong to '
            f'signature "{best}": add "signature_name": "{best}" to the request'
        )

    def _example_signature(
        self, servable: Servable, signature_name: object, method: str, kind: str
    ):
        name, sig = self.signature(servable, signature_name)
        if sig.method_name != method:
            raise invalid_argument(
                f"Expected {kind} signature method_name to be {method}. Was: {sig.method_name}"
            )
        if len(sig.inputs) != 1:
            raise invalid_argument(f"Expected one input Tensor in the {kind} signature.")
        input_name = next(iter(sig.inputs))
        if sig.inputs[input_name].dtype != codec.DT_STRING:
            raise invalid_argument(
                f"The {kind} signature input must be a string tensor of tf.Examples"
            )
        return name, sig, input_name

    def _log_examples(self, examples: list[bytes]) -> None:
        if self.request_log is not None and examples:
            self.request_log.log_examples(examples)

    def _examples_tensor(self, examples: list[bytes]) -> np.ndarray:
        if not examples:
            raise invalid_argument("Input is empty.")
        self.limits.check_elements(len(examples), "examples")
        self.limits.check_string_bytes(sum(map(len, examples)), "examples")
        arr = np.empty(len(examples), dtype=object)
        arr[:] = examples
        return arr

    async def classify(
        self, ref: ModelRef, examples: list[bytes], servable: Servable | None = None
    ) -> ClassifyResult:
        """Per example, per class (label, score); either is None when the signature lacks it."""
        servable = servable or self.servable(ref)
        name, sig, input_name = self._example_signature(
            servable, ref.signature_name, CLASSIFY_METHOD, "classification"
        )
        if "classes" not in sig.outputs and "scores" not in sig.outputs:
            raise invalid_argument(
                "Expected classification signature outputs to contain classes or scores."
            )
        out = await self.run(servable, name, {input_name: self._examples_tensor(examples)})
        n = len(examples)
        classes, scores = out.get("classes"), out.get("scores")
        for arr, what in ((classes, "classes"), (scores, "scores")):
            if arr is not None and (arr.ndim != 2 or arr.shape[0] != n):
                raise invalid_argument(
                    f"Expected Tensor shape: [batch_size num_classes] but got {list(arr.shape)} "
                    f"for {what}"
                )
        self._log_examples(examples)
        k = (scores if scores is not None else classes).shape[1]
        results = [
            [
                (
                    classes[i, j].decode(errors="replace") if classes is not None else None,
                    float(scores[i, j]) if scores is not None else None,
                )
                for j in range(k)
            ]
            for i in range(n)
        ]
        return ClassifyResult(servable, name, results)

    async def regress(
        self, ref: ModelRef, examples: list[bytes], servable: Servable | None = None
    ) -> RegressResult:
        servable = servable or self.servable(ref)
        name, sig, input_name = self._example_signature(
            servable, ref.signature_name, REGRESS_METHOD, "regression"
        )
        if "outputs" not in sig.outputs:
            raise invalid_argument("No regression outputs found in signature: outputs")
        out = await self.run(servable, name, {input_name: self._examples_tensor(examples)})
        values = out["outputs"]
        n = len(examples)
        if values.shape not in ((n,), (n, 1)):
            raise invalid_argument(
                "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but "
                f"got {list(values.shape)}"
            )
        self._log_examples(examples)
        return RegressResult(servable, name, values.reshape(n).tolist())

    # ---- MultiInference: TF Serving's rules, then one classify/regress per task ----------------
    @staticmethod
    def multi_inference_ref(tasks: list[tuple[ModelRef, str]]) -> ModelRef:
        """The model every task runs on: all tasks name one model and version or label (TF
        Serving's rule), no signature twice, and only classify/regress methods."""
        if not tasks:
            raise invalid_argument("Tasks is empty")
        if len({(r.name, r.version or 0, r.label or "") for r, _ in tasks}) != 1:
            raise invalid_argument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name"
            )
        if len({r.signature_name or DEFAULT_SIGNATURE for r, _ in tasks}) != len(tasks):
            raise invalid_argument("Duplicate evaluation of signature")
        for _, method in tasks:
            if method not in (CLASSIFY_METHOD, REGRESS_METHOD):
                raise invalid_argument(f"Unsupported signature method_name: {method}")
        return tasks[0][0]

    async def multi_inference(
        self, tasks: list[tuple[ModelRef, str]], examples: list[bytes], servable: Servable
    ) -> list[ClassifyResult | RegressResult]:
        """Every task on the same examples and the same (routed) version, in task order."""
        self.multi_inference_ref(tasks)
        return [
            await (self.classify if method == CLASSIFY_METHOD else self.regress)(
                ref, examples, servable
            )
            for ref, method in tasks
        ]


def _is_named(value: object) -> bool:
    return isinstance(value, dict) and not (len(value) == 1 and "b64" in value)
