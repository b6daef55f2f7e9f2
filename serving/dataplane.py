"""Protocol-neutral request logic shared by the REST and gRPC adapters.

Inputs and outputs are numpy arrays and plain Python values; errors are ServingErrors carrying
TF Serving's status code and (where practical) its message text. Validation happens here, before
a request joins a batch, so a bad request fails alone.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from serving import codec
from serving.batching import BatchScheduler, Tensors
from serving.config import BatchingOptions
from serving.errors import ServingError, failed_precondition, invalid_argument
from serving.repository import ModelRepository, Servable

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

_CODE_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


def _run_fn(servable: Servable, signature_name: str):
    """The callable a batch thread runs: numpy in, numpy out, TF errors as ServingErrors."""
    import tensorflow as tf

    fn = servable.functions[signature_name]

    def run(inputs: Tensors) -> Tensors:
        try:
            out = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        except tf.errors.OpError as e:
            raise ServingError(_CODE_BY_NUMBER.get(e.error_code, grpc.StatusCode.UNKNOWN), e.message) from None
        except (TypeError, ValueError) as e:
            raise invalid_argument(str(e)) from None
        return {k: v.numpy() for k, v in out.items()}

    return run


class DataPlane:
    """Resolve -> validate -> (batch) -> run -> shape results, for every API."""

    def __init__(
        self,
        repository: ModelRepository,
        batching: BatchingOptions | None = None,
        on_batch=None,
        request_log=None,
    ) -> None:
        self.repository = repository
        self.request_log = request_log  # serving.request_log.RequestLog or None
        self.batcher = BatchScheduler(batching, on_batch) if batching else None
        self._executor = None if batching else ThreadPoolExecutor(4, thread_name_prefix="predict")
        self._run_fns: dict[tuple[Servable, str], object] = {}
        self.on_outputs = None  # (servable, outputs) after every model call, e.g. score metrics

    def close(self) -> None:
        if self.request_log is not None:
            self.request_log.close()
        if self.batcher:
            self.batcher.shutdown()
        if self._executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- lookups -------------------------------------------------------------------------------
    def servable(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        return self.repository.resolve(name, version, label)

    def signature(self, servable: Servable, signature_name: str) -> tuple[str, meta_graph_pb2.SignatureDef]:
        name = signature_name or DEFAULT_SIGNATURE
        sig = servable.signature_defs.get(name)
        if sig is None:
            raise failed_precondition(f'Serving signature key "{name}" not found.')
        return name, sig

    def metadata(self, servable: Servable) -> get_model_metadata_pb2.SignatureDefMap:
        out = get_model_metadata_pb2.SignatureDefMap()
        for k, v in servable.signature_defs.items():
            out.signature_def[k].CopyFrom(v)
        return out

    def status(self, name: str, version: int | None = None, label: str | None = None):
        return self.repository.status(name, version, label)

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
            shape = info.tensor_shape
            if shape.unknown_rank:
                continue
            dims = [d.size for d in shape.dim]
            if len(dims) != arr.ndim or any(d >= 0 and d != a for d, a in zip(dims, arr.shape, strict=True)):
                raise invalid_argument(
                    f"Input {name}: expected shape {[d if d >= 0 else None for d in dims]} "
                    f"but got {list(arr.shape)}"
                )

    def _run_for(self, servable: Servable, signature_name: str):
        key = (servable, signature_name)
        fn = self._run_fns.get(key)
        if fn is None:
            if len(self._run_fns) > 256:
                self._run_fns.clear()  # drop entries of unloaded versions
            fn = self._run_fns[key] = _run_fn(servable, signature_name)
        return fn

    async def run(self, servable: Servable, signature_name: str, inputs: Tensors) -> Tensors:
        """Run a validated signature call, through the batcher when the inputs share a batch dim."""
        outputs = await self._run(servable, signature_name, inputs)
        if self.on_outputs is not None:
            self.on_outputs(servable, outputs)
        return outputs

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
        servable: Servable,
        signature_name: str,
        inputs: Tensors,
        output_filter: list[str] | None = None,
    ) -> tuple[str, meta_graph_pb2.SignatureDef, Tensors]:
        name, sig = self.signature(servable, signature_name)
        self.validate(sig, inputs)
        if self.request_log is not None:
            self.request_log.log_inputs(inputs)
        if output_filter:
            unknown = [o for o in output_filter if o not in sig.outputs]
            if unknown:
                raise invalid_argument(
                    f"output tensor alias not found in signature: {unknown[0]} Outputs expected to be "
                    f"in the set {{{','.join(sorted(sig.outputs))}}}."
                )
        outputs = await self.run(servable, name, inputs)
        if output_filter:
            outputs = {k: outputs[k] for k in output_filter}
        return name, sig, outputs

    def _example_signature(self, servable: Servable, signature_name: str, method: str, kind: str):
        name, sig = self.signature(servable, signature_name)
        if sig.method_name != method:
            raise invalid_argument(
                f"Expected {kind} signature method_name to be {method}. Was: {sig.method_name}"
            )
        if len(sig.inputs) != 1:
            raise invalid_argument(f"Expected one input Tensor in the {kind} signature.")
        input_name = next(iter(sig.inputs))
        if sig.inputs[input_name].dtype != codec.DT_STRING:
            raise invalid_argument(f"The {kind} signature input must be a string tensor of tf.Examples")
        return name, sig, input_name

    def _log_examples(self, examples: list[bytes]) -> None:
        if self.request_log is not None and examples:
            self.request_log.log_examples(examples)

    @staticmethod
    def _examples_tensor(examples: list[bytes]) -> np.ndarray:
        if not examples:
            raise invalid_argument("Input is empty.")
        arr = np.empty(len(examples), dtype=object)
        arr[:] = examples
        return arr

    async def classify(
        self, servable: Servable, signature_name: str, examples: list[bytes]
    ) -> tuple[str, np.ndarray | None, np.ndarray | None]:
        """Per-example (classes [n, k] bytes or None, scores [n, k] float or None)."""
        name, sig, input_name = self._example_signature(servable, signature_name, CLASSIFY_METHOD, "classification")
        if "classes" not in sig.outputs and "scores" not in sig.outputs:
            raise invalid_argument("Expected classification signature outputs to contain classes or scores.")
        self._log_examples(examples)
        out = await self.run(servable, name, {input_name: self._examples_tensor(examples)})
        n = len(examples)
        classes, scores = out.get("classes"), out.get("scores")
        for arr, what in ((classes, "classes"), (scores, "scores")):
            if arr is not None and (arr.ndim != 2 or arr.shape[0] != n):
                raise invalid_argument(
                    f"Expected Tensor shape: [batch_size num_classes] but got {list(arr.shape)} for {what}"
                )
        return name, classes, scores

    async def regress(self, servable: Servable, signature_name: str, examples: list[bytes]) -> tuple[str, np.ndarray]:
        name, sig, input_name = self._example_signature(servable, signature_name, REGRESS_METHOD, "regression")
        if "outputs" not in sig.outputs:
            raise invalid_argument("No regression outputs found in signature: outputs")
        self._log_examples(examples)
        out = await self.run(servable, name, {input_name: self._examples_tensor(examples)})
        values = out["outputs"]
        n = len(examples)
        if values.shape not in ((n,), (n, 1)):
            raise invalid_argument(
                f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {list(values.shape)}"
            )
        return name, values.reshape(n)
