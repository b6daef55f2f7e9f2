"""The model server's API as its clients see it: a Python client for TF Serving's REST and gRPC
APIs (ours or the real tensorflow/serving), how rows become requests, and the server's
well-known paths.

It sits in the bottom layer so that every feature that talks to a running server (`mlops
predict`, the live skew monitor, the registry's canary comparison, the web app) uses one client
and one set of names without importing the server itself (serving/).
"""

# TF Serving's default Prometheus path (`--monitoring_config_file`'s prometheus_config.path).
DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"
