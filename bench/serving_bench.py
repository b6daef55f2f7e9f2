"""Serving benchmark: REST (wrk) and gRPC (grpc.aio) against the in-process limit of the same model.

The in-process limit is the SavedModel's serving_default called directly and sequentially with the
same number of serialized tf.Examples per call as the wire requests carry, measured in this run.
Load clients share the machine's cores with the server, so ratios are what to compare across
machines, not absolute figures.

    python bench/serving_bench.py [--model_base_path serving_model/taxi] [--duration 5]

Without a pushed model under serving_model/taxi, it builds serving/testing.py's taxi-shaped
SavedModel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TARGETS = {
    ("grpc", 1, 32): 1.0,  # 1-example requests over gRPC at 32 in flight vs in-process calls/s
    ("rest", 1, 32): 0.8,
    ("grpc", 32, 32): 0.8,  # 32-example requests vs in-process examples/s
    ("rest", 32, 32): 0.8,
}
P99_TARGET_MS = 25.0  # at 8 in flight


def _rows(n: int) -> list[dict]:
    from serving_api.client import read_rows

    return read_rows(str(ROOT / "data" / "taxi" / "span-1" / "data.csv"))[:n]


def in_process(model_dir: str, examples: list[bytes], batch: int, duration: float) -> float:
    """Sequential serving_default calls/s with `batch` examples per call."""
    import tensorflow as tf

    fn = tf.saved_model.load(model_dir).signatures["serving_default"]
    x = tf.constant(examples[:batch])
    for _ in range(50):
        fn(examples=x)["probabilities"].numpy()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < duration:
        fn(examples=x)["probabilities"].numpy()
        n += 1
    return n / (time.perf_counter() - start)


async def _grpc_load(
    target: str, model: str, examples: list[bytes], concurrency: int, duration: float
):
    import grpc
    import numpy as np
    from tensorflow_serving.apis import predict_pb2

    from serving.codec import ndarray_to_proto

    arr = np.empty(len(examples), dtype=object)
    arr[:] = examples
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.inputs["examples"].CopyFrom(ndarray_to_proto(arr))
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        # Pre-serialized request, unparsed response: the load generator should cost as little as
        # wrk does on the REST side. The bytes on the wire are exactly the stub's.
        predict = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        payload = req.SerializeToString()
        check = predict_pb2.PredictResponse.FromString(await predict(payload, timeout=30))
        assert "probabilities" in check.outputs

        async def worker(deadline: float) -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                try:
                    await predict(payload, timeout=30)
                except grpc.RpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t)

        warm = time.perf_counter() + min(1.0, duration / 4)
        await asyncio.gather(*(worker(warm) for _ in range(concurrency)))
        latencies.clear()
        start = time.perf_counter()
        await asyncio.gather(*(worker(start + duration) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
        "errors": errors,
    }


def grpc_load(
    target: str, model: str, examples: list[bytes], concurrency: int, duration: float
) -> dict:
    return asyncio.run(_grpc_load(target, model, examples, concurrency, duration))


_WRK_LAT = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def rest_load(url: str, body: bytes, concurrency: int, duration: float, workdir: str) -> dict:
    script = Path(workdir) / "post.lua"
    body_path = Path(workdir) / f"body-{len(body)}.json"
    body_path.write_bytes(body)
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{body_path}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
    )
    base = ["wrk", "-t1", f"-c{concurrency}", "-s", str(script), "--latency", url]
    subprocess.run(
        [*base[:1], "-t1", f"-c{concurrency}", "-d1s", *base[3:]], capture_output=True, check=True
    )
    out = subprocess.run(
        [
            *base[:1],
            "-t1",
            f"-c{concurrency}",
            f"-d{int(duration)}s",
            "--timeout",
            "10s",
            *base[3:],
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct, value, unit in _WRK_LAT.findall(out):
        lat[pct] = float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": rps,
        "p50_ms": lat.get("50", float("nan")),
        "p99_ms": lat.get("99", float("nan")),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(0) if socket_errors else "",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_base_path", default=str(ROOT / "serving_model" / "taxi"))
    p.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--batch_sizes", default="1,32", help="examples per request")
    p.add_argument("--max_batch_size", type=int, default=512)
    p.add_argument("--num_batch_threads", type=int, default=1)
    p.add_argument("--protocols", default="grpc,rest")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()

    import base64

    from model_layout import list_versions
    from serving import testing as sm
    from serving_api.client import encode_example

    workdir = tempfile.mkdtemp(prefix="serving-bench-")
    base = args.model_base_path
    model_source = "pushed"
    if not list_versions(base):
        base = os.path.join(workdir, "taxi")
        sm.build_model(os.path.join(base, "1"))
        model_source = "serving/testing.py stand-in (no pushed model found)"
    version_dir = list_versions(base)[max(list_versions(base))]
    examples = [encode_example(r) for r in _rows(64)]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    concurrency = [int(c) for c in args.concurrency.split(",")]

    print(f"model: {version_dir} ({model_source})")
    baseline: dict[int, float] = {}

    def measure_baseline(when: str) -> None:
        # Measured before and after the wire runs; ratios use the higher figure, so background
        # load on a shared machine can only make the server look worse, never better.
        for b in batch_sizes:
            calls = in_process(version_dir, examples, b, args.duration)
            baseline[b] = max(baseline.get(b, 0.0), calls)
            print(
                f"in-process serving_default ({when}), {b:>2} examples/call: {calls:8.0f} calls/s "
                f" {calls * b:8.0f} examples/s"
            )

    measure_baseline("before")
    server = sm.ServerProcess(
        "--model_name=taxi",
        f"--model_base_path={base}",
        "--enable_batching",
        f"--max_batch_size={args.max_batch_size}",
        f"--num_batch_threads={args.num_batch_threads}",
        "--file_system_poll_wait_seconds=0",
        "--log_level=WARNING",
    ).wait_ready()
    results = []
    try:
        for protocol in args.protocols.split(","):
            for b in batch_sizes:
                batch = examples[:b]
                for c in concurrency:
                    if protocol == "grpc":
                        r = grpc_load(server.grpc_target, "taxi", batch, c, args.duration)
                    else:
                        body = json.dumps(
                            {"instances": [{"b64": base64.b64encode(e).decode()} for e in batch]}
                        ).encode()
                        r = rest_load(
                            server.rest_url + "/v1/models/taxi:predict",
                            body,
                            c,
                            args.duration,
                            workdir,
                        )
                    r.update(
                        protocol=protocol, examples=b, in_flight=c, ratio=r["rps"] / baseline[b]
                    )  # provisional
                    results.append(r)
                    print(
                        f"{protocol:>4} {b:>2} ex/req {c:>2} in flight: {r['rps']:8.0f} req/s "
                        f"{r['rps'] * b:8.0f} ex/s  p50 {r['p50_ms']:6.2f} ms  p99 "
                        f"{r['p99_ms']:6.2f} ms  "
                        f"{r['ratio']:.2f}x in-process  errors {r['errors']} "
                        f"{r.get('socket_errors', '')}",
                        flush=True,
                    )
    finally:
        server.stop()
    measure_baseline("after")
    shutil.rmtree(workdir, ignore_errors=True)
    for r in results:
        r["ratio"] = r["rps"] / baseline[r["examples"]]
        print(
            f"{r['protocol']:>4} {r['examples']:>2} ex/req {r['in_flight']:>2} in flight: "
            f"{r['ratio']:.2f}x in-process (max of before/after: {baseline[r['examples']]:.0f} "
            "calls/s)"
        )

    print("\ntargets:")
    for r in results:
        target = TARGETS.get((r["protocol"], r["examples"], r["in_flight"]))
        if target is not None:
            verdict = "ok" if r["ratio"] >= target else "MISS"
            print(
                f"  {r['protocol']} {r['examples']} ex/req @32: {r['ratio']:.2f}x (target >= "
                f"{target}x) {verdict}"
            )
        if r["in_flight"] == 8:
            verdict = "ok" if r["p99_ms"] <= P99_TARGET_MS else "MISS"
            print(
                f"  {r['protocol']} {r['examples']} ex/req @8: p99 {r['p99_ms']:.1f} ms (target "
                f"<= {P99_TARGET_MS} ms) {verdict}"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"baseline_calls_per_s": baseline, "results": results}, indent=2)
        )


if __name__ == "__main__":
    main()
