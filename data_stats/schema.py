"""The curated schema as the data checks read it: the TFMD proto and each column's type."""

from __future__ import annotations

from collections.abc import Collection


def load_schema(schema_path: str):
    """The schema .pbtxt as a tensorflow_metadata Schema proto."""
    import tensorflow_data_validation as tfdv

    return tfdv.load_schema_text(schema_path)


def schema_columns(schema_path: str, exclude: Collection[str] = ()) -> dict[str, str]:
    """Column name -> schema type name (INT, FLOAT, BYTES) for every feature of the schema but
    `exclude`."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    return {
        f.name: schema_pb2.FeatureType.Name(f.type)
        for f in load_schema(schema_path).feature
        if f.name not in exclude
    }
