"""Read the payloads of a few artifact types without importing TensorFlow.

Lineage commands and a UI must stay interactive (well under a second of startup), while TFMA and
TF take 10+ seconds to import. The payloads read here are small and stable formats: the
keras-tuner hyperparameter JSON and text-format schemas (TFMA's metrics: metadata/evaluation.py).
"""

from __future__ import annotations

import glob
import json
import os
import re
from typing import Any

from google.protobuf import text_format


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


def read_schema_summary(uri: str) -> dict[str, str] | None:
    """Feature name -> 'type[,presence]' from a Schema artifact's schema.pbtxt, for diffs."""
    path = os.path.join(uri, "schema.pbtxt")
    if not os.path.isfile(path):
        return None
    try:
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
            resolved = re.sub(
                r"\{SPAN(?::(\d+))?\}",
                lambda m: str(span).zfill(int(m.group(1) or 0)),
                resolved,
            )
        full = os.path.join(input_base, resolved)
        matched = sorted(p for p in glob.glob(full) if os.path.isfile(p))
        files.extend(matched or [full])
    return files
