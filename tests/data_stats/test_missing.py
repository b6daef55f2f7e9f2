"""Missingness as TFDV's statistics carry it: absent features plus empty value lists (what
CsvExampleGen writes for a blank CSV cell). Statistics come from TFDV itself, over tf.Examples
built the way CsvExampleGen builds them."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_data_validation as tfdv
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorflow_metadata.proto.v0 import statistics_pb2

from data_stats.missing import presence

ROWS = 200


def _csv_example(tract: int | None, fare: float, tags: list[bytes], company: bytes | None):
    """One row as CsvExampleGen writes it: a blank cell is the feature with an empty list."""
    feature = {
        "pickup_census_tract": tf.train.Feature(
            int64_list=tf.train.Int64List(value=[] if tract is None else [tract])
        ),
        "fare": tf.train.Feature(float_list=tf.train.FloatList(value=[fare])),
        "tags": tf.train.Feature(bytes_list=tf.train.BytesList(value=tags)),
    }
    if company is not None:  # absent altogether (another source's rows)
        feature["company"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[company]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _statistics(tmp_path) -> dict[str, statistics_pb2.CommonStatistics]:
    path = str(tmp_path / "examples.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(ROWS):
            writer.write(
                _csv_example(
                    tract=17031081500 if i == 0 else None,  # blank in all rows but one
                    fare=float(i),
                    tags=[b"a"] * (i % 4),  # 0..3 values: a quarter empty
                    company=None if i % 5 == 0 else b"Flash Cab",
                ).SerializeToString()
            )
    stats = tfdv.generate_statistics_from_tfrecord(path)
    out = {}
    for f in stats.datasets[0].features:
        kind = f.WhichOneof("stats")
        out[f.path.step[0]] = getattr(f, kind).common_stats
    return out


def test_blank_cells_count_as_missing_as_in_tfdv(tmp_path):
    common = _statistics(tmp_path)
    tract = common["pickup_census_tract"]
    assert tract.num_missing == 0 and tract.num_non_missing == ROWS  # what the page showed
    assert presence(tract).missing == ROWS - 1 and presence(tract).present == 1
    assert presence(common["fare"]).missing == 0
    assert presence(common["company"]).missing == ROWS // 5  # absent: num_missing as before
    tags = presence(common["tags"])  # several values per example: from the histogram
    assert tags.present + tags.missing == ROWS
    assert abs(tags.missing - ROWS // 4) <= ROWS // 10


@settings(max_examples=200, deadline=None)
@given(absent=st.integers(0, 10**6), empty=st.integers(0, 10**6), filled=st.integers(0, 10**6))
def test_univalent_counts_add_up(absent, empty, filled):
    common = statistics_pb2.CommonStatistics(
        num_missing=absent,
        num_non_missing=empty + filled,
        tot_num_values=filled,
        min_num_values=0 if empty else 1,
        max_num_values=1 if filled else 0,
    )
    seen = presence(common)
    assert (seen.present, seen.missing) == (filled, absent + empty)
    assert 0.0 <= seen.missing_fraction <= 1.0
