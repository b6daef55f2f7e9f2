"""Test-side name for serving/testing.py (stand-in models, a server subprocess, sample rows)."""

from serving.testing import (  # noqa: F401 - re-exported for the tests
    SAMPLE_ROW,
    ServerProcess,
    build_model,
    free_port,
    make_example,
    raw_feature_spec,
)
