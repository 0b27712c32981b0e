"""A process-wide limit of numpy/SciPy's BLAS to one thread while suggestions run."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from threadpoolctl import ThreadpoolController, threadpool_limits


class _SingleThreadedBlas:
    """Runs numpy/SciPy's BLAS (OpenBLAS) on one thread while any suggestion is computed.

    The matrices here are tiny (hundreds of rows at most), so BLAS threads never speed a
    suggestion up; but OpenBLAS threads spin after every call, multiplying a suggestion's
    CPU time and taking it from trainers that share the machine. The limit is
    process-wide, so concurrent suggestions share it: the first to enter sets it, the
    last to leave restores it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._controller: ThreadpoolController | None = None
        self._limit: Any = None  # threadpoolctl's limiter of the current holders

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                if self._controller is None:  # after numpy/SciPy loaded their BLAS
                    self._controller = ThreadpoolController()
                self._limit = self._controller.limit(limits=1, user_api="blas")
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    self._limit.restore_original_limits()
                    self._limit = None


single_threaded_blas = _SingleThreadedBlas()


def one_blas_thread_for_this_process() -> None:
    """Keeps numpy/SciPy's BLAS on one thread from now on, in the whole process (a server:
    nothing else in it uses BLAS). Besides the cost above, this keeps suggestions
    reproducible to the last bit: once OpenBLAS has run calls on two threads, later
    single-threaded calls can give results differing in the last bits from run to run
    (tests/server/service/test_many_workers.py checks that they do not); limited before
    any call, never. Call it after the algorithms are imported (their BLAS loaded).
    """
    threadpool_limits(limits=1, user_api="blas")
