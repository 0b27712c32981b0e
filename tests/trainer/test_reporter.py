"""The reporter a task gets: its best value follows the study's goal."""

from __future__ import annotations

from tunewire.trainer import Reporter


def test_best_is_the_smallest_value_or_the_largest_when_maximising() -> None:
    for maximize, expected in ((False, 0.2), (True, 0.9)):
        reporter = Reporter(objective="accuracy", maximize=maximize)
        for step, value in enumerate((0.5, 0.9, 0.2), start=1):
            reporter.report(step, {"accuracy": value})
        assert reporter.best == expected
