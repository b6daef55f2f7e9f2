"""First-request latency after a version switch, with and without model warmup.

Two `mlops serve` processes watch two copies of a base path: one with warmup (the default), one
with `--enable_model_warmup=false`. Each round publishes the same pushed model as a new version
(copy, then atomic rename, as the Pusher does) to both, waits until the server reports the new
version AVAILABLE, and times the first REST predict of one example against it, then a few more
(the steady state). Prints every round, the medians and the ratio cold / warm. The rounds
alternate which server goes first, so machine load hits both alike.

    python bench/warmup_bench.py                       # newest version in serving_model/taxi
    python bench/warmup_bench.py --model_dir serving_model/taxi/1795709382 --rounds 7
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _argtypes as argtypes  # bench/_argtypes.py: a script's sys.path starts at bench/
import requests

from pipeline.config import PipelineConfig
from pipeline.push.warmup_requests import WARMUP_REQUESTS_FILE

MODEL = "taxi"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, base: Path, log: Path, *flags: str) -> None:
        self.base, self.rest_port = base, _free_port()
        self.url = f"http://127.0.0.1:{self.rest_port}"
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlops.cli",
                "serve",
                f"--port={_free_port()}",
                f"--rest_api_port={self.rest_port}",
                f"--model_name={MODEL}",
                f"--model_base_path={base}",
                "--file_system_poll_wait_seconds=0.05",
                *flags,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}; see {self._log.name}")
            try:
                requests.get(self.url + "/monitoring/prometheus/metrics", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise SystemExit(f"server not ready after {timeout}s; see {self._log.name}")

    def state(self, version: int) -> str | None:
        response = requests.get(f"{self.url}/v1/models/{MODEL}/versions/{version}", timeout=10)
        if response.status_code != 200:
            return None
        return response.json()["model_version_status"][0]["state"]

    def predict(self, version: int, body: dict) -> float:
        started = time.perf_counter()
        response = requests.post(
            f"{self.url}/v1/models/{MODEL}/versions/{version}:predict", json=body, timeout=120
        )
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise SystemExit(f"predict failed: {response.status_code} {response.text}")
        return elapsed

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def _newest_version(base: str) -> str:
    versions = (
        sorted(int(v) for v in os.listdir(base) if v.isdigit()) if os.path.isdir(base) else []
    )
    if not versions:
        raise SystemExit(f"No pushed version under {base}; run the pipeline (make run) first.")
    return os.path.join(base, str(versions[-1]))


def _one_example(model_dir: str) -> bytes:
    """The first serving_default example of the version's own warmup file."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    for raw in tf.data.TFRecordDataset(os.path.join(model_dir, WARMUP_REQUESTS_FILE)):
        entry = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
        request = entry.predict_log.request
        if entry.HasField("predict_log") and request.model_spec.signature_name == "serving_default":
            return request.inputs["examples"].string_val[0]
    raise SystemExit(f"{model_dir} has no serving_default warmup request")


def _publish(model_dir: str, base: Path, version: int) -> None:
    staging = base / f".push-{version}"
    shutil.copytree(model_dir, staging)
    os.rename(staging, base / str(version))


def _wait_available(server: Server, version: int, timeout: float = 300) -> float:
    started = time.perf_counter()
    while server.state(version) != "AVAILABLE":
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"version {version} not AVAILABLE after {timeout}s")
        time.sleep(0.01)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", default=None, help="a pushed version (default: newest)")
    parser.add_argument("--rounds", type=argtypes.whole(1), default=5)
    parser.add_argument(
        "--steady", type=argtypes.whole(1), default=5, help="requests after the first"
    )
    args = parser.parse_args()
    model_dir = args.model_dir or _newest_version(PipelineConfig().model_serving_dir)
    if not os.path.exists(os.path.join(model_dir, WARMUP_REQUESTS_FILE)):
        raise SystemExit(f"{model_dir} has no {WARMUP_REQUESTS_FILE}; push it with this pipeline.")
    body = {"instances": [{"b64": base64.b64encode(_one_example(model_dir)).decode()}]}

    work = Path(tempfile.mkdtemp(prefix="warmup-bench-"))
    servers = {}
    for mode, flags in (("warm", ()), ("cold", ("--enable_model_warmup=false",))):
        base = work / mode / MODEL
        base.mkdir(parents=True)
        _publish(model_dir, base, 1)
        servers[mode] = Server(base, work / f"{mode}.log", *flags)
    first: dict[str, list[float]] = {"warm": [], "cold": []}
    steady: dict[str, list[float]] = {"warm": [], "cold": []}
    loading: dict[str, list[float]] = {"warm": [], "cold": []}
    try:
        for server in servers.values():
            server.wait_ready()
            server.predict(1, body)
        print(
            f"model {model_dir}; {args.rounds} version switches per mode; load "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
        print(
            f"{'round':>5} {'mode':>5} {'to AVAILABLE s':>15} {'first ms':>10} "
            f"{'next ms (median)':>17}"
        )
        for i in range(args.rounds):
            version = i + 2
            order = ["warm", "cold"] if i % 2 == 0 else ["cold", "warm"]
            for mode in order:
                server = servers[mode]
                _publish(model_dir, server.base, version)
                loading[mode].append(_wait_available(server, version))
                first[mode].append(server.predict(version, body))
                after = statistics.median(server.predict(version, body) for _ in range(args.steady))
                steady[mode].append(after)
                print(
                    f"{version:>5} {mode:>5} {loading[mode][-1]:>15.2f} "
                    f"{first[mode][-1] * 1e3:>10.1f} {after * 1e3:>17.1f}"
                )
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    med = {m: statistics.median(v) * 1e3 for m, v in first.items()}
    base_ms = {m: statistics.median(v) * 1e3 for m, v in steady.items()}
    print(
        f"first request after a switch, median: warm {med['warm']:.1f} ms, cold {med['cold']:.1f} "
        "ms, "
        f"ratio cold/warm {med['cold'] / med['warm']:.1f}x"
    )
    print(
        f"steady-state request, median: warm {base_ms['warm']:.1f} ms, cold {base_ms['cold']:.1f} "
        "ms; "
        f"warm first / warm steady {med['warm'] / base_ms['warm']:.2f}x"
    )
    print(
        f"switch time (publish -> AVAILABLE), median: warm "
        f"{statistics.median(loading['warm']):.2f} s, cold "
        f"{statistics.median(loading['cold']):.2f} s"
    )


if __name__ == "__main__":
    main()
