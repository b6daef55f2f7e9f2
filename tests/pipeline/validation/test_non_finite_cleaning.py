"""The RowCleaner's Beam stages (row_cleaner.clean_split) on rows holding values that are no valid
number: NaN, +-inf, text beyond float32. None of them reaches the cleaned examples; each is in the
quarantine with its reason. (+inf in a feature with only a minimum used to count as clean.)"""

from __future__ import annotations

import glob
import math
import os

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from modules import values
from pipeline.config import in_memory_beam_args
from pipeline.validation import quarantine, row_cleaner
from tests.pipeline.validation.test_row_checks import GOOD, SCHEMA, example

# trip_start_timestamp marks each hostile row; every other row is GOOD with its own mark.
HOSTILE = [
    ({"fare": [math.inf]}, None),
    ({"tips": [math.inf]}, None),
    ({"trip_miles": [-math.inf]}, None),
    ({"tips": [math.nan]}, None),
    ({"fare": [b"1e50"]}, {"fare": "bytes_list"}),
    ({"tips": [b"1e400"]}, {"tips": "bytes_list"}),
    ({"trip_miles": [b"NaN"]}, {"trip_miles": "bytes_list"}),
]
GOOD_ROWS = 30


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    records = []
    for i in range(GOOD_ROWS):
        records.append(example({**GOOD, "trip_start_timestamp": [i]}).SerializeToString())
    for i, (row, kinds) in enumerate(HOSTILE):
        mark = 1_000 + i
        records.append(
            example({**GOOD, **row, "trip_start_timestamp": [mark]}, kinds).SerializeToString()
        )
    examples_dir, quarantine_dir = out / "examples", out / "quarantine" / "Split-train"
    with beam.Pipeline(options=PipelineOptions(in_memory_beam_args())) as pipeline:
        row_cleaner.clean_split(
            pipeline,
            beam.Create(records),
            SCHEMA.SerializeToString(),
            str(examples_dir),
            str(quarantine_dir),
        )
    clean = []
    for path in glob.glob(os.path.join(examples_dir, "*.gz")):
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            clean.append(tf.train.Example.FromString(record.numpy()))
    rows = list(quarantine.read_rows(str(out / "quarantine")))
    return clean, rows


def test_no_invalid_number_is_in_the_cleaned_examples(cleaned):
    clean, _ = cleaned
    assert len(clean) == GOOD_ROWS
    for ex in clean:
        for feature in ex.features.feature.values():
            for v in feature.float_list.value:
                assert values.float_problem(v) is None


def test_each_is_quarantined_with_its_reason(cleaned):
    _, rows = cleaned
    by_mark = {r.features["trip_start_timestamp"][0]: r for r in rows}
    assert sorted(by_mark) == [1_000 + i for i in range(len(HOSTILE))]
    for i, (row, _) in enumerate(HOSTILE):
        (name,) = row
        reasons = by_mark[1_000 + i].reasons
        assert len(reasons) == 1 and reasons[0].startswith(f"{name}: ")
        assert "finite" in reasons[0] or "NaN" in reasons[0]
