"""Where a unit of work runs when the async API calls it: on the event loop, or in the
thread pool. The composition root (server/app.py) picks one placement for the database:

- `InlineLightCalls` (SQLite): light calls (a row lookup and a short write) run on the
  event loop itself, one writer at a time with no thread hand-offs around the writer
  lock; everything else runs in the pool.
- `PooledCalls` (PostgreSQL): every call waits on network round trips, so every call runs
  in the pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Protocol, TypeVar

T = TypeVar("T")


class CallPlacement(Protocol):
    async def run(self, fn: Callable[[], T], *, light: bool) -> T:
        """fn's result; `light`: a short unit of work that may run on the event loop."""
        ...


class PooledCalls:
    """Every call in the thread pool."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def run(self, fn: Callable[[], T], *, light: bool) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)


class InlineLightCalls(PooledCalls):
    """Light calls on the event loop, the rest in the thread pool."""

    async def run(self, fn: Callable[[], T], *, light: bool) -> T:
        if light:
            return fn()
        return await super().run(fn, light=False)
