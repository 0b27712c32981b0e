"""Flat combining of concurrent suggestion requests for one study (the PostgreSQL strategy).

On PostgreSQL a study's suggestions are serialised by its advisory lock for a whole
transaction, so under load workers would queue for it one by one and suggestions, not
the server's CPU, would set the pace. Here the first request for a study becomes the
leader and runs one transaction for every request queued by then (answered in arrival
order, one algorithm call for all); requests arriving meanwhile wait, and the leader hands
the lead to the first of them when it is done. A worker's second request never shares a
transaction with its first, so it sees the trial the first one got, exactly as if
serialised. A batch asks for at most `limit(name)` trials: 1 for an algorithm whose
batches cost more than single suggestions (the GP), where requests are answered one at a
time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar


class Ask(Protocol):
    """One worker's request for trials."""

    @property
    def worker_id(self) -> str: ...

    @property
    def count(self) -> int: ...


A = TypeVar("A", bound=Ask)
R = TypeVar("R")


class SuggestCombiner(Generic[A, R]):
    """Answers concurrent suggestion requests for one study in this process together."""

    def __init__(
        self,
        run: Callable[[str, Sequence[A]], list[R]],
        limit: Callable[[str], int],
    ) -> None:
        """`run(name, asks)` answers asks in one transaction; `limit(name)` is the most
        trials one batch of that study may ask for (1: one request at a time)."""
        self._run = run
        self._limit = limit
        self._lock = threading.Lock()
        self._queues: dict[str, list[_Waiter[A, R]]] = {}

    def submit(self, name: str, ask: A) -> R:
        """Blocks until the ask is answered, in a batch led by this thread or another."""
        me: _Waiter[A, R] = _Waiter(ask)
        with self._lock:
            queue = self._queues.get(name)
            if queue is None:
                self._queues[name] = []  # no one queued and no leader: lead
                me.lead = True
            else:
                queue.append(me)
        if not me.lead:
            me.event.wait()
            if not me.lead:
                return me.answer()
        self._serve(name, me)
        return me.answer()

    def _serve(self, name: str, me: _Waiter[A, R]) -> None:
        """As leader: one batch (this request and those queued), then pass the lead on."""
        with self._lock:
            queue = self._queues[name]
            batch, rest, workers, total = [me], [], {me.ask.worker_id}, me.ask.count
            limit = self._limit(name)
            for w in queue:
                if w.ask.worker_id in workers or total + w.ask.count > limit:
                    rest.append(w)
                else:
                    batch.append(w)
                    workers.add(w.ask.worker_id)
                    total += w.ask.count
            queue[:] = rest
        try:
            results = self._run(name, [w.ask for w in batch])
            for w, result in zip(batch, results, strict=True):
                w.result = result
        except BaseException as exc:  # every request of the batch gets the study's error
            for w in batch:
                w.error = exc
        with self._lock:
            queue = self._queues[name]
            if queue:
                heir = queue.pop(0)
                heir.lead = True
                heir.event.set()
            else:
                del self._queues[name]
        for w in batch:
            if w is not me:
                w.event.set()


class _Waiter(Generic[A, R]):
    def __init__(self, ask: A) -> None:
        self.ask = ask
        self.event = threading.Event()
        self.lead = False
        self.result: R | None = None
        self.error: BaseException | None = None

    def answer(self) -> R:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result
