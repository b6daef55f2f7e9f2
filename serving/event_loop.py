"""The asyncio event loop the model server runs on (`mlops serve --event_loop`).

The server is one GIL-bound Python thread per worker, so the loop's own cost per request is
serving capacity: uvloop (libuv, Cython; what uvicorn and KServe's model server run on) spends
less of that thread per request than asyncio's pure-Python selector loop, and aiohttp and
grpc.aio run on either (docs/serving.md, "Event loop": the measured difference). Kept free of
heavy imports so the CLI can offer the names at import time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def _uvloop() -> asyncio.AbstractEventLoop:
    import uvloop

    return uvloop.new_event_loop()


# name -> loop factory; the first is the default.
EVENT_LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": _uvloop,
    "asyncio": asyncio.new_event_loop,
}
DEFAULT_EVENT_LOOP = next(iter(EVENT_LOOPS))


def run_in_loop(coro: Coroutine[Any, Any, T], event_loop: str = DEFAULT_EVENT_LOOP) -> T:
    """Run `coro` to completion on a new loop of the `event_loop` kind."""
    with asyncio.Runner(loop_factory=EVENT_LOOPS[event_loop]) as runner:
        return runner.run(coro)
