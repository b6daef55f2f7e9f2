"""ExampleGen's disk-spilling shuffle and the RowCleaner's digest-first de-duplication: the same
records as the in-memory versions they replace (docs/performance.md has what they save)."""

from __future__ import annotations

import csv
import glob
import json
import os
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import PipelineConfig, in_memory_beam_args, multi_processing_beam_args
from pipeline.testing.samples import TAXI_CSV, write_sample


def _records_in_order(pattern: str) -> list[bytes]:
    import tensorflow as tf

    files = sorted(glob.glob(pattern))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _rank_correlation(values: list[float]) -> float:
    """Spearman's rho between the values and their positions (1: sorted, ~0: no order)."""
    ranks = np.argsort(np.argsort(values, kind="stable"))
    return float(np.corrcoef(ranks, np.arange(len(values)))[0, 1])


def test_bounded_shuffle_keeps_every_record_and_loses_the_order(tmp_path):
    import apache_beam as beam

    from pipeline.ingest.example_shuffle import BoundedShuffle

    records = [b"%06d" % i for i in range(3000)] + [b"000007"] * 3  # sorted, with copies
    options = beam.options.pipeline_options.PipelineOptions(in_memory_beam_args())
    with beam.Pipeline(options=options) as p:
        _ = (
            p
            | beam.Create(records, reshuffle=False)
            | BoundedShuffle(str(tmp_path / "tmp"), buckets=8)
            | beam.io.WriteToTFRecord(str(tmp_path / "out" / "data"), file_name_suffix=".gz")
        )
    out = _records_in_order(str(tmp_path / "out" / "data*"))
    assert Counter(out) == Counter(records)
    assert abs(_rank_correlation([int(r) for r in out])) < 0.1
    assert os.listdir(tmp_path / "tmp") != []  # the transform leaves clean-up to its caller


def test_a_bucket_comes_out_in_the_same_order_whatever_order_its_files_came_in(tmp_path):
    from pipeline.ingest.example_shuffle import _LENGTH, _ShuffledBucket

    records = [b"row %d" % i for i in range(200)]
    orders = []
    for attempt in range(3):
        shuffled = random.Random(attempt).sample(records, len(records))
        paths = []
        for part in range(4):  # four bundles' files, split at different places each time
            path = tmp_path / f"{attempt}-{part}"
            path.write_bytes(
                b"".join(_LENGTH.pack(len(r)) + r for r in shuffled[part * 50 : part * 50 + 50])
            )
            paths.append(str(path))
        orders.append(list(_ShuffledBucket().process((5, random.Random(attempt).sample(paths, 4)))))
    assert sorted(orders[0]) == sorted(records)
    assert orders[0] != sorted(records)
    assert orders[0] == orders[1] == orders[2]


@pytest.mark.slow
@pytest.mark.parametrize("beam_args", ["in-memory", "multi-processing"])
def test_example_gen_shuffles_a_sorted_csv_and_cleans_up(tmp_path, beam_args):
    """A CSV sorted by fare: every row comes out, in no particular fare order, and the
    temporary bucket files are gone; in both of the DirectRunner's modes (multi-processing:
    the buckets are written and read by worker processes)."""
    from google.protobuf import json_format
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts

    from pipeline.ingest.csv_example_gen import StreamingCsvExampleGenExecutor
    from pipeline.ingest.example_shuffle import TEMP_DIR_NAME
    from pipeline.ingest.sources import output_config

    data = write_sample(tmp_path / "data", rows=1500)
    path = data / "span-1" / "data.csv"
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, sorted(reader, key=lambda r: float(r["fare"]))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "out")
    input_config = example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name="single_split", pattern="span-1/*.csv")]
    )
    properties = {
        "input_base": str(data),
        "input_config": json_format.MessageToJson(input_config),
        "output_config": json_format.MessageToJson(output_config()),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
    }
    args = in_memory_beam_args() if beam_args == "in-memory" else multi_processing_beam_args(2)
    context = BaseBeamExecutor.Context(beam_pipeline_args=args)
    StreamingCsvExampleGenExecutor(context).Do({}, {"examples": [examples]}, properties)

    from tensorflow.core.example import example_pb2

    fares = {}
    for split in json.loads(examples.split_names):
        records = _records_in_order(str(tmp_path / "out" / f"Split-{split}" / "*"))
        fares[split] = [
            example_pb2.Example.FromString(r).features.feature["fare"].float_list.value[0]
            for r in records
        ]
    assert sum(len(v) for v in fares.values()) == len(rows)
    assert abs(_rank_correlation(fares["train"])) < 0.15
    assert not (tmp_path / "out" / TEMP_DIR_NAME).exists()
    assert sorted(os.listdir(tmp_path / "out")) == ["Split-eval", "Split-train"]


def _dirty_split(dest: Path, rows: int, copies: int, bad: int) -> Path:
    """`rows` taxi rows as tf.Examples in dest/Split-train, then `copies` repeats of some of
    them and `bad` rows with an unknown payment type (each written twice)."""
    from data_stats.measures import examples_from_rows
    from pipeline.ingest.spans import schema_columns

    with open(TAXI_CSV, newline="") as f:
        source = [row for _, row in zip(range(rows), csv.DictReader(f), strict=False)]
    broken = [
        dict(r, payment_type="Bitcoin", trip_start_timestamp=str(i))
        for i, r in enumerate(source[:bad])
    ]
    all_rows = source + source[:copies] + broken + broken
    random.Random(0).shuffle(all_rows)
    columns = schema_columns(PipelineConfig().schema_path)
    split = dest / "Split-train"
    split.mkdir(parents=True)
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(split / "data_tfrecord-00000-of-00001.gz"), "GZIP") as w:
        for record in examples_from_rows(all_rows, columns):
            w.write(record)
    return dest


def _clean(examples_uri: Path, out: Path) -> tuple[Counter, dict]:
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.types import artifact_utils, standard_artifacts

    from pipeline.validation import quarantine as q
    from pipeline.validation.row_cleaner import Executor, QuarantinedExamples

    def examples(uri):
        e = standard_artifacts.Examples()
        e.uri = str(uri)
        e.split_names = artifact_utils.encode_split_names(["train"])
        return e

    schema = standard_artifacts.Schema()
    schema.uri = str(Path(PipelineConfig().schema_path).parent)
    quarantine = QuarantinedExamples()
    quarantine.uri = str(out / "quarantine")
    context = BaseBeamExecutor.Context(beam_pipeline_args=in_memory_beam_args())
    Executor(context).Do(
        {"examples": [examples(examples_uri)], "schema": [schema]},
        {q.CLEANED_EXAMPLES: [examples(out / "clean")], q.QUARANTINE: [quarantine]},
        {},
    )
    clean = Counter(_records_in_order(str(out / "clean" / "Split-train" / "*")))
    figures = {
        k: quarantine.get_int_custom_property(k)
        for k in (q.ROWS_IN, q.DUPLICATES, q.QUARANTINED, q.CLEAN)
    }
    return clean, figures


@pytest.mark.slow
def test_cleaner_drops_copies_only_and_is_exact_even_when_every_digest_collides(
    tmp_path, monkeypatch
):
    """Rows are grouped only when their digest repeats; a digest shared by different rows (made
    here by a digest that maps every row to 0) must not merge them."""
    from pipeline.ingest import digests
    from pipeline.validation import quarantine as q

    data = _dirty_split(tmp_path / "examples", rows=300, copies=20, bad=4)
    clean, figures = _clean(data, tmp_path / "normal")
    assert figures == {q.ROWS_IN: 328, q.DUPLICATES: 24, q.QUARANTINED: 4, q.CLEAN: 300}
    assert len(clean) == 300 and set(clean.values()) == {1}

    monkeypatch.setattr(digests, "record_digest", lambda record: 0)
    colliding, colliding_figures = _clean(data, tmp_path / "colliding")
    assert colliding == clean
    assert colliding_figures == figures
