"""Live monitoring of served traffic (`mlops monitor`): the skew of the requests the model
server logs against the training data of the version that serves them, as Prometheus metrics.

A feature package like registry/ and apps/: it joins the request log (serving/), the skew
measures of `mlops data check-skew` (pipeline/) and ML Metadata (metadata/), which none of those
may import from each other.
"""
