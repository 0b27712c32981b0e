"""Studies the dashboard follows: each one's trials and learning curves in memory, kept up
to date with ListStudyChanges (the whole study on first use, then what changed), and a
version number per change so that pages ask only for what they have not seen."""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np

from tunewire.dashboard import analysis
from tunewire.dashboard.records import spec_summary, study_summary, trial_row
from tunewire.v1 import tuning_service_pb2 as api

RESULT_STATES = ("completed", "stopped_early")
# A page asking more often than this is answered from memory.
MIN_REFRESH_SECONDS = 0.5
# Importance is computed again at most this often while results keep coming.
IMPORTANCE_EVERY_SECONDS = 15.0


class ChangeReader(Protocol):
    """Where a followed study's changes come from (`StudySource`, or a client for reports)."""

    def changes(self, study: str, cursor: str) -> api.ListStudyChangesResponse: ...


class Curves:
    """One metric's values per trial, as float64 arrays of steps and values."""

    def __init__(self) -> None:
        self.by_trial: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def merge(self, trial_id: int, steps: Iterable[float], values: Iterable[float]) -> bool:
        """Adds values by step (a value given again replaces the one held); returns whether
        anything changed."""
        new_s = np.fromiter(steps, dtype="<f8")
        new_v = np.fromiter(values, dtype="<f8")
        old = self.by_trial.get(trial_id)
        if old is None:
            self.by_trial[trial_id] = (new_s, new_v)
            return True
        old_s, old_v = old
        if len(old_s) and len(new_s) and new_s[0] > old_s[-1] and np.all(np.diff(new_s) > 0):
            self.by_trial[trial_id] = (
                np.concatenate([old_s, new_s]),
                np.concatenate([old_v, new_v]),
            )
            return True
        s = np.concatenate([old_s, new_s])
        v = np.concatenate([old_v, new_v])
        order = np.argsort(s, kind="stable")
        s, v = s[order], v[order]
        last = np.append(s[1:] != s[:-1], True)  # the newest value of each step
        s, v = s[last], v[last]
        if np.array_equal(s, old_s) and np.array_equal(v, old_v):
            return False
        self.by_trial[trial_id] = (s, v)
        return True

    def drop(self, trial_id: int) -> bool:
        return self.by_trial.pop(trial_id, None) is not None

    def packed(self, trial_ids: Iterable[int]) -> dict[str, np.ndarray]:
        """The curves of `trial_ids` (those that have one) end to end: trial ids, the
        offset of each trial's first point (and one past the last), steps and values."""
        ids = sorted(i for i in trial_ids if i in self.by_trial)
        curves = [self.by_trial[i] for i in ids]
        lengths = np.array([len(s) for s, _ in curves], dtype="<i4")
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype("<i4")
        steps = np.concatenate([s for s, _ in curves]) if curves else np.zeros(0)
        values = np.concatenate([v for _, v in curves]) if curves else np.zeros(0)
        return {
            "ids": np.array(ids, dtype="<i4"),
            "offsets": offsets,
            "steps": steps.astype("<f8"),
            "values": values.astype("<f8"),
        }


class FollowedStudy:
    """One study as the dashboard holds it. Every method holds the study's lock: a refresh
    runs in a worker thread while pages read."""

    def __init__(self, name: str) -> None:
        self.name = name
        # Versions count from 0 again when a study is followed anew: pages holding another
        # epoch's version read the study again in full.
        self.epoch = uuid.uuid4().hex[:12]
        self.lock = threading.RLock()
        self.cursor = ""
        self.loaded = False
        self.refreshed_at = 0.0
        self.used_at = time.monotonic()
        self.summary: dict[str, Any] = {}
        self.spec: dict[str, Any] = {}
        self.trials: dict[int, dict[str, Any]] = {}
        # Each trial's message as last read, to skip the ones given again unchanged.
        self._wire: dict[int, bytes] = {}
        self.curves: dict[str, Curves] = {}
        self.version = 0
        self.trial_versions: dict[int, int] = {}
        self.results_version = 0
        self.importance: dict[str, Any] | None = None
        self.importance_of = -1  # results_version it was computed from
        self.importance_at = 0.0
        self.importance_running = False
        self.importance_version = 0
        # The full payload as JSON, and the version it is of (see payloads.study_json).
        self.encoded: tuple[int, bytes] | None = None

    def refresh(self, source: ChangeReader, *, force: bool = False) -> None:
        """Reads what changed since the last refresh (everything the first time)."""
        with self.lock:
            self.used_at = time.monotonic()
            if not force and self.loaded and self.used_at - self.refreshed_at < MIN_REFRESH_SECONDS:
                return
            while True:
                answer = source.changes(self.name, self.cursor)
                self.apply(answer)
                self.cursor = answer.next_cursor
                if not answer.more:
                    break
            self.loaded = True
            self.refreshed_at = time.monotonic()

    def apply(self, answer: api.ListStudyChangesResponse) -> None:
        """Applies one answer of ListStudyChanges (changes may come twice: by id)."""
        self.summary = study_summary(answer.study)
        if not self.spec:
            self.spec = spec_summary(answer.study.spec)
            self.curves = {m["name"]: Curves() for m in self.spec["metrics"]}
        changed: set[int] = set()
        results_changed = False
        for message in answer.trials:
            wire = message.SerializeToString(deterministic=True)
            if self._wire.get(message.id) == wire:
                continue  # given again (changes come at least once)
            self._wire[message.id] = wire
            row = trial_row(message)
            old = self.trials.get(row["id"])
            if old == row:
                continue
            if old is not None and (
                old["started"] != row["started"] or row["state"] == "requested"
            ):
                # Handed out afresh (or back in the queue): its earlier values are gone.
                for curves in self.curves.values():
                    curves.drop(row["id"])
            self.trials[row["id"]] = row
            changed.add(row["id"])
            was_result = old is not None and old["state"] in RESULT_STATES
            results_changed |= was_result or row["state"] in RESULT_STATES
        for curve in answer.curves:
            metric = self.curves.get(curve.metric)
            if metric is not None and metric.merge(curve.trial_id, curve.steps, curve.values):
                changed.add(curve.trial_id)
        if changed:
            self.version += 1
            for trial_id in changed:
                self.trial_versions[trial_id] = self.version
        if results_changed:
            self.results_version = self.version

    def changed_since(self, version: int) -> list[int]:
        return sorted(i for i, v in self.trial_versions.items() if v > version)

    def results(self) -> list[dict[str, Any]]:
        """Finished trials with every metric of the study, by id."""
        names = [m["name"] for m in self.spec.get("metrics", [])]
        return [
            t
            for _, t in sorted(self.trials.items())
            if t["state"] in RESULT_STATES and t["values"] and all(n in t["values"] for n in names)
        ]

    def pareto(self) -> list[int]:
        """Ids of the Pareto front of the study's metrics (several metrics only)."""
        metrics = self.spec.get("metrics", [])
        if len(metrics) < 2:
            return []
        done = self.results()
        y = np.array([[t["values"][m["name"]] for m in metrics] for t in done], dtype=float)
        maximize = [m["goal"] == "maximize" for m in metrics]
        front = analysis.pareto_front(y.reshape(len(done), len(metrics)), maximize)
        return [done[i]["id"] for i in front]

    def wants_importance(self) -> bool:
        with self.lock:
            return (
                self.loaded
                and not self.importance_running
                and self.importance_of != self.results_version
                and (
                    self.importance is None
                    or time.monotonic() - self.importance_at > IMPORTANCE_EVERY_SECONDS
                )
            )

    def compute_importance(self) -> None:
        """Parameter importance of the primary metric over the finished trials."""
        with self.lock:
            if not self.wants_importance():
                return
            self.importance_running = True
            of = self.results_version
            done = self.results()
            primary = self.spec["metrics"][0]["name"]
            parameters = self.spec["parameters"]
            params = [t["params"] for t in done]
            objective = [t["values"][primary] for t in done]
        try:
            found = analysis.importance_in_child(parameters, params, objective)
        finally:
            with self.lock:
                self.importance_running = False
        with self.lock:
            self.importance, self.importance_of = found, of
            self.importance_at = time.monotonic()
            self.version += 1
            self.importance_version = self.version


class FollowedStudies:
    """The studies pages have asked for, most recently used last; the least recently used
    is forgotten beyond `capacity`, and any not asked for in `idle_seconds`."""

    def __init__(self, capacity: int = 16, idle_seconds: float = 900.0) -> None:
        self.capacity = capacity
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._studies: OrderedDict[str, FollowedStudy] = OrderedDict()

    def get(self, name: str) -> FollowedStudy:
        now = time.monotonic()
        with self._lock:
            study = self._studies.pop(name, None) or FollowedStudy(name)
            self._studies[name] = study
            for other in [s for s in self._studies.values() if now - s.used_at > self.idle_seconds]:
                if other is not study:
                    del self._studies[other.name]
            while len(self._studies) > self.capacity:
                self._studies.popitem(last=False)
            return study

    def forget(self, name: str) -> None:
        with self._lock:
            self._studies.pop(name, None)
