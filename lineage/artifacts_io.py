"""Read the payloads of a few artifact types without importing TensorFlow.

Lineage commands must stay interactive (well under a second of startup), while TFMA and TF take
10+ seconds to import. The payloads we need are small and stable formats: the keras-tuner
hyperparameter JSON, TFMA's metrics TFRecord of MetricsForSlice protos, and text-format schemas.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import struct
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any


def read_hyperparameters(uri: str) -> dict[str, Any] | None:
    """The tuned values from a HyperParameters artifact (keras-tuner's get_config() JSON)."""
    for path in sorted(glob.glob(os.path.join(uri, "*"))):
        if not os.path.isfile(path):
            continue
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            values = data.get("values", data)
            return dict(values) if isinstance(values, dict) else None
    return None


def _tfrecords(path: str) -> Iterator[bytes]:
    """Records of an uncompressed TFRecord file (length-prefixed, CRCs not re-verified)."""
    with open(path, "rb") as f:
        while True:
            header = f.read(12)
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            f.read(4)
            if len(data) < length:
                return
            yield data


def _metrics_pb2() -> ModuleType | None:
    """TFMA's generated MetricsForSlice module, loaded without running TFMA's package __init__.

    It only depends on protobuf; registering it under its real name means a later real TFMA
    import in the same process reuses it instead of registering the descriptors twice.
    """
    name = "tensorflow_model_analysis.proto.metrics_for_slice_pb2"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("tensorflow_model_analysis")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "proto", "metrics_for_slice_pb2.py")
    if not os.path.exists(path):
        return None
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        return None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception:
        del sys.modules[name]
        return None
    return module


def read_overall_metrics(uri: str) -> dict[str, float]:
    """Overall-slice scalar metrics of a ModelEvaluation; diff metrics get a 'diff:' prefix.

    Per-model keys get the model name as prefix when the evaluation compared several models
    (candidate vs baseline), so both sides stay visible.
    """
    pb2 = _metrics_pb2()
    files = sorted(glob.glob(os.path.join(uri, "metrics*")))
    if pb2 is None or not files:
        return {}
    metrics: dict[str, float] = {}
    for path in files:
        for record in _tfrecords(path):
            mfs = pb2.MetricsForSlice.FromString(record)
            if mfs.slice_key.single_slice_keys:
                continue
            for kv in mfs.metric_keys_and_values:
                if not kv.value.HasField("double_value"):
                    continue
                name = kv.key.name
                if kv.key.sub_key.ListFields():
                    continue
                if kv.key.model_name and kv.key.model_name not in ("candidate", ""):
                    name = f"{kv.key.model_name}:{name}"
                if kv.key.is_diff:
                    name = f"diff:{name}"
                metrics[name] = kv.value.double_value.value
    return dict(sorted(metrics.items()))


def read_schema_summary(uri: str) -> dict[str, str] | None:
    """Feature name -> 'type[,presence]' from a Schema artifact's schema.pbtxt, for diffs."""
    path = os.path.join(uri, "schema.pbtxt")
    if not os.path.isfile(path):
        return None
    try:
        from google.protobuf import text_format
        from tensorflow_metadata.proto.v0 import schema_pb2
    except ImportError:
        return None
    schema = schema_pb2.Schema()
    try:
        with open(path) as f:
            text_format.Parse(f.read(), schema)
    except Exception:
        return None
    summary: dict[str, str] = {}
    for feature in schema.feature:
        kind = schema_pb2.FeatureType.Name(feature.type)
        parts = [kind]
        if feature.HasField("presence") and feature.presence.min_fraction:
            parts.append(f"min_fraction={feature.presence.min_fraction:g}")
        if feature.HasField("domain"):
            parts.append(f"domain={feature.domain}")
        elif feature.HasField("int_domain"):
            d = feature.int_domain
            parts.append(f"int_domain=[{d.min},{d.max}]")
        elif feature.HasField("float_domain"):
            d = feature.float_domain
            parts.append(f"float_domain=[{d.min:g},{d.max:g}]")
        summary[feature.name] = " ".join(parts)
    return summary


def expand_input_files(input_base: str, patterns: list[str], span: int | None) -> list[str]:
    """Files an ExampleGen read: input_base/pattern with {SPAN}/{VERSION} already resolved by TFX.

    TFX records the pattern after span resolution ("span-1/*"); older records may still hold the
    placeholder, so substitute it from the artifact's span.
    """
    files: list[str] = []
    for pattern in patterns:
        resolved = pattern
        if span is not None:
            import re

            resolved = re.sub(
                r"\{SPAN(?::(\d+))?\}",
                lambda m: str(span).zfill(int(m.group(1) or 0)),
                resolved,
            )
        full = os.path.join(input_base, resolved)
        matched = sorted(p for p in glob.glob(full) if os.path.isfile(p))
        files.extend(matched or [full])
    return files
