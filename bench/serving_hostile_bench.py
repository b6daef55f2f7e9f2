"""Hostile-request benchmark: memory of the amplification request and latency under a 64 MiB body.

For each code tree (this one, and optionally a baseline checkout such as the last release) it
starts `mlops serve` on the same stand-in model and measures, in one invocation:
  - server RSS (VmRSS) before and after a ~450-byte gRPC PredictRequest declaring 200,000 rows
    with one broadcast string (the amplification case of issue 10);
  - time, RSS and peak RSS of a REST classify of 300,000 examples (over the 100,000 limit);
  - the latency of a small good REST request while idle and while a 64 MiB JSON body is being
    handled (one over the element limit, one within it), and the ratio between the two.

    python bench/serving_hostile_bench.py [--baseline_root /path/to/other/checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from serving import testing

ROOT = Path(__file__).resolve().parents[1]


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _start(code_root: Path, base: str) -> tuple[subprocess.Popen, int, int]:
    grpc_port, rest_port = testing.free_port(), testing.free_port()
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    cmd = [
        sys.executable,
        "-m",
        "mlops.cli",
        "serve",
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        "--model_name=taxi",
        f"--model_base_path={base}",
        f"--max_body_bytes={80 << 20}",
        "--log_level=ERROR",
    ]
    proc = subprocess.Popen(
        cmd, env=env, cwd=code_root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{rest_port}/v1/models/taxi", timeout=1)
            return proc, grpc_port, rest_port
        except requests.ConnectionError:
            time.sleep(0.3)
    proc.kill()
    raise TimeoutError("server did not start")


def amplification(grpc_port: int, pid: int) -> tuple[int, int, str, float]:
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    req = predict_pb2.PredictRequest()
    req.model_spec.name = "taxi"
    tp = req.inputs["examples"]
    tp.dtype = 7  # DT_STRING
    tp.tensor_shape.dim.add(size=200_000)
    tp.string_val.append(
        testing.make_example({k: testing.SAMPLE_ROW[k] for k in ("fare", "trip_miles", "company")})
    )
    before = _rss(pid)
    started = time.perf_counter()
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        try:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=300)
            outcome = "OK (expanded and run)"
        except grpc.RpcError as e:
            outcome = e.code().name
    elapsed = time.perf_counter() - started
    time.sleep(1.0)
    return before, _rss(pid), f"{outcome}, {req.ByteSize()} bytes", elapsed


def _hwm(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def over_limit_classify(rest_port: int, pid: int) -> str:
    """Time, RSS and peak RSS of a REST classify of 300,000 examples (limit 100,000)."""
    url = f"http://127.0.0.1:{rest_port}/v1/models/taxi:classify"
    row = {k: testing.SAMPLE_ROW[k] for k in ("fare", "trip_miles", "company")}
    body = json.dumps({"signature_name": "classification", "examples": [row] * 300_000}).encode()
    rss, hwm = _rss(pid), _hwm(pid)
    started = time.perf_counter()
    r = requests.post(url, data=body, timeout=600)
    took = time.perf_counter() - started
    return (
        f"{len(body) / 2**20:.0f} MiB classify of 300,000 examples: {r.status_code} in "
        f"{took:.2f}s, RSS +{(_rss(pid) - rss) / 2**20:.0f} MiB, peak RSS "
        f"+{(_hwm(pid) - hwm) / 2**20:.0f} MiB"
    )


# Two 64 MiB predict bodies: 5.6M tiny strings (over --max_request_elements: refused) and 60,000
# strings of 1 KiB (within the limits: parsed, then refused by the model as bad tf.Examples).
BIG_BODIES = {
    "over the element limit": b'{"instances": ['
    + b",".join([b'"abcdefghij"'] * ((64 << 20) // 12))
    + b"]}",
    "within the limits": b'{"instances": ['
    + b",".join([b'"' + b"a" * 1100 + b'"'] * 60_000)
    + b"]}",
}


def latency_under_big_body(
    rest_port: int, good: dict, big: bytes
) -> tuple[list[float], list[float], float]:
    url = f"http://127.0.0.1:{rest_port}/v1/models/taxi:predict"
    session = requests.Session()

    def one() -> float:
        t = time.perf_counter()
        session.post(url, json=good, timeout=120)
        return time.perf_counter() - t

    idle = [one() for _ in range(50)]
    done, took = threading.Event(), {}

    def send() -> None:
        t = time.perf_counter()
        requests.post(url, data=big, timeout=600)
        took["s"] = time.perf_counter() - t
        done.set()

    worker = threading.Thread(target=send)
    worker.start()
    busy = []
    while not done.wait(0.01):
        busy.append(one())
    worker.join()
    return idle, busy, took["s"]


def main() -> None:
    import base64

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--baseline_root", default=None, help="another checkout to compare with")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="hostile-bench-") as work:
        base = os.path.join(work, "taxi")
        testing.build_model(os.path.join(base, "1"), bias=10.0)
        good = {
            "instances": [
                {"b64": base64.b64encode(testing.make_example(testing.SAMPLE_ROW)).decode()}
            ]
        }
        # A valid large request: parsed, run by the model (in chunks where batching splits large
        # requests, serving/batching.py) and answered.
        item = json.dumps(good["instances"][0]).encode()
        valid = b'{"instances": [' + b",".join([item] * 60_000) + b"]}"
        roots = [("this tree", ROOT)] + (
            [("baseline", Path(args.baseline_root))] if args.baseline_root else []
        )
        for label, root in roots:
            proc, grpc_port, rest_port = _start(root, base)
            try:
                before, after, outcome, secs = amplification(grpc_port, proc.pid)
                print(
                    f"[{label}] amplification: {outcome} in {secs:.2f}s; server RSS "
                    f"{before / 2**20:.0f} MiB -> {after / 2**20:.0f} MiB"
                )
                print(f"[{label}] over-limit {over_limit_classify(rest_port, proc.pid)}")
                for what, big in {**BIG_BODIES, "of 60,000 valid examples": valid}.items():
                    idle, busy, big_s = latency_under_big_body(rest_port, good, big)
                    med_idle, med_busy = (
                        statistics.median(idle),
                        statistics.median(busy) if busy else float("nan"),
                    )
                    print(
                        f"[{label}] good request latency: idle median {med_idle * 1000:.1f} ms; "
                        f"while a {len(big) / 2**20:.0f} MiB body {what} is handled ({big_s:.1f}s, "
                        f"{len(busy)} requests) median {med_busy * 1000:.1f} ms, "
                        f"max {max(busy, default=float('nan')) * 1000:.0f} ms, ratio of medians "
                        f"{med_busy / med_idle:.1f}x"
                    )
            finally:
                proc.terminate()
                proc.wait(30)


if __name__ == "__main__":
    main()
