"""The part of the storage conformance suite that views following a study read: trials that
may have changed since a time, reports' values as columns, each study's latest trial times.
`StorageConformance` includes it, so every backend runs it."""

from __future__ import annotations

import pytest

from tunewire.server.domain import lifecycle
from tunewire.server.domain.study import Measurement, StudyState, Trial, TrialSource
from tunewire.server.storage.base import Storage, StudyRecord, StudyStore


def _added(storage: Storage, name: str = "s") -> StudyRecord:
    def op(store: StudyStore) -> StudyRecord:
        added = store.add_study(name, '{"a":1}', StudyState.ACTIVE, 100.0)
        assert added is not None
        return added

    return storage.run(op)


def _trial(created: float) -> Trial:
    return lifecycle.new_trial({"x": 0.5}, TrialSource.ALGORITHM, created)


class ChangeReadsConformance:
    def test_trials_changed_since_a_time_are_the_open_ones_and_those_touched_since(
        self, storage: Storage
    ) -> None:
        study = _added(storage)

        def setup(store: StudyStore) -> None:
            # Created at 10: 1 ended at 20, 2 ended at 50, 3 still queued, 4 active since
            # 30; 5 created at 60 and ended at 65.
            t1, t2, _, t4 = store.add_trials(study, [_trial(10.0) for _ in range(4)])
            (t5,) = store.add_trials(study, [_trial(60.0)])
            for t, end in ((t1, 20.0), (t2, 50.0), (t5, 65.0)):
                started = lifecycle.start(t, "w", t.create_time + 5.0, 99.0)
                store.save_trial(study, t, lifecycle.fail(started, "boom", end))
            store.save_trial(study, t4, lifecycle.start(t4, "w2", 30.0, 99.0))

        storage.run(setup)

        def changed(since: float, **more: object) -> list[int]:
            found = storage.run(lambda s: s.trials(study, changed_since=since, **more))
            return [t.id for t in found]

        assert changed(0.0) == [1, 2, 3, 4, 5]
        assert changed(40.0) == [2, 3, 4, 5]
        assert changed(55.0) == [3, 4, 5]
        assert changed(70.0) == [3, 4]
        assert changed(40.0, after_id=2, limit=2) == [3, 4]

    def test_latest_trial_times_per_study(self, storage: Storage) -> None:
        study, other, empty = _added(storage), _added(storage, "o"), _added(storage, "e")

        def setup(store: StudyStore) -> None:
            a, b = store.add_trials(study, [_trial(10.0), _trial(12.0)])
            store.save_trial(study, a, lifecycle.start(a, "w", 20.0, 80.0))
            store.save_trial(
                study, b, lifecycle.fail(lifecycle.start(b, "w", 13.0, 90.0), "x", 25.0)
            )
            store.add_trials(other, [_trial(5.0)])

        storage.run(setup)
        times = storage.run(lambda s: s.trial_times([study.id, other.id, empty.id]))
        assert times == {study.id: (25.0, 80.0), other.id: (5.0, 0.0), empty.id: (0.0, 0.0)}
        assert storage.run(lambda s: s.trial_times([])) == {}

    def test_report_values_come_as_columns_since_a_time_after_a_position(
        self, storage: Storage
    ) -> None:
        study = _added(storage)

        def setup(store: StudyStore) -> None:
            store.add_trials(study, [_trial(1.0) for _ in range(3)])
            for tid in (1, 2, 3):
                for step in range(3):
                    metrics = {"loss": tid + step / 10}
                    if step != 1:
                        metrics["acc.top-1"] = step * 1.0
                    m = Measurement(step, metrics, 0.0, 10.0 * tid + step)
                    store.add_measurement(study, tid, m, metrics["loss"])

        storage.run(setup)

        def values(**kwargs: object) -> list[tuple[object, ...]]:
            return storage.run(lambda s: s.report_values(study, ["loss", "acc.top-1"], **kwargs))

        rows = values(last_id=3, limit=100)
        assert [(r[0], r[1]) for r in rows] == [(t, s) for t in (1, 2, 3) for s in range(3)]
        assert rows[1] == (1, 1, pytest.approx(1.1), None)
        assert rows[2] == (1, 2, pytest.approx(1.2), 2.0)
        since = values(since=21.0, last_id=3, limit=100)
        assert [(r[0], r[1]) for r in since] == [(2, 1), (2, 2), (3, 0), (3, 1), (3, 2)]
        after = values(after=(2, 0), last_id=3, limit=3)
        assert [(r[0], r[1]) for r in after] == [(2, 1), (2, 2), (3, 0)]
        upto = values(after=(1, 1), last_id=2, limit=100)
        assert [(r[0], r[1]) for r in upto] == [(1, 2), (2, 0), (2, 1), (2, 2)]
        assert values(last_id=0, limit=10) == []
        primary = storage.run(
            lambda s: s.report_values(study, ["loss"], after=(2, -1), last_id=2, limit=1)
        )
        assert primary == [(2, 0, pytest.approx(2.0))]
