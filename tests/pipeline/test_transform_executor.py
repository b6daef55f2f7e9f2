"""FastIOTransformExecutor writes what TFX's Transform executor writes, read back as the Trainer
reads it: the same transformed examples (parsed), the same transform graph metadata and
vocabularies, in Beam's shard names. Real executors on a small ExampleGen + RowCleaner output."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

import pytest
import tensorflow as tf
from tfx.components.transform import executor as tfx_transform
from tfx_bsl.tfxio import tf_example_record

from pipeline.batched_tfxio import READ_BATCH_SIZE, BatchedTFExampleRecord
from pipeline.config import PipelineConfig
from pipeline.testing import transform_run
from pipeline.testing.samples import write_sample
from pipeline.transform_executor import FastIOTransformExecutor, FastIOTransformProcessor

pytestmark = pytest.mark.slow  # four Transform runs (about 15 s each)

ROWS = 2500  # a train split of ~2,000 rows: two read batches of READ_BATCH_SIZE and a rest
SPLITS = ("train", "eval")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict[str, str]]:
    """Outputs of: ours; TFX's with the batch size ours reads (the same batches, so the same
    float sums); TFX's as the pipeline runs it (tfx_bsl's adaptive batch sizes)."""
    root = tmp_path_factory.mktemp("transform")
    config = PipelineConfig()
    write_sample(root / "data", rows=ROWS)
    examples = transform_run.prepare_examples(str(root / "data"), str(root / "prep"), config)
    out = {
        "ours": transform_run.run_transform(
            FastIOTransformExecutor, examples, str(root / "ours"), config
        ),
        "stock": transform_run.run_transform(
            tfx_transform.Executor, examples, str(root / "stock"), config
        ),
    }
    stock_get = tfx_transform.TransformProcessor._GetDesiredBatchSize  # noqa: SLF001
    tfx_transform.TransformProcessor._GetDesiredBatchSize = lambda self, *a: READ_BATCH_SIZE  # noqa: SLF001
    try:
        out["stock_fixed_batches"] = transform_run.run_transform(
            tfx_transform.Executor, examples, str(root / "stock_fixed"), config
        )
    finally:
        tfx_transform.TransformProcessor._GetDesiredBatchSize = stock_get  # noqa: SLF001
    return out


def _rows(run: dict[str, str], split: str):
    return transform_run.transformed_rows(run["transformed_examples"], split)


@pytest.mark.parametrize("split", SPLITS)
def test_same_examples_as_tfx_reading_the_same_batches(runs, split):
    ours = _rows(runs["ours"], split)
    assert sum(ours.values()) > 400
    assert ours == _rows(runs["stock_fixed_batches"], split)


@pytest.mark.parametrize("split", SPLITS)
def test_against_tfx_adaptive_batches_only_float_rounding_differs(runs, split):
    """tf.Transform sums each batch in float32, so the z-scores' last bits follow the batch
    sizes, which tfx_bsl's adaptive batching picks by timing: identical ids, vocabularies and
    labels, floats within a few float32 ulps (a wrong mean or variance would move them by far
    more)."""
    gap = transform_run.float_gap(_rows(runs["ours"], split), _rows(runs["stock"], split))
    assert gap is not None
    assert gap < 1e-5  # float32's epsilon is 1.2e-7


def test_same_transform_graph_metadata_and_vocabularies(runs):
    ours = transform_run.graph_files(runs["ours"]["transform_graph"])
    assert any("vocab" in name or "assets" in name for name in ours), sorted(ours)
    assert ours == transform_run.graph_files(runs["stock"]["transform_graph"])
    assert ours == transform_run.graph_files(runs["stock_fixed_batches"]["transform_graph"])


def test_the_trainer_reads_the_output_as_tfx_writes_it(runs):
    """Beam's shard names in each split directory and nothing else (no temporary files left
    for the Trainer's `Split-<name>/*` glob), and the graph transforms raw features."""
    import tensorflow_transform as tft

    for split in SPLITS:
        split_dir = Path(runs["ours"]["transformed_examples"], f"Split-{split}")
        names = sorted(p.name for p in split_dir.iterdir())
        stock = sorted(
            p.name for p in Path(runs["stock"]["transformed_examples"], f"Split-{split}").iterdir()
        )
        assert names and all(
            re.fullmatch(r"transformed_examples-\d{5}-of-\d{5}\.gz", n) for n in names
        ), names
        assert len(names) == len(stock)
    output = tft.TFTransformOutput(runs["ours"]["transform_graph"])
    assert output.transformed_feature_spec() == (
        tft.TFTransformOutput(runs["stock"]["transform_graph"]).transformed_feature_spec()
    )


def test_the_stock_processor_is_restored_after_do(runs):
    assert runs["ours"]  # a Do() has run in this process
    assert tfx_transform.TransformProcessor is not FastIOTransformProcessor
    assert tfx_transform.TransformProcessor.__module__ == tfx_transform.__name__


def test_other_files_keep_tfx_reader(tmp_path):
    """Only gzipped TFRecord files take the batched reader; anything else stays TFX's."""
    plain = tmp_path / "data.tfrecord"
    with tf.io.TFRecordWriter(str(plain)) as writer:
        writer.write(tf.train.Example().SerializeToString())
    stock = tf_example_record.TFExampleRecord(str(plain))
    assert BatchedTFExampleRecord.replacing(stock) is stock
    missing = tf_example_record.TFExampleRecord(os.path.join(tmp_path, "none-*"))
    assert BatchedTFExampleRecord.replacing(missing) is missing
    gz = tmp_path / "data.gz"
    with tf.io.TFRecordWriter(str(gz), tf.io.TFRecordOptions("GZIP")) as writer:
        writer.write(tf.train.Example().SerializeToString())
    replaced = BatchedTFExampleRecord.replacing(
        tf_example_record.TFExampleRecord(os.path.join(tmp_path, "*.gz"))
    )
    assert isinstance(replaced, BatchedTFExampleRecord)
    assert glob.glob(os.path.join(tmp_path, "*.gz")) == [str(gz)]
