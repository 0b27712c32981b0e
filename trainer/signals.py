"""Signals in a worker: the first SIGINT/SIGTERM stops training at once so that the trial
can be handed back; later ones are only logged."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from tunewire.trainer.errors import WorkerInterrupted

log = logging.getLogger("tunewire.trainer")


class SignalGuard:
    """Turns the first SIGINT/SIGTERM into WorkerInterrupted in the main thread (so that
    training stops at once and the trial can be handed back); later ones are only logged so
    that the hand-back itself is not interrupted."""

    def __init__(self) -> None:
        self.fired: str = ""
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.fired:
            log.warning("%s again: already stopping", name)
            return
        self.fired = name
        raise WorkerInterrupted(name)

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
