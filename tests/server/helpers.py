"""The service without gRPC, for tests: composed as the server composes it, each call run
on the server's event loop and awaited from the test's thread."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from tunewire.server.app import _EventLoopThread, compose_service
from tunewire.server.storage.base import Storage

T = TypeVar("T")


class BlockingService:
    """`TuningService`'s calls, each awaited to its result: `service.report(...)`."""

    def __init__(
        self, storage: Storage, clock: Callable[[], float] = time.time, threads: int = 8
    ) -> None:
        self.storage = storage
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="rpc")
        self.service = compose_service(storage, self.executor, clock)
        self.access = self.service.studies.access

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.service, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return run(method(*args, **kwargs))

        return call

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.storage.dispose()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """A coroutine of the service, run on the server's event loop."""
    return _EventLoopThread.run(coro, timeout=120)
