"""The RowCleaner's batched path (row_cleaner.clean_split given the split's file pattern): its
files are read in batches by TensorFlow's reader, checked column by column and written batch by
batch. It must clean exactly like the row-by-row path (clean_split given single rows): the same
rows cleaned, the same quarantine lines, the same figures, for hostile rows (non-finite numbers,
missing features, strings outside the domain, duplicates of good and of bad rows) spread over
several files."""

from __future__ import annotations

import collections
import glob
import json
import math
import os
import random

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.config import in_memory_beam_args
from pipeline.validation import quarantine, row_cleaner
from tests.pipeline.validation.test_row_checks import CHECKER, GOOD, SCHEMA, example

HOSTILE = [
    {"fare": [math.nan]},
    {"tips": [-math.inf]},
    {"trip_miles": [math.inf]},
    {"payment_type": [b"Bitcoin"]},
    {"company": [b"Flash Cab", b"Taxi Affiliation Services"]},
    {"fare": []},
    {"trip_start_hour": [31]},
    {"trip_start_day": [1, 2]},
    {"pickup_latitude": [-91.0]},
]


def _records() -> list[bytes]:
    """40 good rows (each its own trip_start_timestamp), the hostile ones, copies of both."""
    good = [
        example({**GOOD, "trip_start_timestamp": [i]}).SerializeToString(deterministic=True)
        for i in range(40)
    ]
    bad = [
        example({**GOOD, **row, "trip_start_timestamp": [1_000 + i]}).SerializeToString()
        for i, row in enumerate(HOSTILE)
    ]
    absent = {k: v for k, v in GOOD.items() if k != "tips"}
    bad.append(example({**absent, "trip_start_timestamp": [2_000]}).SerializeToString())
    records = good + bad + good[:5] + good[:2] + bad[:3]
    random.Random(0).shuffle(records)
    return records


def _write(path: str, records: list[bytes], compression: str = "GZIP") -> None:
    with tf.io.TFRecordWriter(path, compression) as writer:
        for record in records:
            writer.write(record)


def _read(pattern: str) -> list[bytes]:
    out = []
    for path in sorted(glob.glob(pattern)):
        out.extend(r.numpy() for r in tf.data.TFRecordDataset(path, compression_type="GZIP"))
    return out


def _clean(read, out, schema_bytes: bytes | None = SCHEMA.SerializeToString()) -> dict:
    examples_dir, quarantine_dir = out / "examples", out / "quarantine" / "Split-train"
    with beam.Pipeline(options=PipelineOptions(in_memory_beam_args())) as pipeline:
        row_cleaner.clean_split(
            pipeline, read, schema_bytes, str(examples_dir), str(quarantine_dir)
        )
    with open(quarantine_dir / quarantine.SUMMARY_FILE) as f:
        summary = json.load(f)
    lines = []
    for path in glob.glob(str(quarantine_dir / "quarantine*.jsonl")):
        with open(path) as f:
            lines.extend(f.read().splitlines())
    return {
        "files": sorted(os.listdir(examples_dir)),
        "clean": collections.Counter(_read(str(examples_dir / "data_tfrecord-*"))),
        "deduplicated": collections.Counter(
            _read(str(examples_dir / "data_tfrecord_deduplicated-*"))
        ),
        "quarantine": sorted(lines),
        "summary": summary,
    }


def _split(root, records: list[bytes]):
    split = root / "input"
    split.mkdir()
    _write(str(split / "data_tfrecord-00000-of-00003.gz"), records[:30])
    _write(str(split / "data_tfrecord-00001-of-00003.gz"), records[30:])
    _write(str(split / "data_tfrecord-00002-of-00003.gz"), [])  # an empty shard
    return str(split / "*")


@pytest.fixture(scope="module")
def both_paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("batches")
    records = _records()
    pattern = _split(root, records)
    batched = _clean(pattern, root / "batched")
    by_row = _clean(beam.Create(records), root / "by_row")
    return records, batched, by_row


def test_without_a_schema_both_paths_only_drop_duplicates(tmp_path):
    records = _records()
    pattern = _split(tmp_path, records)
    batched = _clean(pattern, tmp_path / "batched", schema_bytes=None)
    assert batched == _clean(beam.Create(records), tmp_path / "by_row", schema_bytes=None)
    assert set((batched["clean"] + batched["deduplicated"]).values()) == {1}
    assert set(batched["clean"] + batched["deduplicated"]) == set(records)
    assert batched["summary"][quarantine.DUPLICATES] == len(records) - len(set(records))
    assert batched["summary"][quarantine.QUARANTINED] == 0


def test_batched_path_cleans_exactly_like_the_row_by_row_path(both_paths):
    _, batched, by_row = both_paths
    assert batched == by_row


def test_figures_match_the_row_checks(both_paths):
    records, batched, _ = both_paths
    distinct = set(records)
    verdicts = {r: CHECKER.check_serialized(r) for r in distinct}
    clean = {verdicts[r][0] for r in distinct if verdicts[r][0] is not None}
    bad = [r for r in distinct if verdicts[r][0] is None]
    summary = batched["summary"]
    assert summary[quarantine.ROWS_IN] == len(records) == 60
    assert summary[quarantine.DUPLICATES] == len(records) - len(distinct) == 10
    assert summary[quarantine.QUARANTINED] == len(bad) == len(HOSTILE) + 1
    assert summary[quarantine.CLEAN] == len(clean) == 40
    # Every clean row once; the repeated ones in the deduplicated file, the others as read.
    written = batched["clean"] + batched["deduplicated"]
    assert set(written.values()) == {1} and set(written) == clean
    assert len(batched["deduplicated"]) == 5
    copies = {
        json.loads(line)["example"]: json.loads(line)["copies"] for line in batched["quarantine"]
    }
    assert sorted(copies.values()) == [1] * (len(bad) - 3) + [2] * 3


def test_output_files_are_named_as_beams_tfrecord_sink_names_them(both_paths):
    _, batched, _ = both_paths
    assert batched["files"] == [
        "data_tfrecord-00000-of-00001.gz",
        "data_tfrecord_deduplicated-00000-of-00001.gz",
    ]


def test_read_record_batches_keeps_each_files_order_and_reads_plain_files(tmp_path):
    first = [b"a%d" % i for i in range(7)]
    second = [b"b%d" % i for i in range(3)]
    _write(str(tmp_path / "part-0.gz"), first)
    _write(str(tmp_path / "part-1"), second, compression="")
    with beam.Pipeline(options=PipelineOptions(in_memory_beam_args())) as pipeline:
        batches = pipeline | row_cleaner.ReadRecordBatches(str(tmp_path / "part-*"), 3)
        _ = (
            batches
            | beam.Map(lambda b: json.dumps([r.decode() for r in b]))
            | beam.io.WriteToText(str(tmp_path / "seen"), shard_name_template="")
        )
    with open(tmp_path / "seen") as f:
        seen = [[r.encode() for r in json.loads(line)] for line in f]
    assert all(1 <= len(batch) <= 3 for batch in seen)
    rows = [r for batch in seen for r in batch]
    assert sorted(rows) == sorted(first + second)
    assert [r for r in rows if r.startswith(b"a")] == first
    assert [r for r in rows if r.startswith(b"b")] == second


def test_read_record_batches_refuses_a_pattern_that_matches_nothing(tmp_path):
    with pytest.raises(Exception, match="No files found"):
        with beam.Pipeline(options=PipelineOptions(in_memory_beam_args())) as pipeline:
            _ = pipeline | row_cleaner.ReadRecordBatches(str(tmp_path / "nothing-*"))


def test_nothing_to_write_leaves_one_empty_shard_and_no_temporary_files(tmp_path):
    with beam.Pipeline(options=PipelineOptions(in_memory_beam_args())) as pipeline:
        _ = (
            pipeline
            | beam.Create([[b"x"]])
            | beam.Filter(lambda batch: False)
            | row_cleaner.write_record_batches(str(tmp_path / "out"), "data")
        )
    assert os.listdir(tmp_path / "out") == ["data-00000-of-00001.gz"]
    assert _read(str(tmp_path / "out" / "*")) == []
