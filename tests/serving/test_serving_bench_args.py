"""bench/serving_bench.py refuses bad settings (hostile numbers, unknown protocols, uneven gRPC
channels) in one line, before it builds a model or starts a server; its h2load gRPC client
measures a real server and counts its refusals."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import grpc
import pytest

from tests.paths import PROJECT_ROOT


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "bench/serving_bench.py", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--concurrency", "0"),
        ("--concurrency", "8,-1"),
        ("--concurrency", "abc"),
        ("--concurrency", ""),
        ("--duration", "nan"),
        ("--duration", "inf"),
        ("--duration", "-1"),
        ("--duration", "0"),
        ("--rounds", "0"),
        ("--rounds", "1.5"),
        ("--batch_sizes", "0"),
        ("--batch_sizes", "x"),
        ("--batch_sizes", "100000"),
        ("--protocols", "ftp"),
        ("--protocols", "grpc,"),
        ("--client_cpus", "a"),
        ("--client_cpus", "4096"),
        ("--grpc_channels", "0"),
        ("--grpc_channels", "-2"),
        ("--grpc_channels", "two"),
    ],
)
def test_serving_bench_refuses_hostile_values_in_one_line(flag, value):
    out = _bench(f"{flag}={value}")
    assert out.returncode == 2, out.stderr[-1500:]
    assert f"argument {flag}" in out.stderr and "Traceback" not in out.stderr


def test_serving_bench_refuses_channels_that_do_not_divide_the_calls_in_flight():
    out = _bench("--grpc_channels=3", "--concurrency=1,64")
    assert out.returncode == 2, out.stderr[-1500:]
    assert "does not divide --concurrency [64]" in out.stderr and "Traceback" not in out.stderr


def _serving_bench():
    spec = importlib.util.spec_from_file_location(
        "serving_bench", PROJECT_ROOT / "bench" / "serving_bench.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_h2load_client_measures_answers_and_counts_grpc_errors(tmp_path):
    """The default gRPC load client (h2load, C) against a real server: answered calls are
    counted and timed, and calls the server refuses are errors even though HTTP/2's :status
    stays 200 (read from the server's Prometheus counter)."""
    from serving import testing as sm

    sb = _serving_bench()
    sm.build_model(tmp_path / "taxi" / "1")
    server = sm.ServerProcess(
        "--model_name=taxi", f"--model_base_path={tmp_path / 'taxi'}"
    ).wait_ready()
    metrics = server.rest_url + "/monitoring/prometheus/metrics"
    example = sm.make_example(sm.SAMPLE_ROW)
    try:
        good = sb.h2load_grpc_load(
            server.grpc_target, metrics, sb.grpc_request("taxi", [example]), 4, 1, 2, str(tmp_path)
        )
        assert good["errors"] == 0, good
        assert good["rps"] > 0 and 0 < good["p50_ms"] <= good["p99_ms"], good
        assert sb.grpc_statuses(metrics)["OK"] >= good["rps"] * 0.5

        unknown = sb.grpc_request("no_such_model", [example])
        with pytest.raises(grpc.RpcError):  # the check call refuses to measure an error path
            sb.check_grpc_request(server.grpc_target, unknown)
        bad = sb.h2load_grpc_load(
            server.grpc_target, metrics, unknown, 4, 1, 2, str(tmp_path), check=False
        )
        assert bad["errors"] > 0 and bad["errors"] >= bad["rps"] * 0.5, bad
    finally:
        server.stop()
