"""serving/batching.py's BatchScheduler on its own: who waits for whom, and whose result is whose.

The model is a numpy function run on the scheduler's real batch threads (and the real event
loop), so these tests exercise the same dispatch, merge, split and retry code a server runs;
the end-to-end checks through a SavedModel are in test_api.py.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.batching import BatchScheduler
from serving.config import BatchingOptions

KEY = ("servable", "serving_default", ("x",))
HANG_GUARD = 30.0  # seconds; only a deadlock would reach it (no timing is asserted)


class Poisoned(ValueError):
    pass


def model(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """y = 2x + 1 per row, plus an unbatched output; any negative row poisons the whole call."""
    x = inputs["x"]
    if (x < 0).any():
        raise Poisoned(f"negative input in a call of {len(x)} rows")
    return {"y": 2 * x + 1, "calls": np.array(1)}


def scheduler(threads: int = 1, max_batch_size: int = 128, timeout_micros: int = 0):
    sizes: list[int] = []
    options = BatchingOptions(
        max_batch_size=max_batch_size,
        batch_timeout_micros=timeout_micros,
        num_batch_threads=threads,
    )
    return BatchScheduler(options, on_batch=lambda key, size: sizes.append(size)), sizes


def rows(*values: float) -> dict[str, np.ndarray]:
    return {"x": np.array(values, dtype=np.float64)}


class GatedModel:
    """`model`, but every call waits until the test opens the gate; `entered` is set on entry."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()

    def __call__(self, inputs):
        self.entered.set()
        assert self.gate.wait(HANG_GUARD), "the test never opened the gate"
        return model(inputs)


async def _wait_thread_event(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, HANG_GUARD), "the model was never called"


def test_a_lone_request_is_dispatched_without_waiting_for_company():
    """With batch_timeout_micros 0 a request at an idle server leaves at once, as a batch of
    one, although max_batch_size is far from reached."""

    async def go():
        sched, sizes = scheduler(max_batch_size=128)
        gated = GatedModel()
        try:
            task = asyncio.create_task(sched.submit(KEY, gated, rows(3.0), 1))
            await _wait_thread_event(gated.entered)  # the model runs while the request is alone
            assert sizes == [1]
            gated.gate.set()
            out = await task
        finally:
            sched.shutdown()
        np.testing.assert_array_equal(out["y"], [7.0])

    asyncio.run(go())


def test_requests_arriving_during_a_batch_are_merged_into_the_next_one():
    async def go():
        sched, sizes = scheduler(max_batch_size=128)
        gated = GatedModel()
        try:
            first = asyncio.create_task(sched.submit(KEY, gated, rows(1.0), 1))
            await _wait_thread_event(gated.entered)
            later = [
                asyncio.create_task(sched.submit(KEY, gated, rows(float(i), float(i)), 2))
                for i in range(10, 13)
            ]
            await asyncio.sleep(0)  # the three are queued behind the running call
            assert sizes == [1]
            gated.gate.set()
            results = await asyncio.gather(first, *later)
        finally:
            sched.shutdown()
        assert sizes == [1, 6]  # one call for the three waiting requests, not three
        np.testing.assert_array_equal(results[0]["y"], [3.0])
        for i, out in zip(range(10, 13), results[1:], strict=True):
            np.testing.assert_array_equal(out["y"], [2 * i + 1] * 2)
            assert out["calls"] == 1  # an unbatched output is handed to every request whole

    asyncio.run(go())


def test_a_failing_request_does_not_fail_its_neighbours():
    async def go():
        sched, sizes = scheduler(max_batch_size=128)
        gated = GatedModel()
        try:
            first = asyncio.create_task(sched.submit(KEY, gated, rows(0.0), 1))
            await _wait_thread_event(gated.entered)
            values = [1.0, -1.0, 2.0, 3.0]  # -1 poisons any call it is part of
            later = [asyncio.create_task(sched.submit(KEY, gated, rows(v), 1)) for v in values]
            await asyncio.sleep(0)
            gated.gate.set()
            results = await asyncio.gather(first, *later, return_exceptions=True)
        finally:
            sched.shutdown()
        assert sizes == [1, 4]  # merged, failed, then retried one by one
        assert isinstance(results[2], Poisoned)
        for v, out in zip(values, results[1:], strict=True):
            if v >= 0:
                np.testing.assert_array_equal(out["y"], [2 * v + 1])

    asyncio.run(go())


def test_a_queue_longer_than_max_batch_size_leaves_in_several_batches():
    async def go():
        sched, sizes = scheduler(max_batch_size=4)
        gated = GatedModel()
        try:
            first = asyncio.create_task(sched.submit(KEY, gated, rows(0.0), 1))
            await _wait_thread_event(gated.entered)
            later = [
                asyncio.create_task(sched.submit(KEY, gated, rows(float(i)), 1)) for i in range(10)
            ]
            await asyncio.sleep(0)
            gated.gate.set()
            results = await asyncio.gather(first, *later)
        finally:
            sched.shutdown()
        assert sizes == [1, 4, 4, 2]
        assert [float(r["y"][0]) for r in results[1:]] == [2 * i + 1 for i in range(10)]

    asyncio.run(go())


@pytest.mark.parametrize("threads", [1, 2])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=9),  # examples in the request
            st.booleans(),  # poisoned
            st.integers(min_value=0, max_value=3),  # loop turns before it arrives
        ),
        min_size=1,
        max_size=40,
    ),
    max_batch_size=st.integers(min_value=1, max_value=32),
)
def test_every_caller_gets_its_own_rows_under_concurrency(threads, requests, max_batch_size):
    """Random sizes, arrival turns and poisoned requests, 1 or 2 batch threads: each caller
    gets exactly its own rows back (or its own error), and no batch exceeds max_batch_size
    unless one request alone is larger."""

    async def one(sched, i, size, poisoned, delay):
        for _ in range(delay):
            await asyncio.sleep(0)
        x = np.arange(size, dtype=np.float64) + 100 * i
        if poisoned:
            x[-1] = -1.0
        return x, await sched.submit(KEY, model, {"x": x}, size)

    async def go():
        sched, sizes = scheduler(threads, max_batch_size)
        try:
            return sizes, await asyncio.gather(
                *(one(sched, i, *r) for i, r in enumerate(requests)), return_exceptions=True
            )
        finally:
            sched.shutdown()

    sizes, results = asyncio.run(go())
    for (size, poisoned, _), result in zip(requests, results, strict=True):
        if poisoned:
            assert isinstance(result, Poisoned)
            continue
        x, out = result
        assert out["y"].shape == (size,)
        np.testing.assert_array_equal(out["y"], 2 * x + 1)
    assert sum(sizes) == sum(size for size, _, _ in requests)  # every example in one dispatch
    biggest = max(size for size, _, _ in requests)
    assert max(sizes) <= max(max_batch_size, biggest)
