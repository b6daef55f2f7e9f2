"""The curated schema plus the `source` column, for runs that several sources feed.

A dataset's curated schema (schema/schema.pbtxt for taxi) describes the raw data exactly as it
arrives, so that anything reading it as the data's description, TFX's chicago_taxi_client among
them, finds every feature in the CSV. The multi-source ExampleGen adds one column of its own,
`source` (pipeline/ingest/sources.py), declared in pipeline/ingest/source_feature.pbtxt (not in
schema/, which holds the one curated schema a Schema artifact may point at); on that path alone
the pipeline imports the curated schema with that feature appended, written under the pipeline
root with deterministic content so TFX's cache sees the same file for the same inputs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import tensorflow as tf
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

MULTI_SOURCE_SCHEMA = Path(__file__).resolve().parent / "ingest" / "source_feature.pbtxt"


def _parse(path: str | os.PathLike) -> schema_pb2.Schema:
    return text_format.Parse(tf.io.gfile.GFile(os.fspath(path)).read(), schema_pb2.Schema())


def with_source_feature(schema_path: str, output_dir: str) -> str:
    """Write the curated schema with the multi-source features added (those it already declares
    are kept as they are) to `output_dir`/schema-<digest>/schema.pbtxt; returns that path."""
    schema = _parse(schema_path)
    have = {f.name for f in schema.feature}
    for feature in _parse(MULTI_SOURCE_SCHEMA).feature:
        if feature.name not in have:
            schema.feature.append(feature)
    text = text_format.MessageToString(schema)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    directory = os.path.join(output_dir, f"schema-{digest}")
    path = os.path.join(directory, "schema.pbtxt")
    if not tf.io.gfile.exists(path):
        tf.io.gfile.makedirs(directory)
        temp = path + ".tmp"
        with tf.io.gfile.GFile(temp, "w") as f:
            f.write(text)
        tf.io.gfile.rename(temp, path, overwrite=True)
    return path
