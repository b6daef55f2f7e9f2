"""Large-request splitting (serving/batching.py `_submit_split`): a request over
max_execution_batch_size examples runs as consecutive model calls of that many, requests that
arrive meanwhile ride between the chunks, and the answer is the unsplit one.

The model is a numpy function on the scheduler's real batch thread and event loop, as in
test_batching.py; the end-to-end check goes through a real server and SavedModel.
"""

from __future__ import annotations

import asyncio
import base64
import re
import threading

import numpy as np
import pytest
import requests

from serving.batching import BatchScheduler
from serving.config import BatchingOptions
from serving.errors import ServingError, invalid_argument
from tests import serving_models as sm

KEY = ("servable", "serving_default", ("x",))
HANG_GUARD = 30.0  # seconds; only a deadlock would reach it (no timing is asserted)


def _options(**kw) -> BatchingOptions:
    return BatchingOptions(max_batch_size=128, max_execution_batch_size=1000, **kw)


class Model:
    """y = 2x + 1 per row; records each call's row count; a row of -1 fails its call; the
    first call can be held until the test releases it."""

    def __init__(self, hold_first: bool = False, scalar_output: bool = False) -> None:
        self.calls: list[int] = []
        self.release = threading.Event()
        self.started = threading.Event()
        self.hold_first = hold_first
        self.scalar_output = scalar_output

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        self.calls.append(len(x))
        if self.hold_first and len(self.calls) == 1:
            self.started.set()
            assert self.release.wait(HANG_GUARD)
        if (x == -1).any():
            raise invalid_argument(f"bad row in a call of {len(x)}")
        out = {"y": 2 * x + 1}
        if self.scalar_output:
            out["total"] = np.array(x.sum())
        return out


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, HANG_GUARD))


def test_a_large_request_runs_in_chunks_and_answers_as_unsplit():
    model = Model()
    x = np.arange(2_500, dtype=np.float64)

    async def go():
        b = BatchScheduler(_options())
        try:
            return await b.submit(KEY, model, {"x": x}, len(x))
        finally:
            b.shutdown()

    out = _run(go())
    assert model.calls == [1000, 1000, 500]
    np.testing.assert_array_equal(out["y"], 2 * x + 1)


@pytest.mark.parametrize(
    "options",
    [
        _options(enable_large_batch_splitting=False),
        BatchingOptions(max_execution_batch_size=0),
        BatchingOptions(max_execution_batch_size=-5),
    ],
    ids=["disabled", "zero", "negative"],
)
def test_splitting_off_or_nonsense_sizes_run_the_request_whole(options):
    model = Model()
    x = np.arange(2_500, dtype=np.float64)

    async def go():
        b = BatchScheduler(options)
        try:
            return await b.submit(KEY, model, {"x": x}, len(x))
        finally:
            b.shutdown()

    np.testing.assert_array_equal(_run(go())["y"], 2 * x + 1)
    assert model.calls == [2_500]


def test_requests_arriving_meanwhile_ride_between_the_chunks():
    model = Model(hold_first=True)
    big = np.arange(2_000, dtype=np.float64)
    finished: list[str] = []

    async def go():
        b = BatchScheduler(_options())
        try:

            async def one(name, x):
                out = await b.submit(KEY, model, {"x": x}, len(x))
                finished.append(name)
                return out

            big_task = asyncio.ensure_future(one("big", big))
            await asyncio.to_thread(model.started.wait, HANG_GUARD)  # chunk 1 is running
            small_task = asyncio.ensure_future(one("small", np.array([5.0, 6.0])))
            await asyncio.sleep(0)  # the small request is queued
            model.release.set()
            return await big_task, await small_task
        finally:
            b.shutdown()

    big_out, small_out = _run(go())
    assert model.calls == [1000, 2, 1000]  # the small request's call between the chunks
    assert finished == ["small", "big"]
    np.testing.assert_array_equal(big_out["y"], 2 * big + 1)
    np.testing.assert_array_equal(small_out["y"], [11.0, 13.0])


def test_an_output_without_the_batch_dimension_runs_the_request_whole():
    model = Model(scalar_output=True)
    x = np.arange(2_500, dtype=np.float64)

    async def go():
        b = BatchScheduler(_options())
        try:
            return await b.submit(KEY, model, {"x": x}, len(x))
        finally:
            b.shutdown()

    out = _run(go())
    assert model.calls == [1000, 2_500]  # the first chunk shows it cannot be put together
    assert float(out["total"]) == x.sum()
    np.testing.assert_array_equal(out["y"], 2 * x + 1)


def test_a_failing_chunk_fails_the_request_alone():
    model = Model()
    x = np.arange(2_500, dtype=np.float64)
    x[1_700] = -1  # in the second chunk

    async def go():
        b = BatchScheduler(_options())
        try:
            big = asyncio.ensure_future(b.submit(KEY, model, {"x": x}, len(x)))
            small = await b.submit(KEY, model, {"x": np.array([1.0])}, 1)
            with pytest.raises(ServingError, match="bad row in a call of 1000"):
                await big
            return small
        finally:
            b.shutdown()

    np.testing.assert_array_equal(_run(go())["y"], [3.0])
    assert 2_500 not in model.calls and model.calls.count(1000) == 2


def test_batching_parameters_file_sets_splitting():
    text = "max_execution_batch_size { value: 64 } enable_large_batch_splitting { value: false }"
    opts = BatchingOptions.from_text_proto(text)
    assert opts.max_execution_batch_size == 64 and opts.enable_large_batch_splitting is False
    defaults = BatchingOptions.from_text_proto("max_batch_size { value: 32 }")
    assert defaults.enable_large_batch_splitting is True
    assert defaults.max_execution_batch_size == 1024


def test_a_large_rest_request_is_split_end_to_end(tmp_path):
    base = tmp_path / "taxi"
    sm.build_model(base / "1")
    params = tmp_path / "batching.txt"
    params.write_text("max_execution_batch_size { value: 700 }\n")
    server = sm.ServerProcess(
        "--model_name=taxi", f"--model_base_path={base}", f"--batching_parameters_file={params}"
    ).wait_ready()
    try:
        example = base64.b64encode(sm.make_example(sm.SAMPLE_ROW)).decode()
        one = requests.post(
            server.rest_url + "/v1/models/taxi:predict",
            json={"instances": [{"b64": example}]},
            timeout=60,
        ).json()["predictions"][0]
        r = requests.post(
            server.rest_url + "/v1/models/taxi:predict",
            json={"instances": [{"b64": example}] * 2_000},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        predictions = r.json()["predictions"]
        assert len(predictions) == 2_000
        np.testing.assert_allclose(predictions, [one] * 2_000, rtol=1e-6)
        metrics = requests.get(server.rest_url + "/monitoring/prometheus/metrics", timeout=30).text
        # model calls: the single example, then 700 + 700 + 600 (none of 2,000 examples)
        count = re.search(r"tfserving_batch_size_count\{[^}]*\} (\S+)", metrics)
        assert count and float(count.group(1)) == 4.0, metrics[-2000:]
        le_512 = re.search(r'tfserving_batch_size_bucket\{[^}]*le="512.0"[^}]*\} (\S+)', metrics)
        le_1024 = re.search(r'tfserving_batch_size_bucket\{[^}]*le="1024.0"[^}]*\} (\S+)', metrics)
        assert le_512 and float(le_512.group(1)) == 1.0
        assert le_1024 and float(le_1024.group(1)) == 4.0
    finally:
        server.stop()
