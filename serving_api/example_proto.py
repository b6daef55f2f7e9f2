"""tf.Example's message class without importing TensorFlow.

`mlops predict` over REST only needs to serialize tf.Examples, but TensorFlow's generated
`example_pb2` lives in the `tensorflow` package, and importing it runs TensorFlow's whole
start-up (~6 s, a few hundred MB, its C++ log lines). The wire format of tf.Example is frozen
(field numbers and types of tensorflow/core/example/{feature,example}.proto, which TF Serving,
TFX and every reader depend on), so this module builds the same messages, under the same full
names, from their descriptors in a pool of its own (never TensorFlow's default pool, so both
classes can live in one process). tests/serving_api/test_example_proto.py checks that every
message here is TensorFlow's descriptor for descriptor and that rows serialize to the same bytes.
"""

from __future__ import annotations

import functools

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

# The messages a tf.Example is made of, as TensorFlow declares them (FeatureList, FeatureLists
# and SequenceExample are left out: nothing here writes them).
FILE_NAME = "tensorflow/core/example/example_subset.proto"
MESSAGES = ("BytesList", "FloatList", "Int64List", "Feature", "Features", "Example")
_DESCRIPTOR = """
package: "tensorflow"
syntax: "proto3"
message_type {
  name: "BytesList"
  field { name: "value" number: 1 label: LABEL_REPEATED type: TYPE_BYTES }
}
message_type {
  name: "FloatList"
  field {
    name: "value" number: 1 label: LABEL_REPEATED type: TYPE_FLOAT options { packed: true }
  }
}
message_type {
  name: "Int64List"
  field {
    name: "value" number: 1 label: LABEL_REPEATED type: TYPE_INT64 options { packed: true }
  }
}
message_type {
  name: "Feature"
  field {
    name: "bytes_list" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
    type_name: ".tensorflow.BytesList" oneof_index: 0
  }
  field {
    name: "float_list" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
    type_name: ".tensorflow.FloatList" oneof_index: 0
  }
  field {
    name: "int64_list" number: 3 label: LABEL_OPTIONAL type: TYPE_MESSAGE
    type_name: ".tensorflow.Int64List" oneof_index: 0
  }
  oneof_decl { name: "kind" }
}
message_type {
  name: "Features"
  field {
    name: "feature" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
    type_name: ".tensorflow.Features.FeatureEntry"
  }
  nested_type {
    name: "FeatureEntry"
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    field {
      name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
      type_name: ".tensorflow.Feature"
    }
    options { map_entry: true }
  }
}
message_type {
  name: "Example"
  field {
    name: "features" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
    type_name: ".tensorflow.Features"
  }
}
"""


@functools.cache
def pool() -> descriptor_pool.DescriptorPool:
    """The pool holding this module's tf.Example messages (not protobuf's default pool)."""
    own = descriptor_pool.DescriptorPool()
    own.Add(text_format.Parse(_DESCRIPTOR, descriptor_pb2.FileDescriptorProto(name=FILE_NAME)))
    return own


@functools.cache
def example_class() -> type:
    """tf.Example's message class: `example_class()()` is an empty tf.Example."""
    return message_factory.GetMessageClass(pool().FindMessageTypeByName("tensorflow.Example"))
