"""Wire encodings <-> numpy, following TF Serving's JSON (api_rest) and TensorProto conventions.

Kept apart from the data plane so the model logic only ever sees numpy arrays; the hot paths
(strings, floats) avoid tf.make_tensor_proto/make_ndarray, which cost more than a small batch.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

import numpy as np
import orjson
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from modules.values import FLOAT, INT64_MAX, INT64_MIN, array_problem, float_problem
from serving.errors import invalid_argument
from serving.limits import UNLIMITED, RequestLimits

DT_STRING = types_pb2.DT_STRING
DT_FLOAT = types_pb2.DT_FLOAT

_NP_DTYPE: dict[int, np.dtype] = {
    types_pb2.DT_FLOAT: np.dtype(np.float32),
    types_pb2.DT_DOUBLE: np.dtype(np.float64),
    types_pb2.DT_HALF: np.dtype(np.float16),
    types_pb2.DT_INT8: np.dtype(np.int8),
    types_pb2.DT_INT16: np.dtype(np.int16),
    types_pb2.DT_INT32: np.dtype(np.int32),
    types_pb2.DT_INT64: np.dtype(np.int64),
    types_pb2.DT_UINT8: np.dtype(np.uint8),
    types_pb2.DT_UINT16: np.dtype(np.uint16),
    types_pb2.DT_UINT32: np.dtype(np.uint32),
    types_pb2.DT_UINT64: np.dtype(np.uint64),
    types_pb2.DT_BOOL: np.dtype(np.bool_),
    types_pb2.DT_STRING: np.dtype(object),
}
_ENUM_FOR_NP = {v: k for k, v in _NP_DTYPE.items() if k != DT_STRING}

_PROTO_FIELD: dict[int, str] = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
}


def dtype_name(dtype: int) -> str:
    """TF's short dtype name ('float', 'int64', 'string'), as TF Serving's messages use."""
    try:
        return types_pb2.DataType.Name(dtype)[3:].lower()
    except ValueError:  # proto3 enums are open: a client can send any number
        return f"unknown dtype {dtype}"


def np_dtype(dtype: int) -> np.dtype:
    try:
        return _NP_DTYPE[dtype]
    except KeyError:
        raise invalid_argument(f"Unsupported tensor dtype: {dtype_name(dtype)}") from None


def dtype_enum(arr: np.ndarray) -> int:
    if arr.dtype == object or arr.dtype.kind in "SU":
        return DT_STRING
    return _ENUM_FOR_NP[arr.dtype]


# ---- TensorProto ---------------------------------------------------------------------------
def proto_to_ndarray(
    tp: tensor_pb2.TensorProto, limits: RequestLimits = UNLIMITED, where: str = "input"
) -> np.ndarray:
    """A TensorProto as an array; the declared shape is checked against `limits` before any
    allocation, since one broadcast value can declare any number of elements. A shape numpy
    cannot hold (without limits) is the request's error, not the server's."""
    try:
        return _proto_to_ndarray(tp, limits, where)
    except (ValueError, MemoryError) as e:
        shape = [d.size for d in tp.tensor_shape.dim]
        raise invalid_argument(f"{where}: cannot hold a tensor of shape {shape}: {e}") from None


def _proto_to_ndarray(tp: tensor_pb2.TensorProto, limits: RequestLimits, where: str) -> np.ndarray:
    if tp.tensor_shape.unknown_rank:
        raise invalid_argument(f"{where}: tensor shape must have a known rank")
    shape = [d.size for d in tp.tensor_shape.dim]
    n = limits.check_shape(shape, where)
    if tp.dtype == DT_STRING:
        values = list(tp.string_val)
        if len(values) != n:
            if len(values) == 1:
                limits.check_string_bytes(n * len(values[0]), where)
                values = values * n
            else:
                raise invalid_argument(
                    f"Tensor proto has {len(values)} string values for shape {shape}"
                )
        else:
            limits.check_string_bytes(sum(map(len, values)), where)
        arr = np.empty(n, dtype=object)
        arr[:] = values
        return arr.reshape(shape)
    dtype = np_dtype(tp.dtype)
    if tp.tensor_content:
        if len(tp.tensor_content) != n * dtype.itemsize:
            raise invalid_argument(
                f"{where}: tensor_content has {len(tp.tensor_content)} bytes, shape {shape} of "
                f"{dtype_name(tp.dtype)} needs {n * dtype.itemsize}"
            )
        return np.frombuffer(tp.tensor_content, dtype=dtype).reshape(shape).copy()
    field = _PROTO_FIELD.get(tp.dtype)
    if field is None:
        import tensorflow as tf

        try:
            return tf.make_ndarray(tp)
        except (TypeError, ValueError) as e:
            raise invalid_argument(str(e)) from None
    values = getattr(tp, field)
    try:
        if len(values) == n:
            return np.array(values, dtype=dtype).reshape(shape)
        if len(values) == 1:
            return np.full(shape, values[0], dtype=dtype)
    except OverflowError as e:  # int_val holding a value outside int8/int16/uint8/...
        raise invalid_argument(
            f"{where}: value out of range for {dtype_name(tp.dtype)}: {e}"
        ) from None
    if len(values) == 0:
        return np.zeros(shape, dtype=dtype)
    raise invalid_argument(f"Tensor proto has {len(values)} values for shape {shape}")


def ndarray_to_proto(arr: np.ndarray, dtype: int | None = None) -> tensor_pb2.TensorProto:
    """Values go in the typed repeated fields, as TF Serving's AsProtoField writes them."""
    if dtype is None:
        dtype = dtype_enum(arr)
    tp = tensor_pb2.TensorProto(dtype=dtype)
    tp.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in arr.shape)
    field = _PROTO_FIELD.get(dtype)
    if field is None:
        import tensorflow as tf

        return tf.make_tensor_proto(arr)
    if dtype == DT_STRING:
        tp.string_val.extend(
            v if isinstance(v, bytes) else str(v).encode() for v in arr.ravel().tolist()
        )
    else:
        getattr(tp, field).extend(arr.ravel().tolist())
    return tp


# ---- JSON tensors ---------------------------------------------------------------------------
def _string_leaves(value: object, out: list, shape: list, depth: int, where: str) -> None:
    if isinstance(value, list):
        if len(shape) <= depth:
            shape.append(len(value))
        elif shape[depth] != len(value):
            raise invalid_argument(f"{where}: expecting tensors of the same shape (ragged list)")
        for v in value:
            _string_leaves(v, out, shape, depth + 1, where)
        return
    if len(shape) > depth:
        raise invalid_argument(f"{where}: expecting tensors of the same shape (ragged list)")
    if isinstance(value, str):
        out.append(value.encode())
    elif isinstance(value, dict) and len(value) == 1 and "b64" in value:
        try:
            out.append(base64.b64decode(value["b64"], validate=True))
        except (ValueError, TypeError) as e:
            raise invalid_argument(f"{where}: unable to base64 decode: {e}") from None
    else:
        raise invalid_argument(
            f"{where}: JSON Value: {_show(value)} is not of expected type: string"
        )


def _show(value: object) -> str:
    """A JSON value for an error message, short, and never failing (orjson refuses deep nests)."""
    try:
        shown = orjson.dumps(value).decode()
    except (TypeError, ValueError):
        shown = f"<{type(value).__name__}>"
    return shown if len(shown) <= 64 else shown[:64] + "..."


def _check_range(arr: np.ndarray, target: np.dtype, dtype: int, where: str) -> None:
    """Reject numbers the target dtype cannot hold instead of letting astype() wrap them."""
    if arr.size == 0:
        return
    if target.kind in "iu":
        info = np.iinfo(target)
        if arr.dtype.kind == "f":
            bad = not (arr.min() >= float(info.min) and arr.max() < float(info.max + 1))
        else:
            bad = int(arr.min()) < info.min or int(arr.max()) > info.max
    elif target.kind == "f" and arr.dtype.kind in "iuf":
        with np.errstate(over="ignore"):
            bad = not np.all(np.isfinite(arr.astype(target)) | ~np.isfinite(arr))
    else:
        return
    if bad:
        raise invalid_argument(f"{where}: value out of range for {dtype_name(dtype)}")


def json_to_ndarray(
    value: object, dtype: int, where: str, limits: RequestLimits = UNLIMITED
) -> np.ndarray:
    """One JSON value (scalar or nested list) as an array of the signature's dtype."""
    limits.check_json_value(value, where)
    if dtype == DT_STRING:
        leaves: list = []
        shape: list = []
        _string_leaves(value, leaves, shape, 0, where)
        limits.check_string_bytes(sum(map(len, leaves)), where)
        arr = np.empty(len(leaves), dtype=object)
        arr[:] = leaves
        return arr.reshape(shape)
    target = np_dtype(dtype)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        raise invalid_argument(
            f"{where}: expecting tensors of the same shape (ragged list)"
        ) from None
    kind = arr.dtype.kind
    if kind not in "biuf" or (kind == "b") != (target.kind == "b"):
        raise invalid_argument(
            f"{where}: JSON Value: {_show(value)} is not of expected type: {dtype_name(dtype)}"
        )
    if dtype == DT_FLOAT:
        problem = array_problem(arr, FLOAT)
        if problem:
            raise invalid_argument(f"{where}: {problem}")
    if target.kind in "iu" and kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.floor(arr)):
            raise invalid_argument(
                f"{where}: JSON Value is not of expected type: {dtype_name(dtype)}"
            )
    _check_range(arr, target, dtype, where)
    return arr.astype(target, copy=False)


def _json_leaf(v: object, b64: bool) -> object:
    if isinstance(v, bytes):
        if not b64:
            try:
                return v.decode()
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(v).decode()}
    return v


def ndarray_to_json(arr: np.ndarray, name: str) -> object:
    """Numeric arrays pass through (orjson writes them); strings decode, `*_bytes` go base64."""
    if arr.dtype != object:
        return np.ascontiguousarray(arr)
    b64 = name.endswith("_bytes")
    flat = [_json_leaf(v, b64) for v in arr.ravel().tolist()]
    if arr.ndim == 0:
        return flat[0]
    if arr.ndim == 1:
        return flat
    nested = np.empty(len(flat), dtype=object)
    nested[:] = flat
    return nested.reshape(arr.shape).tolist()


def dumps(obj: object) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


# ---- JSON tf.Examples (classify/regress REST) -----------------------------------------------
def _feature(value: object, where: str) -> feature_pb2.Feature:
    items = value if isinstance(value, list) else [value]
    if items and all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        if any(not INT64_MIN <= v <= INT64_MAX for v in items):
            raise invalid_argument(f"{where}: value out of range for int64")
        return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=items))
    if items and all(isinstance(v, int | float) and not isinstance(v, bool) for v in items):
        for v in items:  # float_list is float32: 1e50 would become inf (modules/values.py)
            problem = float_problem(float(v))
            if problem:
                raise invalid_argument(f"{where}: {problem}")
        return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=items))
    out = []
    for v in items:
        if isinstance(v, str):
            out.append(v.encode())
        elif isinstance(v, dict) and set(v) == {"b64"}:
            try:
                out.append(base64.b64decode(v["b64"], validate=True))
            except (ValueError, TypeError) as e:
                raise invalid_argument(f"{where}: unable to base64 decode: {e}") from None
        else:
            raise invalid_argument(f"{where}: unsupported feature value: {_show(v)}")
    return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=out))


def json_to_example(obj: object, where: str) -> example_pb2.Example:
    if not isinstance(obj, dict):
        raise invalid_argument(f"{where}: example must be a JSON object of feature values")
    ex = example_pb2.Example()
    for key, value in obj.items():
        ex.features.feature[key].CopyFrom(_feature(value, f"{where} feature {key}"))
    return ex


def serialize_examples(
    examples: Iterable[example_pb2.Example], context: example_pb2.Example | None
) -> list[bytes]:
    """TF Serving's ExampleListWithContext: context bytes + example bytes, merged by proto rules."""
    prefix = context.SerializeToString() if context is not None else b""
    return [prefix + e.SerializeToString() for e in examples]


def input_examples(
    input_proto: object,
) -> tuple[list[example_pb2.Example], example_pb2.Example | None]:
    """(examples, context) of a tensorflow.serving.Input (Classify/Regress/MultiInference),
    without copying or serializing them: the data plane counts them first."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        return input_proto.example_list.examples, None
    if kind == "example_list_with_context":
        lst = input_proto.example_list_with_context
        return lst.examples, lst.context
    raise invalid_argument("Input is empty.")


def examples_from_input(input_proto: object) -> list[bytes]:
    """Serialized tf.Examples of a tensorflow.serving.Input (warmup replays these as they are)."""
    out = serialize_examples(*input_examples(input_proto))
    if not out:
        raise invalid_argument("Input is empty.")
    return out


def example_float_problem(example: example_pb2.Example) -> str | None:
    """Why a tf.Example holds a float feature value the model cannot take (modules/values.py)."""
    for key, feature in example.features.feature.items():
        if feature.WhichOneof("kind") == "float_list" and feature.float_list.value:
            problem = array_problem(np.asarray(feature.float_list.value, dtype=np.float32), FLOAT)
            if problem:
                return f"feature {key}: {problem}"
    return None
