"""Where a serving request's time goes under load: an instrumented in-process `mlops serve`.

Starts serving/server.py's ModelServer (default options) in this process, puts `wrk -c64` (REST)
or `h2load` with 64 calls in flight on one connection (gRPC; serving_bench's command) on it, and
prints, for the measured window:

- event-loop lateness (a 1 ms ticker: how late the loop runs a due callback),
- the batcher's stages: queue wait (oldest request, at dispatch), model call, and the handoff
  from the batch thread back to the loop (result ready -> loop delivers it),
- batch sizes, garbage collections (count, longest, generation 2),
- the server process's CPU time per request (user + sys over the window / requests),
- with `--cprofile`, the event-loop thread's profile (cProfile sees that thread only).

    python bench/serving_profile.py [--protocol rest|grpc] [--duration 6] [--cprofile]
        [--server_args="--num_batch_threads=2"] [--client_cpus 1]

This is how docs/serving.md's "Serving tails" profiles were taken. Figures move with the machine's
load; compare trees by running this script from each checkout in turn (PYTHONPATH=checkout).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import os
import pstats
import subprocess
import tempfile
import time
from pathlib import Path

import _argtypes as argtypes  # bench/_argtypes.py: a script's sys.path starts at bench/

ROOT = Path(__file__).resolve().parents[1]


class Probe:
    """Stage timings, collected only while `on` (the measured window)."""

    def __init__(self) -> None:
        self.on = False
        self.series: dict[str, list[float]] = {
            k: [] for k in ("lateness", "queue_wait", "model_call", "handoff", "batch", "gc")
        }
        self.gen2 = 0
        self._gc_start = 0.0
        self._last_end = 0.0

    def add(self, name: str, value: float) -> None:
        if self.on:
            self.series[name].append(value)

    def install(self) -> None:
        from serving import batching

        run_batch, dispatch, done = (
            batching._run_batch,
            batching.BatchScheduler._dispatch,
            batching.BatchScheduler._done,
        )

        def timed_run(run, items):
            t0 = time.perf_counter()
            out = run_batch(run, items)
            self._last_end = time.perf_counter()
            self.add("model_call", (self._last_end - t0) * 1e3)
            self.add("batch", sum(n for _, n in items))
            return out

        def timed_dispatch(sched, loop, q):
            self.add("queue_wait", (loop.time() - q.first_at) * 1e3)
            return dispatch(sched, loop, q)

        def timed_done(sched, loop, f, take):
            self.add("handoff", (time.perf_counter() - self._last_end) * 1e3)
            return done(sched, loop, f, take)

        batching._run_batch = timed_run
        batching.BatchScheduler._dispatch = timed_dispatch
        batching.BatchScheduler._done = timed_done
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        elif self.on:
            self.series["gc"].append((time.perf_counter() - self._gc_start) * 1e3)
            self.gen2 += info["generation"] == 2

    async def ticker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.001)
            self.add("lateness", (loop.time() - t - 0.001) * 1e3)


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))] if s else float("nan")


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _client(args, server, workdir: str) -> subprocess.Popen:
    pin = ["taskset", "-c", ",".join(map(str, args.client_cpus))] if args.client_cpus else []
    seconds = int(args.warmup + args.duration + 2)
    if args.protocol == "rest":
        import base64
        import json

        import serving_bench as sb

        from serving_api.client import encode_example

        example = encode_example(sb._rows(1)[0])
        body = Path(workdir) / "body.json"
        body.write_text(json.dumps({"instances": [{"b64": base64.b64encode(example).decode()}]}))
        script = Path(workdir) / "post.lua"
        script.write_text(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f'local f = io.open("{body}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
        )
        url = f"http://127.0.0.1:{server.rest_port}/v1/models/taxi:predict"
        cmd = ["wrk", "-t1", f"-c{args.connections}", f"-d{seconds}s", "-s", str(script)]
        return subprocess.Popen([*pin, *cmd, "--latency", url], stdout=subprocess.PIPE, text=True)
    import serving_bench as sb

    from serving_api.client import encode_example

    payload = sb.grpc_request("taxi", [encode_example(sb._rows(1)[0])])
    body = sb.write_grpc_body(Path(workdir) / "grpc.bin", payload)
    url = f"http://127.0.0.1:{server.grpc_port}/tensorflow.serving.PredictionService/Predict"
    log = str(Path(workdir) / "h2load.log")
    cmd = sb.h2load_command(url, str(body), args.connections, 1, seconds - 1, log)
    return subprocess.Popen([*pin, *cmd], stdout=subprocess.PIPE, text=True)


async def _profile(args, probe: Probe, base: str, workdir: str) -> None:
    from serving import testing
    from serving.config import ServerOptions
    from serving.server import ModelServer

    options = ServerOptions(
        port=testing.free_port(),
        rest_api_port=testing.free_port(),
        model_name="taxi",
        model_base_path=base,
    )
    for flag in args.server_args.split():
        name, _, value = flag.lstrip("-").partition("=")
        setattr(options.batching, name, int(value))
    server = ModelServer(options)
    await server.start()
    asyncio.get_running_loop().create_task(probe.ticker())
    client = _client(args, server, workdir)
    await asyncio.sleep(args.warmup)
    profiler = cProfile.Profile() if args.cprofile else None
    cpu, wall = _cpu_seconds(), time.perf_counter()
    probe.on = True
    if profiler:
        profiler.enable()
    await asyncio.sleep(args.duration)
    if profiler:
        profiler.disable()
    probe.on = False
    cpu, wall = _cpu_seconds() - cpu, time.perf_counter() - wall
    out = await asyncio.to_thread(client.communicate)
    await server.stop(0)
    print(out[0].strip())
    requests = sum(probe.series["batch"])
    print(
        f"server CPU {cpu:.2f} s over {wall:.1f} s ({cpu / wall:.0%} of a core), "
        f"{requests / wall:.0f} examples/s, {cpu / max(requests, 1) * 1e6:.0f} us CPU per example"
    )
    for name in ("lateness", "queue_wait", "model_call", "handoff"):
        v = probe.series[name]
        print(
            f"{name:>11} ms: n={len(v):6d} p50 {_pct(v, 0.5):7.2f} p90 {_pct(v, 0.9):7.2f} "
            f"p99 {_pct(v, 0.99):7.2f} max {max(v, default=float('nan')):7.2f}"
        )
    b, g = probe.series["batch"], probe.series["gc"]
    print(
        f"batch size: mean {sum(b) / max(len(b), 1):.1f} p50 {_pct(b, 0.5):.0f} "
        f"max {max(b, default=0):.0f}; gc: {len(g)} collections, longest "
        f"{max(g, default=0):.1f} ms, {probe.gen2} of generation 2"
    )
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(args.sort).print_stats(40)
        print(text.getvalue())


def main() -> None:
    from serving.event_loop import DEFAULT_EVENT_LOOP, EVENT_LOOPS, run_in_loop

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--protocol", choices=("rest", "grpc"), default="rest")
    p.add_argument("--model_base_path", default=str(ROOT / "serving_model" / "taxi"))
    p.add_argument("--connections", type=argtypes.whole(1), default=64)
    p.add_argument("--duration", type=argtypes.seconds(), default=6.0, help="measured seconds")
    p.add_argument(
        "--warmup",
        type=argtypes.seconds(allow_zero=True),
        default=3.0,
        help="seconds of load before measuring",
    )
    p.add_argument("--cprofile", action="store_true", help="profile the event-loop thread")
    p.add_argument("--sort", default="tottime", help="cProfile sort key, e.g. cumulative")
    p.add_argument("--server_args", default="", help="batching options, e.g. --num_batch_threads=2")
    p.add_argument(
        "--client_cpus", type=argtypes.cpus, default=None, help="taskset the load client, e.g. 1"
    )
    p.add_argument(
        "--event_loop",
        choices=list(EVENT_LOOPS),
        default=DEFAULT_EVENT_LOOP,
        help="as `mlops serve --event_loop`",
    )
    args = p.parse_args()

    from model_layout import list_versions
    from serving import testing

    with tempfile.TemporaryDirectory(prefix="serving-profile-") as workdir:
        base = args.model_base_path
        if not list_versions(base):
            base = os.path.join(workdir, "taxi")
            testing.build_model(os.path.join(base, "1"))
        print("load average: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
        probe = Probe()
        probe.install()
        run_in_loop(_profile(args, probe, base, workdir), args.event_loop)


if __name__ == "__main__":
    main()
