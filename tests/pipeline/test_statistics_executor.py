"""StatisticsGen's executor (pipeline/validation/drift.py SpanStatisticsGenExecutor) reads the
splits through pipeline/batched_tfxio.py and computes what TFX's executor computes: the same
statistics for every feature of both splits, but for the last bits of a mean or standard
deviation (float sums in another batch order), with the span set. Real executors, the
pipeline's statistics options, on a small ExampleGen + RowCleaner output."""

from __future__ import annotations

import math
import os

import pytest
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx.components.statistics_gen import executor as stock_executor
from tfx.components.util import tfxio_utils
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.types import artifact_utils, standard_artifacts
from tfx_bsl.tfxio import tf_example_record

from data_stats.measures import statistics_options
from pipeline import batched_tfxio
from pipeline.config import PipelineConfig, in_memory_beam_args
from pipeline.testing import transform_run
from pipeline.testing.samples import write_sample
from pipeline.validation.drift import SpanStatisticsGenExecutor

pytestmark = pytest.mark.slow  # ExampleGen, the RowCleaner and two StatisticsGen runs

ROWS = 2500  # ~2,000 train rows: two read batches of READ_BATCH_SIZE and a rest
SPLITS = ("train", "eval")
SPAN = 7


def _examples(uri: str) -> standard_artifacts.Examples:
    examples = standard_artifacts.Examples()
    examples.uri = uri
    examples.split_names = artifact_utils.encode_split_names(list(SPLITS))
    examples.span = SPAN
    return examples


def _run(executor_cls: type, examples_uri: str, out: str) -> standard_artifacts.ExampleStatistics:
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = out
    context = BaseBeamExecutor.Context(beam_pipeline_args=in_memory_beam_args())
    executor_cls(context).Do(
        {"examples": [_examples(examples_uri)]},
        {"statistics": [statistics]},
        {"stats_options_json": statistics_options().to_json(), "exclude_splits": "[]"},
    )
    return statistics


def _read(statistics, split: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    path = os.path.join(artifact_utils.get_split_uri([statistics], split), "FeatureStats.pb")
    with open(path, "rb") as f:
        return statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("statistics")
    write_sample(root / "data", rows=ROWS)
    examples = transform_run.prepare_examples(
        str(root / "data"), str(root / "prep"), PipelineConfig()
    )
    sources = []
    stock_source = batched_tfxio.BatchedTFExampleRecord.BeamSource

    def counting_source(self, *args, **kwargs):
        sources.append(type(self).__name__)
        return stock_source(self, *args, **kwargs)

    batched_tfxio.BatchedTFExampleRecord.BeamSource = counting_source
    try:
        ours = _run(SpanStatisticsGenExecutor, examples, str(root / "ours"))
    finally:
        batched_tfxio.BatchedTFExampleRecord.BeamSource = stock_source
    stock = _run(stock_executor.Executor, examples, str(root / "stock"))
    return {"ours": ours, "stock": stock, "batched_sources": sources, "examples": examples}


def test_every_split_is_read_by_the_batched_reader(runs):
    assert runs["batched_sources"] == ["BatchedTFExampleRecord"] * len(SPLITS)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize("split", SPLITS)
def test_same_statistics_as_tfx_but_the_last_bits_of_sums(runs, split):
    ours, stock = _read(runs["ours"], split), _read(runs["stock"], split)
    assert ours.datasets[0].num_examples == stock.datasets[0].num_examples > 0
    ours_features = {tuple(f.path.step): f for f in ours.datasets[0].features}
    stock_features = {tuple(f.path.step): f for f in stock.datasets[0].features}
    assert ours_features.keys() == stock_features.keys()
    for path, feature in stock_features.items():
        mine = ours_features[path]
        if feature.HasField("num_stats"):
            for field in ("mean", "std_dev"):
                a, b = getattr(mine.num_stats, field), getattr(feature.num_stats, field)
                assert _close(a, b), (path, field, a, b)
                setattr(mine.num_stats, field, 0.0)
                setattr(feature.num_stats, field, 0.0)
        assert mine == feature, path


def test_the_statistics_carry_the_span_and_tfx_reader_is_restored(runs):
    assert runs["ours"].span == SPAN
    from tfx_bsl.public import tfxio

    assert tfxio_utils.get_split_tfxio.__module__ == "tfx.components.util.tfxio_utils"
    stock = tfxio_utils.get_split_tfxio(
        examples=[_examples(runs["examples"])], split="train", telemetry_descriptors=["test"]
    )
    assert type(stock) is tfxio.TFExampleRecord


def test_files_that_are_not_gzipped_keep_tfx_reader(tmp_path):
    plain = tmp_path / "data_tfrecord-00000-of-00001"
    plain.write_bytes(b"")
    stock = tf_example_record.TFExampleRecord(file_pattern=[str(plain)])
    assert batched_tfxio.batched(stock) is stock
    assert batched_tfxio.batched("not a tfxio") == "not a tfxio"
