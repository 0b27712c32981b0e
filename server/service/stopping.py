"""The stop decision on a report: the trial's own curve, and what its study's early-stopping
rule reads of the other trials, reduced by the database (see `PeerQuery`)."""

from __future__ import annotations

from tunewire.server.domain.early_stopping import (
    PEER_RULES,
    PeerQuery,
    StopDecision,
    decide_from_values,
    median_decision,
    peers_needed,
)
from tunewire.server.domain.study import Goal, Measurement, StudySpec
from tunewire.server.service.access import StudyAccess
from tunewire.server.storage.base import StudyRecord, StudyStore

# What a decision reads of the other trials: the median rule's (count, median), or one
# number per trial (successive halving).
PeerNumbers = list[float] | tuple[int, float | None]
# Studies remembered by `reads_peers`.
PEER_RULE_HINTS = 10_000


def loss(goal: Goal, value: float) -> float:
    """The value in "smaller is better" form."""
    return value if goal is Goal.MINIMIZE else -value


class StopDecisions:
    """Decides whether a trial stops on its latest report."""

    def __init__(self, access: StudyAccess) -> None:
        self.access = access
        # Studies whose rule reads other trials (median, successive halving), learnt from
        # their reports: a hint for where a report runs, never needed for correctness.
        self._peer_rules: dict[str, bool] = {}

    def reads_peers(self, name: str) -> bool:
        """Whether the study's rule reads other trials (False until a report says so)."""
        return self._peer_rules.get(name, False)

    def note_rule(self, name: str, spec: StudySpec) -> None:
        if len(self._peer_rules) >= PEER_RULE_HINTS:
            self._peer_rules.clear()
        self._peer_rules[name] = spec.early_stopping.rule in PEER_RULES

    @staticmethod
    def own_curve(
        store: StudyStore, study: StudyRecord, spec: StudySpec, trial_id: int
    ) -> list[tuple[int, float]]:
        """The trial's (step, loss) reports of the primary metric, by step."""
        metric = spec.primary_metric
        return [
            (m.step, loss(metric.goal, m.metrics[metric.name]))
            for m in store.measurements(study, [trial_id]).get(trial_id, [])
            if metric.name in m.metrics
        ]

    @staticmethod
    def peer_numbers(
        store: StudyStore, study: StudyRecord, spec: StudySpec, trial_id: int, query: PeerQuery
    ) -> PeerNumbers:
        """What the rule reads of the other trials, computed by the database: for the
        median rule their count and median, else one number per trial. (A median rule
        reads completed peers only: a stopped trial's truncated curve would drag the
        median towards the bad trials.)"""
        goal = spec.primary_metric.goal
        metric = spec.primary_metric.name
        if spec.early_stopping.rule == "median":
            count, median = store.peer_median(study, query, metric=metric, exclude=trial_id)
            return count, None if median is None else loss(goal, median)
        values = store.peer_values(study, query, metric=metric, exclude=trial_id)
        return [loss(goal, v) for v in values]

    def peers_beforehand(
        self, store: StudyStore, name: str, trial_id: int, measurement: Measurement
    ) -> tuple[PeerQuery, PeerNumbers] | None:
        """What the decision on this report will read of the other trials, from a snapshot
        taken before the report's transaction (None: nothing, or not known)."""
        study = self.access.study(store, name)
        spec = self.access.spec(study)
        metric = spec.primary_metric
        if spec.early_stopping.rule not in PEER_RULES or metric.name not in measurement.metrics:
            return None
        step = measurement.step
        curve = [p for p in self.own_curve(store, study, spec, trial_id) if p[0] != step]
        curve.append((step, loss(metric.goal, measurement.metrics[metric.name])))
        curve.sort()
        query = peers_needed(spec.early_stopping, curve)
        if query is None:
            return None
        return query, self.peer_numbers(store, study, spec, trial_id, query)

    def decide(
        self,
        store: StudyStore,
        study: StudyRecord,
        spec: StudySpec,
        trial_id: int,
        peers: tuple[PeerQuery, PeerNumbers] | None = None,
    ) -> StopDecision | None:
        """The stop decision on the trial's latest report. `peers`: the other trials'
        numbers read beforehand, used when the decision asks for exactly those."""
        policy = spec.early_stopping
        if policy.rule == "none":
            return None
        curve = self.own_curve(store, study, spec, trial_id)
        if not curve:
            return None
        query = peers_needed(policy, curve)
        if query is None:
            return decide_from_values(policy, curve, [])
        if peers is not None and peers[0] == query:
            numbers = peers[1]
        else:
            numbers = self.peer_numbers(store, study, spec, trial_id, query)
        if isinstance(numbers, tuple):
            return median_decision(policy, curve, *numbers)
        return decide_from_values(policy, curve, numbers)
