"""Rows of the SQL tables <-> domain objects, and which columns a rule's change writes."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from tunewire.server.domain.early_stopping import StopDecision
from tunewire.server.domain.study import Measurement, StudyState, Trial, TrialSource, TrialState
from tunewire.server.storage.base import StudyRecord
from tunewire.server.storage.sql.statements import TRIAL_COLUMNS, to_json


def study_from_row(row: Sequence[Any]) -> StudyRecord:
    sid, name, spec_json, state, created_at = row
    return StudyRecord(int(sid), name, spec_json, StudyState(state), float(created_at))


def measurement_from_row(row: Mapping[Any, Any]) -> Measurement:
    return Measurement(
        step=int(row["step"]),
        metrics=json.loads(row["metrics_json"]),
        elapsed_seconds=float(row["elapsed_seconds"]),
        time=float(row["created_at"]),
    )


def trial_from_row(study: StudyRecord, row: Mapping[Any, Any]) -> Trial:
    stop = None
    if row["stop_step"] is not None:
        stop = StopDecision(int(row["stop_step"]), row["stop_rule"], row["stop_reason"])
    fm = row["final_metrics_json"]
    return Trial(
        study_name=study.name,
        id=int(row["trial_id"]),
        parameters=json.loads(row["params_json"]),
        state=TrialState(row["state"]),
        source=TrialSource(row["source"]),
        worker_id=row["worker_id"],
        final_metrics=None if fm is None else json.loads(fm),
        reason=row["reason"],
        stop_decision=stop,
        retry_of=int(row["retry_of"]),
        attempt=int(row["attempt"]),
        create_time=float(row["created_at"]),
        start_time=float(row["started_at"]),
        end_time=float(row["ended_at"]),
        lease_expires=float(row["lease_expires"]),
        final_step=None if row["final_step"] is None else int(row["final_step"]),
        final_elapsed_seconds=(
            None if row["final_elapsed_seconds"] is None else float(row["final_elapsed_seconds"])
        ),
        request_id=row["request_id"] or "",
    )


def _final_metrics_json(metrics: Mapping[str, float] | None) -> str | None:
    return None if metrics is None else to_json(dict(metrics))


def _stop_columns(stop: StopDecision | None) -> dict[str, Any]:
    if stop is None:
        return {"stop_step": None, "stop_rule": "", "stop_reason": ""}
    return {"stop_step": stop.step, "stop_rule": stop.rule, "stop_reason": stop.reason}


def trial_columns(t: Trial) -> dict[str, Any]:
    """Every column of a trial's row but study_id."""
    return {
        "trial_id": t.id,
        "params_json": to_json(dict(t.parameters)),
        "state": t.state.value,
        "source": t.source.value,
        "worker_id": t.worker_id,
        "attempt": t.attempt,
        "retry_of": t.retry_of,
        "created_at": t.create_time,
        "started_at": t.start_time,
        "ended_at": t.end_time,
        "lease_expires": t.lease_expires,
        "final_metrics_json": _final_metrics_json(t.final_metrics),
        "reason": t.reason,
        **_stop_columns(t.stop_decision),
        "final_step": t.final_step,
        "final_elapsed_seconds": t.final_elapsed_seconds,
        "request_id": t.request_id or None,
    }


ALL_TRIAL_COLUMNS = tuple(c for c in TRIAL_COLUMNS if c != "study_id")


def changed_columns(before: Trial, after: Trial) -> dict[str, Any]:
    """The columns a rule changed (a trial's identity, parameters and origin never change)."""
    out: dict[str, Any] = {}
    if after.state is not before.state:
        out["state"] = after.state.value
    if after.worker_id != before.worker_id:
        out["worker_id"] = after.worker_id
    if after.final_metrics != before.final_metrics:
        out["final_metrics_json"] = _final_metrics_json(after.final_metrics)
    if after.final_step != before.final_step:
        out["final_step"] = after.final_step
    if after.final_elapsed_seconds != before.final_elapsed_seconds:
        out["final_elapsed_seconds"] = after.final_elapsed_seconds
    if after.reason != before.reason:
        out["reason"] = after.reason
    if after.stop_decision != before.stop_decision:
        out.update(_stop_columns(after.stop_decision))
    if after.start_time != before.start_time:
        out["started_at"] = after.start_time
    if after.end_time != before.end_time:
        out["ended_at"] = after.end_time
    if after.lease_expires != before.lease_expires:
        out["lease_expires"] = after.lease_expires
    return out


def new_values(columns: Mapping[str, Any]) -> dict[str, Any]:
    return {f"new_{c}": v for c, v in columns.items()}
