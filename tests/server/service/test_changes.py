"""The change feed's paging on a clock the test moves: a pass cut by the trial or report
limit goes on where it stopped (inside a trial's reports too), and the next pass reaches
back CHANGES_OVERLAP_SECONDS before the pass began, no further."""

from __future__ import annotations

from pathlib import Path

from tests.server.helpers import BlockingService
from tunewire.server.domain.limits import CHANGES_OVERLAP_SECONDS
from tunewire.server.domain.study import Measurement, StudySpec
from tunewire.server.service.changes import ChangeCursor, StudyChanges, read_changes
from tunewire.server.storage.sql import SqlStorage

SPEC = StudySpec.from_dict(
    {
        "parameters": [{"name": "x", "type": "float", "min": 0.0, "max": 1.0}],
        "metrics": [{"name": "loss", "goal": "minimize"}],
        "algorithm": "random",
    }
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pages_go_on_inside_a_trial_and_the_next_pass_reaches_back_the_overlap(
    tmp_path: Path,
) -> None:
    clock = Clock()
    svc = BlockingService(SqlStorage(f"sqlite:///{tmp_path / 't.db'}"), clock=clock)
    try:
        svc.create_study("s", SPEC)
        for worker in ("a", "b"):
            (trial,) = svc.suggest_trials("s", 1, worker).trials
            for step in range(5):
                clock.now += 1
                svc.report("s", trial.id, worker, Measurement(step, {"loss": float(step)}))
            svc.complete_trial("s", trial.id, worker, None)

        def page(cursor: ChangeCursor, size: int = 10) -> StudyChanges:
            return svc.access.read(
                lambda store: read_changes(svc.access, store, "s", cursor, size, report_limit=3)
            )

        seen: list[tuple[int, int]] = []
        cursor, passes = ChangeCursor(), 0
        began = clock.now
        while True:
            answer = page(cursor)
            passes += 1
            seen += [(c.trial_id, s) for c in answer.curves for s in c.steps]
            clock.now += 0.5  # the pages of a pass are read at different times
            cursor = answer.next_cursor
            if not answer.more:
                break
        assert passes == 4  # 10 reports, 3 a page
        assert seen == [(t, s) for t in (1, 2) for s in range(5)]
        assert cursor == ChangeCursor(began - CHANGES_OVERLAP_SECONDS)

        # Later: the old trials are not given again; a new trial is, with its report.
        clock.now += 60
        (trial,) = svc.suggest_trials("s", 1, "c").trials
        svc.report("s", trial.id, "c", Measurement(0, {"loss": 9.0}))
        answer = page(ChangeCursor(clock.now - 1))
        assert [t.id for t in answer.trials] == [3] and not answer.more
        assert [(c.trial_id, c.steps, c.values) for c in answer.curves] == [(3, [0], [9.0])]
        assert answer.study.update_time == clock.now

        # By trials: one per page.
        ids = []
        cursor = ChangeCursor()
        while True:
            answer = page(cursor, size=1)
            ids += [t.id for t in answer.trials]
            cursor = answer.next_cursor
            if not answer.more:
                break
        assert ids == [1, 1, 2, 2, 3]  # a trial cut by the report limit comes again
    finally:
        svc.close()
