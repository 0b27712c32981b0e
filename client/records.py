"""What the client reads back from the server: trials as plain records, state names, and
the error every failed call raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc

from tunewire.client.spec import value_from_pb
from tunewire.v1 import study_pb2 as pb

STATE_NAMES = {v: k.removeprefix("TRIAL_STATE_").lower() for k, v in pb.TrialState.items()}
# The states a trial can be in, by name in the API's order ("unspecified" is no state).
STATE_VALUES = {v: k for k, v in STATE_NAMES.items() if k != pb.TRIAL_STATE_UNSPECIFIED}


class TunewireClientError(Exception):
    """A call failed; `code` is the gRPC status code and the message says what to fix."""

    def __init__(self, code: grpc.StatusCode, message: str, method: str) -> None:
        super().__init__(f"{method}: {code.name}: {message}")
        self.code = code
        self.details = message


@dataclass
class TrialRecord:
    """A trial as read back from the server (lists, best trials)."""

    id: int
    params: dict[str, Any]
    state: str
    final_metrics: dict[str, float] | None
    measurements: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    reason: str = ""
    worker_id: str = ""
    stopped_at_step: int | None = None
    stop_rule: str = ""
    source: str = ""
    retry_of: int = 0
    start_time: float = 0.0
    end_time: float = 0.0


def params_from_pb(trial: pb.Trial) -> dict[str, Any]:
    return {k: value_from_pb(v) for k, v in sorted(trial.parameters.items())}


def record_from_pb(t: pb.Trial) -> TrialRecord:
    return TrialRecord(
        id=t.id,
        params=params_from_pb(t),
        state=STATE_NAMES.get(t.state, "unknown"),
        final_metrics=dict(t.final_measurement.metrics)
        if t.HasField("final_measurement")
        else None,
        measurements=[(m.step, dict(m.metrics)) for m in t.measurements],
        reason=t.reason,
        worker_id=t.worker_id,
        stopped_at_step=t.stop_decision.step if t.HasField("stop_decision") else None,
        stop_rule=t.stop_decision.rule if t.HasField("stop_decision") else "",
        source=pb.TrialSource.Name(t.source).removeprefix("TRIAL_SOURCE_").lower(),
        retry_of=t.retry_of,
        start_time=t.start_time.ToNanoseconds() / 1e9 if t.HasField("start_time") else 0.0,
        end_time=t.end_time.ToNanoseconds() / 1e9 if t.HasField("end_time") else 0.0,
    )
