"""preprocessing_fn under real tf.Transform (Beam) on a sample of the taxi CSV."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tensorflow_data_validation as tfdv
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from modules import features
from modules.preprocessing import preprocessing_fn
from pipeline.config import PipelineConfig
from pipeline.testing.samples import TAXI_CSV

ROWS = 200
OPTIONAL_NUMERIC = "trip_seconds"


def _typed(key: str, value: str, kind: int):
    if value == "":
        return []
    if kind == 0:  # bytes
        return [value.encode()]
    return [int(float(value))] if kind == 1 else [float(value)]


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    schema = tfdv.load_schema_text(PipelineConfig().schema_path)
    spec = schema_utils.schema_as_feature_spec(schema).feature_spec
    kinds = {f.name: {1: 0, 2: 1, 3: 2}[f.type] for f in schema.feature}  # BYTES, INT, FLOAT
    with open(TAXI_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    # The first rows, plus every row without trip_seconds (an optional numeric; none among them).
    raw = rows[:ROWS] + [row for row in rows[ROWS:] if row[OPTIONAL_NUMERIC] == ""]
    # `source` (written by a multi-source ExampleGen) is no CSV column: absent, no value.
    instances = [{key: _typed(key, row.get(key, ""), kinds[key]) for key in spec} for row in raw]
    metadata = dataset_metadata.DatasetMetadata(schema)
    temp = str(tmp_path_factory.mktemp("tft"))
    with tft_beam.Context(temp_dir=temp, force_tf_compat_v1=False):
        (data, _), fn = (instances, metadata) | tft_beam.AnalyzeAndTransformDataset(
            preprocessing_fn, output_record_batches=False
        )
    out_dir = str(tmp_path_factory.mktemp("tft_output"))
    _ = fn | tft_beam.WriteTransformFn(out_dir)
    return raw, data, tft.TFTransformOutput(out_dir)


def test_every_model_feature_and_the_label_come_out(transformed):
    _, data, _ = transformed
    expected = {features.transformed_name(k) for k in features.RAW_FEATURE_KEYS}
    expected.add(features.transformed_name(features.LABEL_KEY))
    assert set(data[0]) == expected


def test_numerics_are_z_scores(transformed):
    _, data, _ = transformed
    for key in features.DENSE_FLOAT_FEATURE_KEYS:
        values = np.array([row[features.transformed_name(key)] for row in data])
        assert abs(values.mean()) < 1e-3, key
        assert abs(values.std() - 1.0) < 1e-2, key


def test_optional_numeric_is_the_z_score_of_the_mean_filled_column(transformed):
    raw, data, _ = transformed
    present = np.array([row[OPTIONAL_NUMERIC] != "" for row in raw])
    assert 0 < (~present).sum() < len(raw)
    values = np.array([float(row[OPTIONAL_NUMERIC] or 0) for row in raw])
    filled = np.where(present, values, values[present].mean())
    expected = (filled - filled.mean()) / filled.std()
    got = np.array([row[features.transformed_name(OPTIONAL_NUMERIC)] for row in data])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert np.all(got[~present] == 0)


def test_label_is_tip_over_twenty_percent_of_fare(transformed):
    raw, data, _ = transformed
    for row, out in zip(raw, data, strict=True):
        # In float32 like the graph: ties at exactly 20% round the same way.
        tips, fare = np.float32(row["tips"]), np.float32(row["fare"])
        expected = int(tips > fare * np.float32(features.LABEL_TIP_FRACTION))
        assert out[features.transformed_name(features.LABEL_KEY)] == expected
    labels = {out[features.transformed_name(features.LABEL_KEY)] for out in data}
    assert labels == {0, 1}


def test_categoricals_become_ids_in_range(transformed):
    _, data, _ = transformed
    for key in features.BUCKET_FEATURE_KEYS:
        ids = {row[features.transformed_name(key)] for row in data}
        assert ids <= set(range(features.FEATURE_BUCKET_COUNT + 1)) and len(ids) > 1, key
    for key, n in features.CATEGORICAL_NUMERICAL_FEATURES.items():
        assert all(0 <= row[features.transformed_name(key)] < n for row in data), key
    for key in features.VOCAB_FEATURE_KEYS:
        ids = [row[features.transformed_name(key)] for row in data]
        assert all(0 <= i < features.VOCAB_SIZE + features.OOV_SIZE for i in ids), key


def test_missing_values_are_filled_and_vocabularies_written(transformed):
    raw, data, tft_output = transformed
    # Some sampled rows lack coordinates; they still get a bucket instead of failing.
    missing = [i for i, row in enumerate(raw) if row["pickup_latitude"] == ""]
    assert missing, "sample should contain rows with missing coordinates"
    for i in missing:
        assert features.transformed_name("pickup_latitude") in data[i]
    vocab = tft_output.vocabulary_by_name("payment_type")
    assert b"Cash" in vocab and b"Credit Card" in vocab
