"""Background lease renewal for a trial held by this worker (see `Trial.heartbeat`)."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from tunewire.client.records import TunewireClientError

log = logging.getLogger(__name__)


class RenewedTrial(Protocol):
    """What a heartbeat needs of its trial."""

    id: int
    finished: bool

    def heartbeat_once(self) -> bool: ...


class Heartbeat:
    """Background lease renewal for one trial (see Trial.heartbeat)."""

    def __init__(self, trial: RenewedTrial, interval: float) -> None:
        self.trial = trial
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial.id}", daemon=True)
        self.error: TunewireClientError | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.trial.finished:
                return
            try:
                self.trial.heartbeat_once()
            except TunewireClientError as exc:
                # A finished or lost trial cannot be renewed; the training loop learns of
                # it at its next report. Keep the error for the caller to inspect.
                self.error = exc
                log.warning("heartbeat of trial %d failed: %s", self.trial.id, exc)
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
