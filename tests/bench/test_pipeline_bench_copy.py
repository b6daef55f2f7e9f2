"""`make bench-pipeline` runs this project from a private copy of its code (so touching a module
never edits the checkout): the copy must hold everything a run reads, dataset specs included."""

import os
import subprocess
import sys

from bench import pipeline_bench

PROBE = (
    "import os; from modules import features, dataset_spec; s = features.SPEC; "
    "print(s.name, dataset_spec.DATASETS_DIR, s.schema_path, os.path.exists(s.schema_path))"
)


def test_the_benchmarks_private_copy_resolves_the_dataset_spec_and_schema(tmp_path):
    code = pipeline_bench.copy_code(tmp_path / "project")
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(code)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    name, datasets_dir, schema, schema_exists = out.stdout.split()
    assert name == "taxi"
    assert datasets_dir == str(code / "datasets")  # the copy's, not the checkout's
    assert schema.startswith(str(code)) and schema_exists == "True"


def test_eval_rows_match_whatever_order_each_example_gen_wrote_the_features_in(tmp_path):
    """The quality comparison scores every run on the eval rows all ExampleGens held out; the
    template's and this project's write the same example with features in different orders."""
    import tensorflow as tf

    def write(directory, examples):
        split = directory / "Split-eval"
        split.mkdir(parents=True)
        options = tf.io.TFRecordOptions(compression_type="GZIP")
        with tf.io.TFRecordWriter(str(split / "data.gz"), options) as w:
            for example in examples:
                w.write(example)

    def example(order):
        """Serialized with the features in `order` on the wire (as each ExampleGen's encoder
        writes them): one Features message per key, concatenated (protobuf merges them)."""
        values = {"fare": 10.0, "tips": 3.0, "trip_miles": 1.5}
        features = b""
        for key in order:
            one = tf.train.Features()
            one.feature[key].float_list.value.append(values[key])
            features += one.SerializeToString()
        assert len(features) < 128  # one varint byte for the length below
        return b"\x0a" + bytes([len(features)]) + features  # Example.features, field 1

    forward = example(["fare", "tips", "trip_miles"])
    backward = example(["trip_miles", "tips", "fare"])
    assert forward != backward  # the same example, different bytes
    other = tf.train.Example()
    other.features.feature["fare"].float_list.value.append(99.0)
    write(tmp_path / "a", [forward, other.SerializeToString()])
    write(tmp_path / "b", [backward])
    common = pipeline_bench._eval_records(str(tmp_path / "a")) & pipeline_bench._eval_records(
        str(tmp_path / "b")
    )
    assert len(common) == 1
    (row,) = common
    assert tf.train.Example.FromString(row) == tf.train.Example.FromString(forward)
