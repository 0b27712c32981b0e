"""What every service call does with a study before its own rule: find it, parse its spec
(cached by its stored text), mark its expired leases LOST and queue their retries. No
background thread expires leases: the next call that touches the study does."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from tunewire.server.domain import lifecycle
from tunewire.server.domain.errors import (
    InvalidArgument,
    StoredSpecInvalid,
    StudyNotFound,
    TrialNotFound,
)
from tunewire.server.domain.limits import check_name, check_trial_id
from tunewire.server.domain.study import Study, StudySpec, StudyState, Trial, TrialState
from tunewire.server.storage.base import NeedsWrite, Storage, StudyRecord, StudyStore

T = TypeVar("T")
log = logging.getLogger(__name__)

# Parsed specs kept, by their stored text; the cache only saves parsing JSON.
SPEC_CACHE_SIZE = 1024


class StudyAccess:
    """Loads studies and trials for the services, in the caller's unit of work."""

    def __init__(self, storage: Storage, clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.clock = clock
        self._specs: dict[str, StudySpec] = {}

    def spec(self, study: StudyRecord) -> StudySpec:
        """The study's spec, parsed from its stored form.

        Raises:
            StoredSpecInvalid: it was stored by a version with looser rules.
        """
        spec = self._specs.get(study.spec_json)
        if spec is None:
            try:
                spec = StudySpec.from_json(study.spec_json)
            except InvalidArgument as exc:
                raise StoredSpecInvalid(
                    f"study {study.name!r} was stored with a spec this server refuses ({exc}); "
                    "delete it, or read it with the version that created it"
                ) from None
            if len(self._specs) >= SPEC_CACHE_SIZE:
                self._specs.clear()
            self._specs[study.spec_json] = spec
        return spec

    @staticmethod
    def study(store: StudyStore, name: str) -> StudyRecord:
        check_name("study", name)
        found = store.find_study(name)
        if found is None:
            raise StudyNotFound(f"study {name!r} not found")
        return found

    def to_study(self, store: StudyStore, study: StudyRecord) -> Study:
        counts = store.trial_counts([study.id])[study.id]
        spec = self.spec(study)
        changed = last_change(spec, store.trial_times([study.id])[study.id])
        return Study(study.name, spec, study.state, study.created_at, counts, changed)

    def read(self, op: Callable[[StudyStore], T]) -> T:
        """A call that only reads, as a read-only transaction; again as a write transaction
        if it finds leases to expire first (rare: their next call does it otherwise)."""
        try:
            return self.storage.run(op, read_only=True)
        except NeedsWrite:
            return self.storage.run(op)

    def touch_study(self, store: StudyStore, name: str) -> tuple[StudyRecord, StudySpec, float]:
        """The study, its spec and the time, after expiring its leases."""
        study = self.study(store, name)
        spec = self.spec(study)
        now = self.clock()
        self.expire_leases(store, study, spec, now)
        return study, spec, now

    def touch_trial(
        self, store: StudyStore, name: str, trial_id: int, *, for_update: bool
    ) -> tuple[StudyRecord, StudySpec, Trial, float]:
        """`touch_study` plus the trial, in one query when no lease of the study has
        expired: the common case of reports and heartbeats, which every worker sends
        many times per trial."""
        check_name("study", name)
        check_trial_id(trial_id)
        now = self.clock()
        found = store.find_study_trial(name, trial_id, now, for_update=for_update)
        if found is not None and not found[2]:
            study, trial, _ = found
            return study, self.spec(study), trial, now
        # Leases to expire first, or no such study or trial: the general path.
        study, spec, now = self.touch_study(store, name)
        loaded = store.get_trial(study, trial_id, for_update=for_update)
        if loaded is None:
            raise TrialNotFound(f"trial {trial_id} not found in study {name!r}")
        return study, spec, loaded, now

    def expire_leases(
        self, store: StudyStore, study: StudyRecord, spec: StudySpec, now: float
    ) -> None:
        """Marks trials whose lease expired LOST and queues their configurations again."""
        if not store.has_expired_leases(study, now):
            return
        if store.read_only:
            raise NeedsWrite
        store.lock_study(study)
        expired = store.trials(study, states=(TrialState.ACTIVE,), lease_before=now)
        retries = []
        for trial in expired:
            store.save_trial(study, trial, lifecycle.expire(trial, now))
            again = lifecycle.retry(trial, now, spec.max_trial_retries)
            if again is not None:
                retries.append(again)
        for again in store.add_trials(study, retries):
            log.info(
                "study %s: trial %d lost, re-offered as trial %d",
                study.name,
                again.retry_of,
                again.id,
            )

    def complete_if_done(self, store: StudyStore, study: StudyRecord, spec: StudySpec) -> bool:
        """Marks the study COMPLETED when its budget is used and nothing runs or waits."""
        if spec.max_trials <= 0 or study.state is not StudyState.ACTIVE:
            return False
        if not lifecycle.budget_spent(spec, study.state, store.tally(study)):
            return False
        store.set_study_state(study, StudyState.COMPLETED)
        return True


def last_change(spec: StudySpec | None, times: tuple[float, float]) -> float:
    """A study's update_time from its `StudyStore.trial_times`: an ACTIVE trial's lease was
    last renewed (by a report or heartbeat) one lease timeout before it ends."""
    ended, lease_end = times
    if not lease_end or spec is None:
        return ended
    return max(ended, lease_end - spec.lease_timeout_seconds)
