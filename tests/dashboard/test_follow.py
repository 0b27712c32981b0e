"""A followed study applies ListStudyChanges answers as the API defines them: at least
once (by id, by step), a trial handed out afresh loses its earlier values, and pages get
only what changed after the version they hold."""

from __future__ import annotations

import base64

import numpy as np

from tunewire.dashboard.follow import Curves, FollowedStudy
from tunewire.dashboard.payloads import changes_payload, study_payload
from tunewire.v1 import study_pb2 as pb
from tunewire.v1 import tuning_service_pb2 as api


def curve_of(curves: Curves, trial_id: int) -> list[tuple[float, float]]:
    steps, values = curves.by_trial[trial_id]
    return list(zip(steps.tolist(), values.tolist(), strict=True))


def test_curves_merge_by_step_whatever_order_and_repeats_come_in() -> None:
    c = Curves()
    assert c.merge(1, [0, 1], [1.0, 0.9])
    assert c.merge(1, [2, 3], [0.8, 0.7])  # the common case: appended
    assert not c.merge(1, [2, 3], [0.8, 0.7])  # given again: nothing changes
    assert c.merge(1, [1, 5, 4], [0.95, 0.5, 0.6])  # a step given again replaces
    assert curve_of(c, 1) == [(0, 1.0), (1, 0.95), (2, 0.8), (3, 0.7), (4, 0.6), (5, 0.5)]
    packed = c.packed([3, 1])
    assert packed["ids"].tolist() == [1] and packed["offsets"].tolist() == [0, 6]
    assert c.drop(1) and not c.drop(1)
    assert c.packed([1])["steps"].size == 0


def answer(
    *trials: pb.Trial, curves: tuple[pb.TrialCurve, ...] = ()
) -> api.ListStudyChangesResponse:
    spec = pb.StudySpec(
        parameters=[
            pb.ParameterSpec(name="x", float_range=pb.FloatRange(min_value=0, max_value=1))
        ],
        metrics=[pb.MetricSpec(name="loss", goal=pb.GOAL_MINIMIZE)],
        lease_timeout_seconds=60,
    )
    study = pb.Study(name="s", spec=spec, state=pb.STUDY_STATE_ACTIVE)
    return api.ListStudyChangesResponse(study=study, trials=trials, curves=curves)


def trial(tid: int, state: int, started: int = 0) -> pb.Trial:
    t = pb.Trial(id=tid, state=state, parameters={"x": pb.ParameterValue(number_value=0.5)})
    if started:
        t.start_time.FromSeconds(started)
    return t


def test_changes_apply_by_id_and_pages_get_what_changed_after_their_version() -> None:
    s = FollowedStudy("s")
    s.apply(
        answer(
            trial(1, pb.TRIAL_STATE_ACTIVE, 100),
            curves=(pb.TrialCurve(trial_id=1, metric="loss", steps=[0, 1], values=[2.0, 1.0]),),
        )
    )
    first = study_payload(s)
    assert first["version"] == 1 and [t["id"] for t in first["trials"]] == [1]
    packed = first["curves"]["loss"]
    assert np.frombuffer(base64.b64decode(packed["values"]), "<f8").tolist() == [2.0, 1.0]
    # The same answer again (at least once) changes nothing.
    s.apply(
        answer(
            trial(1, pb.TRIAL_STATE_ACTIVE, 100),
            curves=(pb.TrialCurve(trial_id=1, metric="loss", steps=[1], values=[1.0]),),
        )
    )
    assert s.version == 1 and changes_payload(s, 1)["trials"] == []
    # Released and handed out again: the old values go.
    s.apply(
        answer(
            trial(1, pb.TRIAL_STATE_ACTIVE, 200),
            trial(2, pb.TRIAL_STATE_REQUESTED),
            curves=(pb.TrialCurve(trial_id=1, metric="loss", steps=[0], values=[3.0]),),
        )
    )
    assert curve_of(s.curves["loss"], 1) == [(0, 3.0)]
    later = changes_payload(s, 1)
    assert [t["id"] for t in later["trials"]] == [1, 2] and later["version"] == 2
    assert "pareto" not in later  # no result changed
    done = trial(1, pb.TRIAL_STATE_COMPLETED, 200)
    done.final_measurement.metrics["loss"] = 0.5
    s.apply(answer(done))
    assert s.results_version == 3 and [t["id"] for t in s.results()] == [1]
    assert changes_payload(s, 2)["pareto"] == []  # one metric: no front
