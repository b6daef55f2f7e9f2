"""serving_api/example_proto.py is TensorFlow's tf.Example: same descriptors, same bytes."""

from __future__ import annotations

import subprocess
import sys

from google.protobuf import descriptor_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorflow.core.example import example_pb2, feature_pb2

from modules import features
from serving_api import example_proto, examples
from tests.paths import PROJECT_ROOT


def _proto(descriptor) -> descriptor_pb2.DescriptorProto:
    out = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(out)
    return out


def test_every_message_is_tensorflows_descriptor_for_descriptor():
    tensorflows = {**feature_pb2.DESCRIPTOR.message_types_by_name}
    tensorflows.update(example_pb2.DESCRIPTOR.message_types_by_name)
    ours = example_proto.pool().FindFileByName(example_proto.FILE_NAME).message_types_by_name
    assert set(ours) == set(example_proto.MESSAGES)
    for name in example_proto.MESSAGES:
        assert _proto(ours[name]) == _proto(tensorflows[name]), name
        assert ours[name].full_name == tensorflows[name].full_name


_text = st.text(max_size=12)
_values = st.one_of(
    st.none(),
    st.just(""),
    _text,
    st.binary(max_size=12),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.booleans(),
)
_keys = st.sampled_from([*features.RAW_FEATURE_KEYS, "extra", "ünïcode", ""])


def _encode(row: dict, example_class) -> bytes | str:
    """row_to_example's bytes with `example_class`, or the error it stops with."""
    original = examples.example_class
    examples.example_class = lambda: example_class
    try:
        return examples.row_to_example(row, list(row))
    except (ValueError, TypeError, OverflowError) as e:
        return type(e).__name__
    finally:
        examples.example_class = original


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=20))
def test_rows_serialize_to_tensorflows_bytes(row):
    """Any row through serving_api.examples.row_to_example, with TensorFlow's class and with
    ours: the same bytes (or the same refusal), so the server, the request log and TF's parsers
    see exactly what they saw before."""
    ours = _encode(row, example_proto.example_class())
    assert ours == _encode(row, example_pb2.Example)


def test_the_encoder_imports_no_tensorflow():
    code = (
        "import sys; from serving_api.examples import row_to_example; "
        "row_to_example({'fare': 7.25, 'company': 'Flash Cab', 'trip_seconds': '540'}); "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False"]
