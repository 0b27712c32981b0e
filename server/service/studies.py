"""The calls on studies, each one unit of work."""

from __future__ import annotations

import logging
from dataclasses import replace

from tunewire.server.algorithms import get_algorithm
from tunewire.server.domain.errors import (
    InvalidArgument,
    SpecConflict,
    StoredSpecInvalid,
    StudyFinished,
)
from tunewire.server.domain.limits import check_name, listed, shown
from tunewire.server.domain.study import Study, StudySpec, StudyState, TrialState
from tunewire.server.service.access import StudyAccess, last_change
from tunewire.server.service.changes import ChangeCursor, StudyChanges, read_changes
from tunewire.server.storage.base import StudyRecord, StudyStore

log = logging.getLogger(__name__)

# Studies a metrics scrape reads at most.
MAX_SCRAPED_STUDIES = 10_000


class StudyService:
    """Create, read, list, stop, resume and delete studies."""

    def __init__(self, access: StudyAccess) -> None:
        self.access = access
        self.storage = access.storage

    def create(self, name: str, spec: StudySpec) -> tuple[Study, bool]:
        """The study of that name, created with `spec` unless it exists; and whether it
        was created now. Creating the same study again is not an error.

        Raises:
            InvalidArgument: a bad name, or a spec the study's algorithm refuses.
            SpecConflict: it exists with a different spec.
        """
        check_name("study", name)
        get_algorithm(spec.algorithm).check_spec(spec)
        spec_json = spec.to_json()
        # What is stored must read back as the same spec.
        if StudySpec.from_json(spec_json) != spec:
            raise InvalidArgument("the spec does not read back the same from its stored form")

        def op(store: StudyStore) -> tuple[Study, bool]:
            existing = store.find_study(name)
            created = False
            if existing is None:
                existing = store.add_study(name, spec_json, StudyState.ACTIVE, self.access.clock())
                created = existing is not None
                if existing is None:  # created concurrently by another call
                    existing = self.access.study(store, name)
            # Compared in today's canonical form, so that settings added with defaults
            # since the study was stored do not make an identical spec look different.
            stored = self.access.spec(existing)
            if stored.to_json() != spec_json:
                differences = spec_differences(stored, spec)
                raise SpecConflict(
                    f"study {name!r} exists with a different spec ({differences}); pick "
                    "another name or delete it"
                )
            return self.access.to_study(store, existing), created

        return self.storage.run(op)

    def get(self, name: str) -> Study:
        """The study with its trial counts (StudyNotFound when absent)."""

        def op(store: StudyStore) -> Study:
            study, _, _ = self.access.touch_study(store, name)
            return self.access.to_study(store, study)

        return self.access.read(op)

    def page(self, size: int, after_name: str) -> tuple[list[Study], str | None]:
        """Up to `size` studies by name after `after_name`; and the last name listed when
        there are more (None: that was all)."""

        def op(store: StudyStore) -> tuple[list[Study], str | None]:
            found = store.list_studies(after_name, size + 1)
            more = len(found) > size
            found = found[:size]
            counts = store.trial_counts([s.id for s in found])
            times = store.trial_times([s.id for s in found])
            out = []
            for s in found:
                spec = self._listed_spec(s)
                changed = last_change(spec, times[s.id])
                out.append(Study(s.name, spec, s.state, s.created_at, counts[s.id], changed))
            return out, (found[-1].name if more and found else None)

        return self.access.read(op)

    def _listed_spec(self, study: StudyRecord) -> StudySpec | None:
        """A listing shows a study whose stored spec no longer validates, without it."""
        try:
            return self.access.spec(study)
        except StoredSpecInvalid as exc:
            log.warning("listing %s", exc)
            return None

    def delete(self, name: str) -> None:
        """Deletes the study with its trials (StudyNotFound when absent)."""

        def op(store: StudyStore) -> None:
            study = self.access.study(store, name)
            store.lock_study(study)
            store.delete_study(study)

        self.storage.run(op)

    def set_state(self, name: str, state: StudyState) -> Study:
        """Stops (`state` STOPPED) or resumes (ACTIVE) the study; a completed study
        stays completed.

        Raises:
            StudyNotFound: no such study.
            StudyFinished: resuming a COMPLETED study.
        """

        def op(store: StudyStore) -> Study:
            study = self.access.study(store, name)
            store.lock_study(study)
            if state is StudyState.ACTIVE and study.state is StudyState.COMPLETED:
                raise StudyFinished(
                    f"study {name!r} is completed (its trial budget is used) and takes no "
                    "more trials; create a new study"
                )
            if study.state is not state and study.state is not StudyState.COMPLETED:
                store.set_study_state(study, state)
                study = replace(study, state=state)
            return self.access.to_study(store, study)

        return self.storage.run(op)

    def changes(self, name: str, cursor: ChangeCursor, size: int) -> StudyChanges:
        """What changed in the study since `cursor`, a page at a time (see
        `changes.read_changes`)."""
        return self.access.read(lambda store: read_changes(self.access, store, name, cursor, size))

    def trial_counts(self) -> list[tuple[str, dict[TrialState, int]]]:
        """Trials per state of every study, in one attempt (a metrics scrape must answer
        within its timeout, not retry for long)."""

        def op(store: StudyStore) -> list[tuple[str, dict[TrialState, int]]]:
            found = store.list_studies("", MAX_SCRAPED_STUDIES)
            counts = store.trial_counts([s.id for s in found])
            return [(s.name, counts[s.id]) for s in found]

        return self.storage.run(op, attempts=1, read_only=True)


def spec_differences(stored: StudySpec, asked: StudySpec) -> str:
    """What differs between two specs, for a message: the settings, and the parameters
    and metrics by name."""
    a, b = stored.to_dict(), asked.to_dict()
    parts = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key):
            continue
        if key in ("parameters", "metrics"):
            old = {p["name"]: p for p in a.get(key, [])}
            new = {p["name"]: p for p in b.get(key, [])}
            names = sorted(n for n in set(old) | set(new) if old.get(n) != new.get(n))
            parts.append(f"{key} {listed(names, 5)}")
        else:
            parts.append(f"{key}: {shown(a.get(key), 40)} stored, {shown(b.get(key), 40)} asked")
    return "; ".join(parts) or "settings equal in value but written differently"
