"""Dynamic batching: concurrent calls to one signature of one servable become one model call.

Per-request cost in a SavedModel call is mostly fixed (dispatch, parsing setup), so one call with
32 examples costs far less than 32 calls. Requests wait in a queue per (servable, signature,
input names); a batch leaves when a batch thread is free and either the queue holds
max_batch_size examples or the oldest request has waited batch_timeout_micros (0: leave at once).
While the model is busy, the queue fills, so batch size adapts to load without a fixed delay.

A failing batch is retried request by request, so one malformed request cannot fail its
neighbours. A request larger than max_execution_batch_size is split into model calls of that
many examples, queued one after another (enable_large_batch_splitting, on by default).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from serving.config import BatchingOptions

Tensors = dict[str, np.ndarray]
RunFn = Callable[[Tensors], Tensors]


class _Queue:
    __slots__ = ("key", "run", "items", "size", "first_at", "timer")

    def __init__(self, key: tuple, run: RunFn) -> None:
        self.key = key
        self.run = run
        self.items: list[tuple[Tensors, int, asyncio.Future]] = []
        self.size = 0
        self.first_at = 0.0
        self.timer: asyncio.TimerHandle | None = None


class BatchScheduler:
    """Event-loop side of batching; model calls run on `num_batch_threads` worker threads."""

    def __init__(
        self, options: BatchingOptions, on_batch: Callable[[tuple, int], None] | None = None
    ) -> None:
        self.options = options
        self._executor = ThreadPoolExecutor(
            max(1, options.num_batch_threads), thread_name_prefix="batch"
        )
        self._free = max(1, options.num_batch_threads)
        self._queues: dict[tuple, _Queue] = {}
        self._ready: list[_Queue] = []
        self._on_batch = on_batch

    async def submit(self, key: tuple, run: RunFn, inputs: Tensors, size: int) -> Tensors:
        """Queue one request of `size` examples; returns its slice of the batch's outputs. A
        request over `max_execution_batch_size` examples is split (see `_submit_split`)."""
        step = self.options.max_execution_batch_size
        if self.options.enable_large_batch_splitting and 0 < step < size:
            return await self._submit_split(key, run, inputs, size, step)
        return await self._submit(key, run, inputs, size)

    async def _submit_split(
        self, key: tuple, run: RunFn, inputs: Tensors, size: int, step: int
    ) -> Tensors:
        """`step` examples at a time, each chunk queued only when the previous one is done, so
        requests that arrive meanwhile ride between the chunks instead of waiting for the whole
        request, and no single model call converts the whole input under the GIL. If the first
        chunk's outputs are not all batch-major (a scalar output, say), the outputs cannot be
        put together: the request then runs whole, as it would unsplit. A failing chunk fails
        the request with its error."""
        first = await self._submit(key, run, _rows(inputs, 0, step), step)
        if not all(v.ndim and v.shape[0] == step for v in first.values()):
            return await self._submit(key, run, inputs, size)
        parts = [first]
        for start in range(step, size, step):
            n = min(step, size - start)
            parts.append(await self._submit(key, run, _rows(inputs, start, start + n), n))
        return {k: np.concatenate([p[k] for p in parts], axis=0) for k in first}

    async def _submit(self, key: tuple, run: RunFn, inputs: Tensors, size: int) -> Tensors:
        loop = asyncio.get_running_loop()
        q = self._queues.get(key)
        if q is None:
            q = self._queues[key] = _Queue(key, run)
        if not q.items:
            q.first_at = loop.time()
        fut = loop.create_future()
        q.items.append((inputs, size, fut))
        q.size += size
        self._pump(loop)
        return await fut

    def _due(self, q: _Queue, now: float) -> bool:
        if q.size >= self.options.max_batch_size or self.options.batch_timeout_micros <= 0:
            return True
        return (now - q.first_at) * 1e6 >= self.options.batch_timeout_micros

    def _pump(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for key, q in list(self._queues.items()):
            if not q.items:
                # Drop idle queues so unloaded servables are not kept alive by them.
                del self._queues[key]
                continue
            if self._free <= 0:
                return
            if self._due(q, now):
                if q.timer is not None:
                    q.timer.cancel()
                    q.timer = None
                self._dispatch(loop, q)
            elif q.timer is None:
                wait = self.options.batch_timeout_micros / 1e6 - (now - q.first_at)
                q.timer = loop.call_later(max(wait, 0.0), self._on_timer, loop, q)

    def _on_timer(self, loop: asyncio.AbstractEventLoop, q: _Queue) -> None:
        q.timer = None
        self._pump(loop)

    def _dispatch(self, loop: asyncio.AbstractEventLoop, q: _Queue) -> None:
        take, size = [], 0
        while q.items and (not take or size + q.items[0][1] <= self.options.max_batch_size):
            item = q.items.pop(0)
            take.append(item)
            size += item[1]
        q.size -= size
        if q.items:
            q.first_at = loop.time()
        self._free -= 1
        if self._on_batch:
            self._on_batch(q.key, size)
        fut = loop.run_in_executor(self._executor, _run_batch, q.run, [(i, n) for i, n, _ in take])
        fut.add_done_callback(lambda f: self._done(loop, f, take))

    def _done(self, loop: asyncio.AbstractEventLoop, f: asyncio.Future, take: list) -> None:
        self._free += 1
        results = f.result()  # _run_batch never raises; it returns per-request results
        for (_, _, fut), res in zip(take, results, strict=True):
            if fut.done():  # the caller went away (cancelled RPC)
                continue
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)
        self._pump(loop)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _rows(inputs: Tensors, start: int, stop: int) -> Tensors:
    return {k: v[start:stop] for k, v in inputs.items()}


def _run_batch(run: RunFn, items: list[tuple[Tensors, int]]) -> list[Tensors | BaseException]:
    if len(items) == 1:
        try:
            return [run(items[0][0])]
        except Exception as e:  # noqa: BLE001 - handed back to the one caller
            return [e]
    names = list(items[0][0])
    merged = {k: np.concatenate([i[k] for i, _ in items], axis=0) for k in names}
    total = sum(n for _, n in items)
    try:
        out = run(merged)
    except Exception:  # noqa: BLE001 - isolate the bad request(s) by running each alone
        return [_run_one(run, i) for i, _ in items]
    results: list[Tensors | BaseException] = []
    start = 0
    for _, n in items:
        results.append(
            {
                k: (v[start : start + n] if v.ndim and v.shape[0] == total else v)
                for k, v in out.items()
            }
        )
        start += n
    return results


def _run_one(run: RunFn, inputs: Tensors) -> Tensors | BaseException:
    try:
        return run(inputs)
    except Exception as e:  # noqa: BLE001
        return e
