"""bench/serving_bench.py refuses a gRPC client with no connections in one line, before it builds
a model or starts a server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.paths import PROJECT_ROOT


@pytest.mark.parametrize("channels", ["0", "-2", "two"])
def test_serving_bench_refuses_bad_grpc_channels(channels):
    out = subprocess.run(
        [sys.executable, "bench/serving_bench.py", f"--grpc_channels={channels}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "--grpc_channels" in out.stderr and "Traceback" not in out.stderr
