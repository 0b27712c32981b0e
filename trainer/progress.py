"""Progress of a trial: a bar redrawn in place on a terminal, plain log lines elsewhere
(files, CI logs, several workers sharing one terminal)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import TextIO

log = logging.getLogger("tunewire.trainer")

BAR_WIDTH = 20


class LogProgress:
    """One log line per epoch and per phase, at DEBUG (shown with -v): the worker logs each
    trial's start and result at INFO, which is enough to follow a long run."""

    def __init__(self, trial_id: int, objective: str) -> None:
        self.trial_id = trial_id
        self.objective = objective

    def epoch(
        self, step: int, total: int, metrics: Mapping[str, float], best: float | None
    ) -> None:
        values = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        of_total = f"/{total}" if total else ""
        best_text = f" best {best:.4g}" if best is not None else ""
        log.debug("trial %d epoch %d%s: %s%s", self.trial_id, step, of_total, values, best_text)

    def status(self, text: str) -> None:
        log.debug("trial %d: %s", self.trial_id, text)

    def close(self) -> None:
        """Nothing to clean up: every line is already complete."""


class BarProgress:
    """``trial 7 [#######-------------] 14/40 val_loss 0.1234 best 0.1100`` redrawn in place."""

    def __init__(self, trial_id: int, objective: str, stream: TextIO | None = None) -> None:
        self.trial_id = trial_id
        self.objective = objective
        self.stream = stream if stream is not None else sys.stderr
        self._drawn = False

    def _draw(self, text: str) -> None:
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()
        self._drawn = True

    def epoch(
        self, step: int, total: int, metrics: Mapping[str, float], best: float | None
    ) -> None:
        filled = min(BAR_WIDTH, round(BAR_WIDTH * step / total)) if total else 0
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        value = metrics.get(self.objective)
        parts = [f"trial {self.trial_id} [{bar}] {step}/{total or '?'}"]
        if value is not None:
            parts.append(f"{self.objective} {value:.4f}")
        if "train_loss" in metrics:
            parts.append(f"train {metrics['train_loss']:.4f}")
        if best is not None:
            parts.append(f"best {best:.4f}")
        self._draw(" ".join(parts))

    def status(self, text: str) -> None:
        self._draw(f"trial {self.trial_id}: {text}")

    def close(self) -> None:
        """Ends the redrawn line so that the next output starts on a fresh one."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def make_progress(mode: str, trial_id: int, objective: str) -> LogProgress | BarProgress | None:
    """`mode` is "bar", "log", "off", or "auto" (a bar when stderr is a terminal)."""
    if mode == "off":
        return None
    if mode == "bar" or (mode == "auto" and sys.stderr.isatty()):
        return BarProgress(trial_id, objective)
    return LogProgress(trial_id, objective)
