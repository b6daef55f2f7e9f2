"""Serving benchmark: REST (wrk) and gRPC (h2load) against the in-process limit of the same model.

The in-process limit is the SavedModel's serving_default called directly and sequentially with the
same number of serialized tf.Examples per call as the wire requests carry, measured in this run.
Load clients share the machine's cores with the server, so ratios are what to compare across
machines, not absolute figures. The server runs with its default flags (plus `--server_args`),
so the figures are what `mlops serve` gives out of the box. With `--baseline_root` a second
server, started from another checkout's code (e.g. main), is measured in the same invocation.

    python bench/serving_bench.py [--model_base_path serving_model/taxi] [--duration 5]
        [--baseline_root /path/to/other/checkout] [--server_args="--enable_batching=false"]
        [--client_cpus 1]

Both load clients are C programs (wrk; nghttp2's h2load posting framed gRPC messages, whose
answers' grpc-status is read from the server's Prometheus counter, since HTTP/2's :status stays
200 on a gRPC error). `--grpc_client python` is the grpc.aio client the figures before
2026-12-07 were taken with: ~175 us of CPU per call on the server's cores.

`--client_cpus` pins the load clients (wrk, the gRPC client: this process's thread and what it
starts) to those CPUs once the servers are up, so on a small machine client and server compete
less for the same core; the figure the targets are judged on is the default (unpinned) run.

Prints p50/p99 per protocol, examples per request and connection count, each throughput as a
ratio of the in-process calls/s, and the targets (issue 26: at 64 connections, p99 <= 25 ms and
<= 3x p50, throughput >= 2x the in-process batch-1 rate).

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
P99_TARGET_MS = 25.0  # at 8 and at TAIL_IN_FLIGHT in flight
TAIL_IN_FLIGHT = 64
TAIL_P99_OVER_P50 = 3.0  # at TAIL_IN_FLIGHT: p99 <= 3x p50
TAIL_RATIO = 2.0  # at TAIL_IN_FLIGHT, 1 example per request: >= 2x in-process batch-1 calls/s
PROTOCOLS = ("grpc", "rest")
MAX_BATCH = 1024  # examples per request the benchmark sends at most (rows read from span-1)


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
    target: str,
    model: str,
    examples: list[bytes],
    concurrency: int,
    duration: float,
    channels: int = 1,
):
    import grpc
    from tensorflow_serving.apis import predict_pb2

    latencies: list[float] = []
    errors = 0
    # Each channel its own TCP connection (a local subchannel pool: channels to one target
    # otherwise share one), the calls spread over them round-robin. One channel is how the
    # figures before --grpc_channels were taken; with `--workers N` one connection reaches one
    # worker, so N workers need N or more channels to be measured.
    opened = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(max(1, channels))
    ]
    try:
        # Pre-serialized request, unparsed response: the load generator should cost as little as
        # wrk does on the REST side. The bytes on the wire are exactly the stub's.
        stubs = [c.unary_unary("/tensorflow.serving.PredictionService/Predict") for c in opened]
        payload = grpc_request(model, examples)
        for predict in stubs:
            check = predict_pb2.PredictResponse.FromString(await predict(payload, timeout=30))
            assert "probabilities" in check.outputs

        async def worker(deadline: float, predict) -> None:
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
        await asyncio.gather(*(worker(warm, stubs[i % len(stubs)]) for i in range(concurrency)))
        latencies.clear()
        start = time.perf_counter()
        end = start + duration
        await asyncio.gather(*(worker(end, stubs[i % len(stubs)]) for i in range(concurrency)))
        elapsed = time.perf_counter() - start
    finally:
        for c in opened:
            await c.close()
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
        "errors": errors,
    }


def grpc_request(model: str, examples: list[bytes]) -> bytes:
    """A serialized PredictRequest with `examples` as its `examples` input, as a client sends."""
    import numpy as np
    from tensorflow_serving.apis import predict_pb2

    from serving.codec import ndarray_to_proto

    arr = np.empty(len(examples), dtype=object)
    arr[:] = examples
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.inputs["examples"].CopyFrom(ndarray_to_proto(arr))
    return req.SerializeToString()


def check_grpc_request(target: str, payload: bytes) -> None:
    """One real call with the payload the load client will repeat: a load run whose request the
    server refuses would measure the error path."""
    import grpc
    from tensorflow_serving.apis import predict_pb2

    with grpc.insecure_channel(target) as channel:
        predict = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        answer = predict_pb2.PredictResponse.FromString(predict(payload, timeout=30))
    if "probabilities" not in answer.outputs:
        raise RuntimeError(f"the server answered without probabilities: {list(answer.outputs)}")


def grpc_statuses(metrics_url: str) -> dict[str, float]:
    """gRPC calls answered so far, by status, from the server's Prometheus counter (h2load sees
    only HTTP/2's :status, which a gRPC error leaves at 200)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(metrics_url, timeout=10) as r:
        text = r.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "tfserving_request_count_total" and s.labels.get("protocol") == "grpc":
                status = s.labels.get("status", "")
                counts[status] = counts.get(status, 0.0) + s.value
    return counts


def write_grpc_body(path: Path, payload: bytes) -> Path:
    """The request as one gRPC message on the wire (flag byte, big-endian length, bytes): what
    h2load posts as the body of every call."""
    import struct

    path.write_bytes(b"\x00" + struct.pack(">I", len(payload)) + payload)
    return path


def h2load_command(
    url: str, body_path: str, concurrency: int, channels: int, duration: float, log_path: str
) -> list[str]:
    """h2load (nghttp2's C HTTP/2 load generator) posting one framed gRPC message per call:
    `channels` connections with concurrency / channels calls in flight on each, one second of
    warm-up, then `duration` seconds measured, every call's latency written to `log_path`."""
    return [
        "h2load",
        "-t1",
        f"-c{channels}",
        f"-m{concurrency // channels}",
        f"-D{max(1, round(duration))}",
        "--warm-up-time=1",
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "-d",
        body_path,
        f"--log-file={log_path}",
        url,
    ]


def h2load_grpc_load(
    target: str,
    metrics_url: str,
    payload: bytes,
    concurrency: int,
    duration: float,
    channels: int,
    workdir: str,
    check: bool = True,
) -> dict:
    """gRPC load from a C client, as wrk is for REST: the Python client costs ~175 us of CPU
    per call on the same two cores as the server, which bounds what a server can show.
    `check=False` skips the one real call first (tests send a refused request on purpose)."""
    if check:
        check_grpc_request(target, payload)
    body = write_grpc_body(Path(workdir) / f"grpc-{len(payload)}.bin", payload)
    log = Path(workdir) / "h2load.log"
    log.unlink(missing_ok=True)
    url = f"http://{target}/tensorflow.serving.PredictionService/Predict"
    before = grpc_statuses(metrics_url)
    out = subprocess.run(
        h2load_command(url, str(body), concurrency, channels, duration, str(log)),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after = grpc_statuses(metrics_url)
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    failed = re.search(r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    # Calls still in flight when h2load stops are reset (CANCELLED); any other status is an error.
    errors = sum(v for k, v in delta.items() if k not in ("OK", "CANCELLED"))
    errors += sum(int(x) for x in failed.groups()) if failed else 0
    micros = sorted(int(line.split()[2]) for line in log.read_text().splitlines() if line.strip())
    if not micros:
        raise RuntimeError(f"h2load completed no call:\n{out}")
    return {
        "rps": float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1)),
        "p50_ms": micros[len(micros) // 2] / 1e3,
        "p99_ms": micros[int(len(micros) * 0.99)] / 1e3,
        "errors": int(errors),
        "cancelled_at_stop": int(delta.get("CANCELLED", 0)),
    }


def grpc_load(
    target: str,
    model: str,
    examples: list[bytes],
    concurrency: int,
    duration: float,
    channels: int = 1,
) -> dict:
    return asyncio.run(_grpc_load(target, model, examples, concurrency, duration, channels))


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


def _server(code_root: Path, base: str, extra: list[str]):
    """`mlops serve` with default flags, importing the code under `code_root`."""
    from serving import testing as sm

    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(code_root)  # the subprocess imports this tree, not the venv's
    # the last --workers= wins, as in click (--baseline_args come after --server_args)
    workers = ([1] + [int(f.split("=", 1)[1]) for f in extra if f.startswith("--workers=")])[-1]
    try:
        server = sm.ServerProcess(
            "--model_name=taxi",
            f"--model_base_path={base}",
            # INFO only with workers: the supervisor logs when every worker is serving
            f"--log_level={'INFO' if workers > 1 else 'WARNING'}",
            *extra,
            fresh=True,  # a new interpreter importing `code_root`, as a user's server starts
        ).wait_ready()
        if workers > 1:  # the first worker opens the ports; wait for the others too
            from serving.workers import all_ready_message

            deadline = time.time() + 120
            while all_ready_message(workers) not in server.log():
                if time.time() > deadline or server.proc.poll() is not None:
                    text = server.log()
                    server.stop()
                    raise RuntimeError(f"workers not ready:\n{text}")
                time.sleep(0.2)
        return server
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def _measure(servers, args, examples, batch_sizes, concurrency, workdir, baseline):
    """Every cell, each server in turn within a round, `--rounds` rounds; per cell the median
    round (by p99) is kept. On a shared machine load shifts over minutes: alternating the
    servers cell by cell compares them under the same load."""
    import base64

    results = []
    for protocol in args.protocols:
        for b in batch_sizes:
            batch = examples[:b]
            body = json.dumps(
                {"instances": [{"b64": base64.b64encode(e).decode()} for e in batch]}
            ).encode()
            for c in concurrency:
                rounds: dict[str, list[dict]] = {name: [] for name, _ in servers}
                for _ in range(args.rounds):
                    for name, server in servers:
                        if protocol == "grpc" and args.grpc_client == "h2load":
                            r = h2load_grpc_load(
                                server.grpc_target,
                                server.rest_url + "/monitoring/prometheus/metrics",
                                grpc_request("taxi", batch),
                                c,
                                args.duration,
                                min(c, args.grpc_channels),
                                workdir,
                            )
                        elif protocol == "grpc":
                            r = grpc_load(
                                server.grpc_target,
                                "taxi",
                                batch,
                                c,
                                args.duration,
                                min(c, args.grpc_channels),
                            )
                        else:
                            url = server.rest_url + "/v1/models/taxi:predict"
                            r = rest_load(url, body, c, args.duration, workdir)
                        rounds[name].append(r)
                for name, _ in servers:
                    r = sorted(rounds[name], key=lambda x: x["p99_ms"])[len(rounds[name]) // 2]
                    r["p99_worst_ms"] = max(x["p99_ms"] for x in rounds[name])
                    r.update(server=name, protocol=protocol, examples=b, in_flight=c)
                    r["ratio"] = r["rps"] / baseline[b]  # provisional: re-measured after
                    results.append(r)
                    print(
                        f"{name:>8} {protocol:>4} {b:>2} ex/req {c:>3} in flight: "
                        f"{r['rps']:8.0f} req/s "
                        f"{r['rps'] * b:8.0f} ex/s  p50 {r['p50_ms']:7.2f} ms  p99 "
                        f"{r['p99_ms']:7.2f} ms (worst round {r['p99_worst_ms']:.1f})  "
                        f"errors {r['errors']} "
                        f"{r.get('socket_errors', '')}",
                        flush=True,
                    )
    return results


def _verdicts(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        where = f"{r['server']} {r['protocol']} {r['examples']} ex/req"
        target = TARGETS.get((r["protocol"], r["examples"], r["in_flight"]))
        if target is not None:
            ok = "ok" if r["ratio"] >= target else "MISS"
            lines.append(f"  {where} @32: {r['ratio']:.2f}x in-process (>= {target}x) {ok}")
        if r["in_flight"] in (8, TAIL_IN_FLIGHT):
            ok = "ok" if r["p99_ms"] <= P99_TARGET_MS else "MISS"
            lines.append(
                f"  {where} @{r['in_flight']}: p99 {r['p99_ms']:.1f} ms (<= {P99_TARGET_MS:g}) {ok}"
            )
        if r["in_flight"] == TAIL_IN_FLIGHT:
            spread = r["p99_ms"] / r["p50_ms"] if r["p50_ms"] else float("inf")
            ok = "ok" if spread <= TAIL_P99_OVER_P50 else "MISS"
            lines.append(
                f"  {where} @{TAIL_IN_FLIGHT}: p99 {spread:.1f}x p50 "
                f"(<= {TAIL_P99_OVER_P50:g}x) {ok}"
            )
            if r["examples"] == 1:
                ok = "ok" if r["ratio"] >= TAIL_RATIO else "MISS"
                lines.append(
                    f"  {where} @{TAIL_IN_FLIGHT}: {r['ratio']:.2f}x in-process batch-1 "
                    f"(>= {TAIL_RATIO:g}x) {ok}"
                )
    return lines


def main() -> None:
    # Here, not at the top: tests import this file as a module, where bench/ is not on sys.path
    # (run as `python bench/<this>.py`, it is first).
    import _argtypes as argtypes

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_base_path", default=str(ROOT / "serving_model" / "taxi"))
    p.add_argument(
        "--duration", type=argtypes.seconds(), default=5.0, help="seconds per measurement"
    )
    p.add_argument("--concurrency", type=argtypes.wholes(1), default=[1, 8, 32, TAIL_IN_FLIGHT])
    p.add_argument(
        "--batch_sizes",
        type=argtypes.wholes(1, MAX_BATCH),
        default=[1, 32],
        help="examples per request",
    )
    p.add_argument("--protocols", type=argtypes.names(PROTOCOLS), default=list(PROTOCOLS))
    p.add_argument(
        "--server_args", default="", help="extra `mlops serve` flags, e.g. --enable_batching=false"
    )
    p.add_argument("--baseline_root", default=None, help="also measure a server from this checkout")
    p.add_argument(
        "--rounds", type=argtypes.whole(1), default=1, help="per cell; the median round is kept"
    )
    p.add_argument("--baseline_args", default="", help="extra flags for the baseline server only")
    p.add_argument(
        "--this_args",
        default="",
        help="extra flags for this tree's server only, e.g. --workers=2 against main",
    )
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument(
        "--grpc_channels",
        type=argtypes.whole(1),
        default=1,
        help="gRPC client connections the in-flight calls spread over (>= N for --workers=N)",
    )
    p.add_argument(
        "--client_cpus",
        type=argtypes.cpus,
        default=None,
        help="pin the load clients to these CPUs, e.g. 1 or 0,1 (servers keep every CPU)",
    )
    p.add_argument(
        "--grpc_client",
        choices=("h2load", "python"),
        default="h2load",
        help="gRPC load client: nghttp2's h2load (C, as wrk is for REST) or a grpc.aio process",
    )
    args = p.parse_args()
    concurrency = args.concurrency
    if "grpc" in args.protocols and args.grpc_client == "h2load":
        if shutil.which("h2load") is None:
            p.error(
                "h2load not found: install Debian's nghttp2-client (`make bench` does), "
                "or pass --grpc_client python"
            )
        uneven = [c for c in concurrency if c % min(c, args.grpc_channels)]
        if uneven:
            p.error(
                f"--grpc_channels {args.grpc_channels} does not divide --concurrency {uneven} "
                "(h2load keeps the same number of calls in flight on every connection)"
            )

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
    batch_sizes = args.batch_sizes
    examples = [encode_example(r) for r in _rows(max(64, *batch_sizes))]
    extra = args.server_args.split()

    print(f"model: {version_dir} ({model_source}); server flags: defaults {' '.join(extra)}")
    print(f"this tree's extra flags: {args.this_args!r}; baseline's: {args.baseline_args!r}")
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
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
    all_cpus = os.sched_getaffinity(0)
    trees = [("this", ROOT)]
    if args.baseline_root:
        trees.append(("baseline", Path(args.baseline_root).resolve()))
    results = []
    servers = []
    try:
        for name, code_root in trees:
            print(f"{name}: code from {code_root}", flush=True)
            own = args.baseline_args if name == "baseline" else args.this_args
            flags = extra + own.split()
            servers.append((name, _server(code_root, base, flags)))
        if args.client_cpus:  # this thread, and the wrk processes and gRPC threads it starts
            os.sched_setaffinity(0, set(args.client_cpus))
            print(f"load clients pinned to CPU {','.join(map(str, args.client_cpus))}", flush=True)
        results += _measure(servers, args, examples, batch_sizes, concurrency, workdir, baseline)
    finally:
        os.sched_setaffinity(0, all_cpus)
        for _, server in servers:
            server.stop()
    print("load average after the wire runs: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    measure_baseline("after")
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nratios (in-process calls/s, max of before/after: {baseline})")
    print(
        f"{'server':>8} {'proto':>5} {'ex/req':>6} {'conns':>5} {'req/s':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'p99/p50':>7} {'vs in-process':>13}"
    )
    for r in results:
        r["ratio"] = r["rps"] / baseline[r["examples"]]
        spread = r["p99_ms"] / r["p50_ms"] if r["p50_ms"] else float("nan")
        print(
            f"{r['server']:>8} {r['protocol']:>5} {r['examples']:>6} {r['in_flight']:>5} "
            f"{r['rps']:8.0f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} {spread:7.1f} "
            f"{r['ratio']:12.2f}x"
        )
    print("\ntargets:")
    print("\n".join(_verdicts(results)))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"baseline_calls_per_s": baseline, "results": results}, indent=2)
        )


if __name__ == "__main__":
    main()
