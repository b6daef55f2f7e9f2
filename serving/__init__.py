"""A TensorFlow-Serving-compatible model server and its clients.

Layers, outermost first: `rest` and `grpc_service` are thin protocol adapters; `dataplane` is the
protocol-neutral request logic (resolve model/version/label, validate, batch, run, shape the
result); `repository` owns loading, versions, policies, labels and readiness; `batching` merges
concurrent calls into one model call. `client`/`cli` are the user side.
"""
