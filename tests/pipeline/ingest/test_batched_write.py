"""ExampleGen's batched write path (pipeline/ingest/example_shuffle.py): the split of every row
is the one TFX's own partition picks, the files carry the names TFX's writer gives, and a split
by a feature (which the batch path does not do) still takes the per-record path."""

from __future__ import annotations

import glob
import os
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import in_memory_beam_args

BUCKET_COUNTS = st.lists(st.integers(1, 20), min_size=1, max_size=5)


@settings(max_examples=200, deadline=None)
@given(records=st.lists(st.binary(max_size=64), max_size=60), hash_buckets=BUCKET_COUNTS)
def test_split_indices_are_tfx_partition_fn_on_random_records(records, hash_buckets):
    from tfx.components.example_gen.base_example_gen_executor import _PartitionFn
    from tfx.proto import example_gen_pb2

    from pipeline.ingest.example_shuffle import split_indices

    cumulative = [sum(hash_buckets[: i + 1]) for i in range(len(hash_buckets))]
    config = example_gen_pb2.SplitConfig()
    expected = [_PartitionFn(r, len(cumulative), cumulative, config) for r in records]
    assert split_indices(records, cumulative).tolist() == expected


def test_split_indices_agree_with_tfx_on_serialized_examples_at_every_split_boundary():
    """Many real records through the pipeline's 4:1 split and a lopsided one: every split is
    reached, and each record lands where TFX puts it."""
    import tensorflow as tf
    from tfx.components.example_gen.base_example_gen_executor import _PartitionFn
    from tfx.proto import example_gen_pb2

    from pipeline.ingest.example_shuffle import split_indices

    records = [
        tf.train.Example(
            features=tf.train.Features(
                feature={"x": tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))}
            )
        ).SerializeToString(deterministic=True)
        for i in range(3000)
    ]
    for cumulative in ([4, 5], [1, 2, 100, 101]):
        ours = split_indices(records, cumulative).tolist()
        tfx = [
            _PartitionFn(r, len(cumulative), cumulative, example_gen_pb2.SplitConfig())
            for r in records
        ]
        assert ours == tfx
        assert set(ours) == set(range(len(cumulative)))


def test_published_shards_are_named_as_write_to_tfrecord_names_them(tmp_path):
    import tensorflow as tf

    from pipeline.tfrecord_shards import TEMP_SUFFIX, publish

    temp = tmp_path / "temp"
    temp.mkdir()
    paths = []
    for name, records in (("b", [b"x", b"y"]), ("a", [b"z"]), ("c", [])):
        paths.append(str(temp / f"{name}{TEMP_SUFFIX}"))
        with tf.io.TFRecordWriter(paths[-1], options="GZIP") as w:
            for r in records:
                w.write(r)
    prefix = str(tmp_path / "Split-train" / "data_tfrecord")
    published = publish(paths, prefix, str(temp))
    names = sorted(os.listdir(tmp_path / "Split-train"))
    assert names == [f"data_tfrecord-0000{i}-of-00003.gz" for i in range(3)]
    assert sorted(os.path.basename(p) for p in published) == names
    assert not temp.exists()
    files = sorted(glob.glob(str(tmp_path / "Split-train" / "*")))
    read = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    assert sorted(read) == [b"x", b"y", b"z"]

    (path,) = publish([], str(tmp_path / "Split-eval" / "data_tfrecord"))
    assert os.path.basename(path) == "data_tfrecord-00000-of-00001.gz"
    assert list(tf.data.TFRecordDataset([path], compression_type="GZIP")) == []


def test_only_files_of_completed_bundles_are_published(tmp_path):
    """A file left in the writer's temporary directory by an attempt that did not complete (a
    retried bundle on a remote runner) is not published: only the paths the bundles emitted."""
    import apache_beam as beam
    import tensorflow as tf

    from pipeline.tfrecord_shards import TEMP_SUFFIX, BundleWriter, WriteShards

    temp = tmp_path / "temp"
    temp.mkdir()
    with tf.io.TFRecordWriter(str(temp / f"partial{TEMP_SUFFIX}"), options="GZIP") as w:
        w.write(b"from a failed attempt")
    prefix = str(tmp_path / "Split-train" / "data_tfrecord")
    with beam.Pipeline() as pipeline:
        _ = (
            pipeline
            | beam.Create([[b"a", b"b"], [b"c"]])
            | WriteShards(BundleWriter(str(temp)), prefix)
        )
    files = sorted(glob.glob(str(tmp_path / "Split-train" / "*")))
    read = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    assert sorted(read) == [b"a", b"b", b"c"]
    assert not temp.exists()


def test_file_to_batches_groups_the_stock_parsers_records(tmp_path, monkeypatch):
    """A file with quotes takes TFX's parser; its records come in lists of STOCK_BATCH_ROWS,
    in file order, the same records file_to_records gives one by one."""
    from pipeline.ingest import csv_arrow

    path = tmp_path / "quoted.csv"
    path.write_text("a,b\n" + "".join(f'{i},"x{i}"\n' for i in range(25)))
    names = ["a", "b"]
    types = csv_arrow.infer_column_types(str(path), names)
    monkeypatch.setattr(csv_arrow, "STOCK_BATCH_ROWS", 10)
    batches = list(csv_arrow.file_to_batches(str(path), names, types))
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [r for b in batches for r in b] == list(
        csv_arrow.file_to_records(str(path), names, types)
    )


def _properties(data_root, input_config, output_config) -> dict:
    from google.protobuf import json_format
    from tfx.proto import example_gen_pb2

    return {
        "input_base": str(data_root),
        "input_config": json_format.MessageToJson(input_config),
        "output_config": json_format.MessageToJson(output_config),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
    }


def test_a_split_by_feature_takes_the_per_record_path(tmp_path):
    import apache_beam as beam
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.proto import example_gen_pb2

    from pipeline.ingest.csv_example_gen import StreamingCsvExampleGenExecutor

    executor = StreamingCsvExampleGenExecutor(
        BaseBeamExecutor.Context(beam_pipeline_args=in_memory_beam_args())
    )
    input_config = example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name="single_split", pattern="*.csv")]
    )
    split = example_gen_pb2.SplitConfig.Split
    by_hash = example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[split(name="train", hash_buckets=2), split(name="eval", hash_buckets=1)]
        )
    )
    by_feature = example_gen_pb2.Output()
    by_feature.CopyFrom(by_hash)
    by_feature.split_config.partition_feature_name = "company"
    (tmp_path / "data.csv").write_text("company,fare\na,1.0\n")
    pipeline = beam.Pipeline()
    for config, expected in ((by_hash, ["train", "eval"]), (by_feature, None)):
        props = _properties(tmp_path, input_config, config)
        found = executor._batches_by_beam(pipeline, props, input_config, config)
        assert (None if found is None else list(found)) == expected


def test_input_splits_are_written_batched_with_tfx_names_and_examples(tmp_path):
    """No output split config: each input split is its own output split, as TFX writes it."""
    import tensorflow as tf
    from tfx.components.example_gen.csv_example_gen.executor import Executor
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts

    from pipeline.ingest.csv_example_gen import StreamingCsvExampleGenExecutor

    for name, rows in (("train", 40), ("eval", 7)):
        (tmp_path / "data" / name).mkdir(parents=True)
        lines = ["company,fare,trips"] + [f"c{i % 3},{i / 4},{i}" for i in range(rows)]
        (tmp_path / "data" / name / "part.csv").write_text("\n".join(lines) + "\n")
    input_config = example_gen_pb2.Input(
        splits=[
            example_gen_pb2.Input.Split(name="train", pattern="train/*"),
            example_gen_pb2.Input.Split(name="eval", pattern="eval/*"),
        ]
    )
    props = _properties(tmp_path / "data", input_config, example_gen_pb2.Output())
    written = {}
    for label, cls in (("stock", Executor), ("ours", StreamingCsvExampleGenExecutor)):
        examples = standard_artifacts.Examples()
        examples.uri = str(tmp_path / label)
        context = BaseBeamExecutor.Context(beam_pipeline_args=in_memory_beam_args())
        cls(context).Do({}, {"examples": [examples]}, dict(props))
        written[label] = {}
        for split in ("train", "eval"):
            files = sorted(glob.glob(str(tmp_path / label / f"Split-{split}" / "*")))
            assert all(
                re.fullmatch(r"data_tfrecord-\d{5}-of-\d{5}\.gz", os.path.basename(f))
                for f in files
            )
            written[label][split] = sorted(
                tf.train.Example.FromString(r.numpy()).SerializeToString(deterministic=True)
                for r in tf.data.TFRecordDataset(files, compression_type="GZIP")
            )
    assert written["ours"] == written["stock"]
    assert [len(written["ours"][s]) for s in ("train", "eval")] == [40, 7]
    assert sorted(os.listdir(tmp_path / "ours")) == ["Split-eval", "Split-train"]


def test_scatter_batches_puts_every_record_in_the_bucket_the_per_record_scatter_does(tmp_path):
    from collections import Counter

    from pipeline.ingest.digests import record_digest
    from pipeline.ingest.example_shuffle import _ScatterBatches, read_records

    records = [bytes([i % 251]) * (i % 300) for i in range(3000)] + [b"same"] * 5
    scatter = _ScatterBatches(str(tmp_path), 16)
    scatter.start_bundle()
    for start in range(0, len(records), 700):
        assert list(scatter.process(records[start : start + 700])) == []
    files = [wv.value for wv in scatter.finish_bundle()]
    found: Counter = Counter()
    for bucket, path in files:
        held = read_records(path)
        assert {record_digest(r) % 16 for r in held} == {bucket}
        found.update(held)
    assert found == Counter(records)
    assert len({bucket for bucket, _ in files}) == 16
