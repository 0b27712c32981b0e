"""The conformance suite every `Storage` backend must pass (as Optuna's
`testing/pytest_storages.py` and Vizier's `datastore_test_lib.py` are for theirs).

A backend's test module subclasses `StorageConformance` and provides a `storage` fixture
that yields a fresh, empty `Storage`; every test then runs against it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

import pytest

from tests.server.storage.conformance_changes import ChangeReadsConformance
from tunewire.server.domain import lifecycle
from tunewire.server.domain.early_stopping import PeerQuery, StopDecision
from tunewire.server.domain.lifecycle import TrialTally
from tunewire.server.domain.study import (
    RESULT_STATES,
    Measurement,
    StudySpec,
    StudyState,
    Trial,
    TrialSource,
    TrialState,
)
from tunewire.server.storage.base import Storage, StudyRecord, StudyStore

T = TypeVar("T")
SPEC_JSON = '{"a":1}'


def _study(storage: Storage, name: str = "s") -> StudyRecord:
    def op(store: StudyStore) -> StudyRecord:
        added = store.add_study(name, SPEC_JSON, StudyState.ACTIVE, 100.0)
        assert added is not None
        return added

    return storage.run(op)


def _new(x: float = 0.5, source: TrialSource = TrialSource.ALGORITHM) -> Trial:
    return lifecycle.new_trial({"x": x, "kind": "a"}, source, 10.0)


def _in(storage: Storage, study: StudyRecord, fn: Callable[[StudyStore, StudyRecord], T]) -> T:
    return storage.run(lambda store: fn(store, study))


class StorageConformance(ChangeReadsConformance):
    """Every method of `StudyStore`, and the unit of work, in domain terms."""

    # -- studies ------------------------------------------------------------------------
    def test_studies_are_added_found_listed_and_a_taken_name_is_refused(
        self, storage: Storage
    ) -> None:
        a = _study(storage, "b-study")
        assert a.name == "b-study" and a.spec_json == SPEC_JSON and a.state is StudyState.ACTIVE
        assert a.created_at == 100.0
        _study(storage, "a-study")
        _study(storage, "c-study")
        assert storage.run(lambda s: s.add_study("b-study", "{}", StudyState.ACTIVE, 1.0)) is None
        assert storage.run(lambda s: s.find_study("b-study")) == a
        assert storage.run(lambda s: s.find_study("nope")) is None
        names = storage.run(lambda s: [r.name for r in s.list_studies("", 10)])
        assert names == ["a-study", "b-study", "c-study"]
        after = storage.run(lambda s: [r.name for r in s.list_studies("a-study", 1)])
        assert after == ["b-study"]

    def test_study_state_changes_and_deletion_takes_trials_and_reports(
        self, storage: Storage
    ) -> None:
        study = _study(storage)
        other = _study(storage, "other")

        def fill(store: StudyStore, s: StudyRecord) -> None:
            (t,) = store.add_trials(s, [_new()])
            store.add_measurement(s, t.id, Measurement(0, {"loss": 1.0}, 0.0, 1.0), 1.0)

        _in(storage, study, fill)
        _in(storage, other, fill)
        _in(storage, study, lambda store, s: store.set_study_state(s, StudyState.STOPPED))
        found = storage.run(lambda s: s.find_study("s"))
        assert found is not None and found.state is StudyState.STOPPED
        _in(storage, study, lambda store, s: store.delete_study(s))
        assert storage.run(lambda s: s.find_study("s")) is None
        assert _in(storage, other, lambda store, s: len(store.trials(s))) == 1
        reports = _in(storage, other, lambda store, s: store.measurements(s, [1]))
        assert list(reports) == [1]

    # -- trials -------------------------------------------------------------------------
    def test_new_trials_get_consecutive_ids_per_study(self, storage: Storage) -> None:
        study, other = _study(storage), _study(storage, "other")
        first = _in(storage, study, lambda store, s: store.add_trials(s, [_new(0.1), _new(0.2)]))
        assert [t.id for t in first] == [1, 2] and {t.study_name for t in first} == {"s"}
        assert [t.id for t in _in(storage, other, lambda st, s: st.add_trials(s, [_new()]))] == [1]
        more = _in(storage, study, lambda store, s: store.add_trials(s, [_new(0.3)]))
        assert [t.id for t in more] == [3]
        assert _in(storage, study, lambda store, s: store.add_trials(s, [])) == []
        stored = _in(storage, study, lambda store, s: store.get_trial(s, 2))
        assert stored == replace(first[1])

    def test_concurrent_additions_under_the_study_lock_never_share_an_id(
        self, storage: Storage
    ) -> None:
        study = _study(storage)
        ids: list[int] = []
        lock = threading.Lock()

        def add() -> None:
            for _ in range(5):

                def op(store: StudyStore) -> list[Trial]:
                    store.lock_study(study)
                    return store.add_trials(study, [_new(), _new()])

                added = storage.run(op)
                with lock:
                    ids.extend(t.id for t in added)

        threads = [threading.Thread(target=add) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(ids) == list(range(1, 41))

    def test_a_trial_round_trips_every_field_a_rule_changes(self, storage: Storage) -> None:
        study = _study(storage)
        (queued,) = _in(storage, study, lambda store, s: store.add_trials(s, [_new()]))
        steps = [
            lifecycle.start(queued, "w1", 11.0, 71.0),
            lambda t: lifecycle.stop(t, StopDecision(3, "median", "worse than the median")),
            lambda t: lifecycle.renew(t, 99.5),
            lambda t: lifecycle.complete(
                t, _spec("loss"), Measurement(5, {"loss": 0.25}, 2.5), "", None, 120.0
            ),
        ]
        current = queued
        for step in steps:
            after = step if isinstance(step, Trial) else step(current)
            _in(storage, study, lambda store, s, b=current, a=after: store.save_trial(s, b, a))
            assert _in(storage, study, lambda store, s: store.get_trial(s, queued.id)) == after
            current = after
        assert current.state is TrialState.STOPPED_EARLY
        back = lifecycle.release(lifecycle.start(queued, "w2", 1.0, 2.0))
        _in(storage, study, lambda store, s: store.save_trial(s, current, back))
        stored = _in(storage, study, lambda store, s: store.get_trial(s, queued.id))
        assert stored is not None
        assert (stored.state, stored.worker_id, stored.stop_decision) == (
            TrialState.REQUESTED,
            "",
            None,
        )
        assert stored.final_metrics is None and stored.reason == ""

    def test_trials_are_filtered_and_ordered_by_id(self, storage: Storage) -> None:
        study = _study(storage)

        def setup(store: StudyStore, s: StudyRecord) -> None:
            trials = store.add_trials(s, [_new(i / 10) for i in range(6)])
            for t, (worker, lease) in zip(
                trials[:4], [("w1", 50.0), ("w2", 150.0), ("w1", 200.0), ("w3", 40.0)], strict=False
            ):
                store.save_trial(s, t, lifecycle.start(t, worker, 1.0, lease))

        _in(storage, study, setup)

        def ids(**filters: object) -> list[int]:
            return _in(storage, study, lambda store, s: [t.id for t in store.trials(s, **filters)])

        assert ids() == [1, 2, 3, 4, 5, 6]
        assert ids(states=(TrialState.ACTIVE,)) == [1, 2, 3, 4]
        assert ids(states=(TrialState.REQUESTED,), limit=1) == [5]
        assert ids(states=(TrialState.ACTIVE,), worker_id="w1") == [1, 3]
        assert ids(after_id=4) == [5, 6]
        assert ids(ids=[6, 2]) == [2, 6]
        assert ids(ids=[]) == []
        assert ids(states=(TrialState.ACTIVE,), lease_before=100.0) == [1, 4]
        assert _in(storage, study, lambda store, s: store.has_expired_leases(s, 45.0))
        assert not _in(storage, study, lambda store, s: store.has_expired_leases(s, 39.0))

    def test_a_study_and_trial_are_found_together_with_whether_leases_expired(
        self, storage: Storage
    ) -> None:
        study = _study(storage)

        def setup(store: StudyStore, s: StudyRecord) -> None:
            a, b = store.add_trials(s, [_new(), _new()])
            store.save_trial(s, a, lifecycle.start(a, "w1", 1.0, 50.0))

        _in(storage, study, setup)
        found = storage.run(lambda s: s.find_study_trial("s", 2, 10.0, for_update=True))
        assert found is not None
        record, trial, expired = found
        assert record == study and trial.id == 2 and trial.study_name == "s" and not expired
        found = storage.run(lambda s: s.find_study_trial("s", 2, 60.0))
        assert found is not None and found[2]
        assert storage.run(lambda s: s.find_study_trial("s", 3, 0.0)) is None
        assert storage.run(lambda s: s.find_study_trial("x", 1, 0.0)) is None

    def test_tally_and_counts_by_state(self, storage: Storage) -> None:
        study = _study(storage)

        def setup(store: StudyStore, s: StudyRecord) -> None:
            trials = store.add_trials(s, [_new() for _ in range(5)])
            active = [lifecycle.start(t, f"w{t.id}", 1.0, 50.0) for t in trials[:3]]
            for before, after in zip(trials, active, strict=False):
                store.save_trial(s, before, after)
            store.save_trial(s, active[0], lifecycle.expire(active[0], 60.0))

        _in(storage, study, setup)
        tally = _in(storage, study, lambda store, s: store.tally(s))
        assert tally == TrialTally(created=5, lost=1, requested=2, active=2)
        counts = storage.run(lambda store: store.trial_counts([study.id]))
        assert counts == {
            study.id: {TrialState.LOST: 1, TrialState.REQUESTED: 2, TrialState.ACTIVE: 2}
        }

    def test_results_are_ranked_by_a_metric_ties_oldest_first(self, storage: Storage) -> None:
        study = _study(storage)
        values = [0.5, 0.25, 0.5, None, 0.75]

        def setup(store: StudyStore, s: StudyRecord) -> None:
            for v in values:
                new = _new()
                if v is not None:
                    new = lifecycle.recorded(
                        new.parameters, _spec(), Measurement(0, {"val.loss": v}), 5.0
                    )
                store.add_trials(s, [new])

        _in(storage, study, setup)
        results = _in(storage, study, lambda store, s: store.final_results(s, RESULT_STATES))
        assert [(i, m["val.loss"]) for i, _, m in results] == [
            (1, 0.5),
            (2, 0.25),
            (3, 0.5),
            (5, 0.75),
        ]
        best = _in(
            storage,
            study,
            lambda store, s: store.best_by_metric(
                s, RESULT_STATES, "val.loss", maximize=False, count=3
            ),
        )
        assert best == [2, 1, 3]
        top = _in(
            storage,
            study,
            lambda store, s: store.best_by_metric(
                s, RESULT_STATES, "val.loss", maximize=True, count=2
            ),
        )
        assert top == [5, 1]

    # -- measurements ---------------------------------------------------------------------
    def test_reports_are_stored_once_per_step_and_renew_the_lease(self, storage: Storage) -> None:
        study = _study(storage)

        def setup(store: StudyStore, s: StudyRecord) -> None:
            (t,) = store.add_trials(s, [_new()])
            store.save_trial(s, t, lifecycle.start(t, "w1", 1.0, 50.0))

        _in(storage, study, setup)
        first = Measurement(2, {"loss": 0.5, "acc": 0.1}, 1.5, 3.0)

        def add(m: Measurement, lease: float | None) -> bool:
            return _in(
                storage,
                study,
                lambda store, s: store.add_measurement(
                    s, 1, m, m.metrics.get("loss"), renew_lease_to=lease
                ),
            )

        assert add(first, 80.0)
        assert not add(Measurement(2, {"loss": 9.0}, 0.0, 4.0), 90.0)  # the step exists
        assert add(Measurement(0, {"acc": 0.0}, 0.0, 5.0), None)
        trial = _in(storage, study, lambda store, s: store.get_trial(s, 1))
        assert trial is not None and trial.lease_expires == 90.0
        assert _in(storage, study, lambda store, s: store.get_measurement(s, 1, 2)) == first
        assert _in(storage, study, lambda store, s: store.get_measurement(s, 1, 7)) is None
        reports = _in(storage, study, lambda store, s: store.measurements(s, [1, 2]))
        assert [m.step for m in reports[1]] == [0, 2] and list(reports) == [1]
        _in(storage, study, lambda store, s: store.delete_measurements(s, 1))
        assert _in(storage, study, lambda store, s: store.measurements(s, [1])) == {}

    def test_peer_numbers_reduce_the_other_trials_reports(self, storage: Storage) -> None:
        study = _study(storage)
        curves = {1: [1.0, 0.5], 2: [3.0, 2.0, 1.0], 3: [0.25]}

        def setup(store: StudyStore, s: StudyRecord) -> None:
            trials = store.add_trials(s, [_new() for _ in curves])
            for trial, (tid, curve) in zip(trials, curves.items(), strict=True):
                for step, value in enumerate(curve):
                    m = Measurement(step, {"loss": value}, 0.0, 1.0)
                    store.add_measurement(s, tid, m, value)
                done = lifecycle.start(trial, "w", 1.0, 9.0)
                if tid != 3:
                    final = Measurement(len(curve) - 1, {"loss": curve[-1]})
                    done = lifecycle.complete(done, _spec("loss"), final, "", None, 2.0)
                store.save_trial(s, trial, done)

        _in(storage, study, setup)
        last = PeerQuery(completed_only=False, reduce="last", step=1)
        values = _in(
            storage, study, lambda store, s: store.peer_values(s, last, metric="loss", exclude=3)
        )
        assert sorted(values) == [0.5, 2.0]
        completed_mean = PeerQuery(completed_only=True, reduce="mean", step=2)
        median = _in(
            storage,
            study,
            lambda store, s: store.peer_median(s, completed_mean, metric="loss", exclude=0),
        )
        assert median == (2, pytest.approx((0.75 + 2.0) / 2))
        nobody = _in(
            storage,
            study,
            lambda store, s: store.peer_median(
                s, PeerQuery(True, "first", 5), metric="loss", exclude=0
            ),
        )
        assert nobody == (0, None)

    # -- the unit of work -----------------------------------------------------------------
    def test_a_unit_of_work_that_raises_changes_nothing(self, storage: Storage) -> None:
        study = _study(storage)

        def half_done(store: StudyStore) -> None:
            store.add_trials(study, [_new()])
            store.set_study_state(study, StudyState.STOPPED)
            raise RuntimeError("the rule refused")

        with pytest.raises(RuntimeError):
            storage.run(half_done)
        assert _in(storage, study, lambda store, s: store.trials(s)) == []
        assert _in(storage, study, lambda store, s: store.tally(s).created) == 0
        found = storage.run(lambda s: s.find_study("s"))
        assert found is not None and found.state is StudyState.ACTIVE

    def test_read_only_units_know_they_are(self, storage: Storage) -> None:
        assert storage.run(lambda s: s.read_only, read_only=True)
        assert not storage.run(lambda s: s.read_only)


def _spec(metric: str = "val.loss") -> StudySpec:
    return StudySpec.from_dict(
        {
            "parameters": [{"name": "x", "type": "float", "min": 0.0, "max": 1.0}],
            "metrics": [{"name": metric, "goal": "minimize"}],
        }
    )
