"""Server options under TF Serving's flag names, and its text-proto config files.

Model configs use the real ModelServerConfig proto from tensorflow-serving-api, so a file written
for tensorflow_model_server works here unchanged. BatchingParameters and MonitoringConfig are not
shipped in that package; they are declared here with TF Serving's field names and numbers so the
same text files parse.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from serving.canary import CanarySplit
from serving.event_loop import DEFAULT_EVENT_LOOP
from serving.limits import RequestLimits
from serving_api import DEFAULT_METRICS_PATH

ModelServerConfig = model_server_config_pb2.ModelServerConfig


def _declare_protos():
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    f = descriptor_pb2.FileDescriptorProto(
        name="serving/compat_config.proto",
        package="tensorflow.serving",
        dependency=["google/protobuf/wrappers.proto"],
        syntax="proto3",
    )
    lab_opt = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    lab_rep = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    t_msg = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
    t_i64 = descriptor_pb2.FieldDescriptorProto.TYPE_INT64
    t_bool = descriptor_pb2.FieldDescriptorProto.TYPE_BOOL
    t_str = descriptor_pb2.FieldDescriptorProto.TYPE_STRING

    def msg_field(name, number, type_name):
        return descriptor_pb2.FieldDescriptorProto(
            name=name, number=number, label=lab_opt, type=t_msg, type_name=type_name
        )

    batching = f.message_type.add(name="BatchingParameters")
    for name, number in [
        ("max_batch_size", 1),
        ("batch_timeout_micros", 2),
        ("max_enqueued_batches", 3),
        ("num_batch_threads", 4),
        ("max_execution_batch_size", 10),
    ]:
        batching.field.append(msg_field(name, number, ".google.protobuf.Int64Value"))
    batching.field.append(msg_field("thread_pool_name", 5, ".google.protobuf.StringValue"))
    batching.field.append(
        msg_field("enable_large_batch_splitting", 9, ".google.protobuf.BoolValue")
    )
    batching.field.append(
        descriptor_pb2.FieldDescriptorProto(
            name="allowed_batch_sizes", number=6, label=lab_rep, type=t_i64
        )
    )
    batching.field.append(
        descriptor_pb2.FieldDescriptorProto(
            name="pad_variable_length_inputs", number=7, label=lab_opt, type=t_bool
        )
    )
    prom = f.message_type.add(name="PrometheusConfig")
    prom.field.append(
        descriptor_pb2.FieldDescriptorProto(name="enable", number=1, label=lab_opt, type=t_bool)
    )
    prom.field.append(
        descriptor_pb2.FieldDescriptorProto(name="path", number=2, label=lab_opt, type=t_str)
    )
    mon = f.message_type.add(name="MonitoringConfig")
    mon.field.append(msg_field("prometheus_config", 1, ".tensorflow.serving.PrometheusConfig"))
    ssl = f.message_type.add(name="SSLConfig")  # tensorflow_serving/config/ssl_config.proto
    for name, number in [("server_key", 1), ("server_cert", 2), ("custom_ca", 3)]:
        ssl.field.append(
            descriptor_pb2.FieldDescriptorProto(name=name, number=number, label=lab_opt, type=t_str)
        )
    ssl.field.append(
        descriptor_pb2.FieldDescriptorProto(
            name="client_verify", number=4, label=lab_opt, type=t_bool
        )
    )
    pool.Add(f)
    get = message_factory.GetMessageClass
    return (
        get(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")),
        get(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")),
        get(pool.FindMessageTypeByName("tensorflow.serving.SSLConfig")),
    )


BatchingParameters, MonitoringConfig, SSLConfig = _declare_protos()


@dataclass
class BatchingOptions:
    """Dynamic batching knobs (TF Serving's BatchingParameters, with its defaults where sensible).

    batch_timeout_micros=0 means "no waiting": a batch goes out as soon as a batch thread is free,
    so queues only form while the model is busy and batches size themselves to the load.
    """

    max_batch_size: int = 128
    batch_timeout_micros: int = 0
    num_batch_threads: int = 1
    max_enqueued_batches: int = 1000
    # A request of more examples than max_execution_batch_size runs as consecutive model calls of
    # that many, each queued behind the requests that arrived meanwhile (TF Serving's names; on
    # by default here, unlike TF Serving). Issue 26: one 100,000-example call held the batch
    # thread 140-300 ms and the GIL 33-44 ms at a time (tf.constant of the whole input); in
    # chunks of 1,024 the same examples took 176 ms with no GIL hold over 7 ms (chunks of 128:
    # 659 ms).
    enable_large_batch_splitting: bool = True
    max_execution_batch_size: int = 1024

    @classmethod
    def from_text_proto(cls, text: str) -> BatchingOptions:
        params = text_format.Parse(text, BatchingParameters())
        opts = cls()
        for name in (
            "max_batch_size",
            "batch_timeout_micros",
            "num_batch_threads",
            "max_enqueued_batches",
        ):
            if params.HasField(name):
                setattr(opts, name, int(getattr(params, name).value))
        if params.HasField("max_execution_batch_size"):
            opts.max_execution_batch_size = int(params.max_execution_batch_size.value)
        if params.HasField("enable_large_batch_splitting"):
            opts.enable_large_batch_splitting = bool(params.enable_large_batch_splitting.value)
        return opts


@dataclass
class ServerOptions:
    """Everything `mlops serve` accepts; field names are TF Serving's flag names."""

    port: int = 8500
    rest_api_port: int = 8501
    rest_api_host: str = "127.0.0.1"
    grpc_host: str = "127.0.0.1"  # explicit: never follows --rest_api_host
    model_name: str | None = None
    model_base_path: str | None = None
    model_config_file: str | None = None
    # TF Serving's default 0: read the model config file once; > 0 re-reads it when it changes.
    model_config_file_poll_wait_seconds: float = 0.0
    file_system_poll_wait_seconds: float = 1.0
    # On by default, unlike TF Serving (docs/serving.md#batching: the measured difference).
    enable_batching: bool = True
    batching: BatchingOptions = field(default_factory=BatchingOptions)
    metrics_path: str | None = DEFAULT_METRICS_PATH
    access_log: str | None = None
    max_body_bytes: int = 64 * 1024 * 1024
    grpc_max_message_bytes: int = 256 * 1024 * 1024
    # Replay assets.extra/tf_serving_warmup_requests before a version is AVAILABLE (warmup.py).
    enable_model_warmup: bool = True
    # Not a TF Serving flag: log requests as tf.Examples for skew checks (serving/request_log.py).
    request_log_dir: str | None = None
    # TF Serving's --ssl_config_file: gRPC over TLS (server_key/server_cert PEM, optional mTLS).
    ssl_config_file: str | None = None
    # Not TF Serving flags: hardening (docs/serving.md "Security" and "Limits").
    model_management: str = "loopback"  # ReloadConfig: off | loopback | any
    limits: RequestLimits = field(default_factory=RequestLimits)
    http_keepalive_timeout: float = 15.0  # idle / slow-request-head connections close after this
    http_body_timeout: float = 30.0  # a request body must arrive within this
    # Not a TF Serving flag: serving.canary.CanarySplit (--canary_percent); None = TF Serving's
    # resolution for every request.
    canary: CanarySplit | None = None
    # Not a TF Serving flag: --workers N serves from N processes sharing both ports
    # (SO_REUSEPORT); each worker runs one ModelServer with this set (serving/workers.py).
    reuse_port: bool = False
    workers: int = 1  # how many processes serve these ports (ReloadConfig is refused when > 1)
    # Not a TF Serving flag: the event loop both adapters run on (serving/event_loop.py).
    event_loop: str = DEFAULT_EVENT_LOOP

    def grpc_credentials(self):
        """grpc.ServerCredentials from --ssl_config_file, or None for an insecure port."""
        if not self.ssl_config_file:
            return None
        import grpc

        with open(self.ssl_config_file) as f:
            cfg = text_format.Parse(f.read(), SSLConfig())
        if not cfg.server_key or not cfg.server_cert:
            raise ValueError(f"{self.ssl_config_file}: server_key and server_cert are required")
        if cfg.client_verify and not cfg.custom_ca:
            raise ValueError(f"{self.ssl_config_file}: client_verify needs custom_ca")
        return grpc.ssl_server_credentials(
            [(cfg.server_key.encode(), cfg.server_cert.encode())],
            root_certificates=cfg.custom_ca.encode() or None,
            require_client_auth=cfg.client_verify,
        )

    def model_server_config(self) -> model_server_config_pb2.ModelServerConfig:
        """The ModelServerConfig these flags describe (TF Serving refuses both or neither)."""
        if self.model_config_file and self.model_base_path:
            raise ValueError("Use either --model_config_file or --model_base_path, not both.")
        if self.model_config_file:
            return load_model_config_file(self.model_config_file)
        if not self.model_base_path:
            raise ValueError("Either --model_config_file or --model_base_path must be set.")
        config = model_server_config_pb2.ModelServerConfig()
        model = config.model_config_list.config.add()
        model.name = self.model_name or "default"
        model.base_path = os.path.abspath(self.model_base_path)
        model.model_platform = "tensorflow"
        return config


def load_model_config_file(path: str) -> model_server_config_pb2.ModelServerConfig:
    with open(path) as f:
        return parse_model_config(f.read(), base_dir=os.path.dirname(os.path.abspath(path)))


def parse_model_config(
    text: str, base_dir: str | None = None
) -> model_server_config_pb2.ModelServerConfig:
    """Parse a ModelServerConfig text proto; relative base paths resolve against the file's dir."""
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    if config.HasField("custom_model_config"):
        raise ValueError("custom_model_config is not supported; use model_config_list.")
    for model in config.model_config_list.config:
        if not model.name or not model.base_path:
            raise ValueError(f"Every model config needs a name and a base_path: {model}")
        if base_dir and not os.path.isabs(model.base_path) and "://" not in model.base_path:
            model.base_path = os.path.join(base_dir, model.base_path)
    return config


def load_monitoring_path(path: str) -> str | None:
    """Metrics path from a TF Serving --monitoring_config_file; None when prometheus is off."""
    with open(path) as f:
        config = text_format.Parse(f.read(), MonitoringConfig())
    prom = config.prometheus_config
    if not prom.enable:
        return None
    return prom.path or DEFAULT_METRICS_PATH
