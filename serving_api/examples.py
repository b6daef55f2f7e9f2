"""Rows -> serialized tf.Examples: the one encoder the client, the request log and tests share.

A raw feature is typed by the dataset spec (modules/dataset_spec.py; by default the active one,
modules/features.py), so a CSV string "540" becomes an int64 for taxi's trip_seconds; any other
key is typed by its Python/numpy value. Missing values (None, "") are
left out, so the model's parsing defaults (or its required-feature check) decide about them.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping

from modules import features
from modules.dataset_spec import DatasetSpec
from serving_api.example_proto import example_class


def _kind(key: str, value: object, spec: DatasetSpec) -> str:
    if key in spec.kinds:
        return spec.raw_dtype(key)
    if isinstance(value, str | bytes):
        return "bytes"
    if isinstance(value, bool | numbers.Integral) or type(value).__name__ == "bool_":
        return "int64"
    return "float"


def row_to_example(
    row: Mapping[str, object],
    keys: Iterable[str] | None = None,
    spec: DatasetSpec | None = None,
) -> bytes:
    """Serialize one row; `keys` defaults to the spec's raw model features (other keys are
    dropped); `spec` defaults to the active dataset's."""
    spec = spec or features.SPEC
    ex = example_class()()  # TensorFlow's tf.Example, without importing TensorFlow
    for key in spec.raw_feature_keys if keys is None else keys:
        value = row.get(key)
        if value is None or value == "" or value == b"":
            continue
        feat = ex.features.feature[key]
        kind = _kind(key, value, spec)
        if kind == "bytes":
            feat.bytes_list.value.append(value if isinstance(value, bytes) else str(value).encode())
        elif kind == "int64":
            feat.int64_list.value.append(
                int(float(value)) if isinstance(value, str) else int(value)
            )
        else:
            feat.float_list.value.append(float(value))
    return ex.SerializeToString()
