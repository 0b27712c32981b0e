"""The JSON the pages (and reports) read: a study in full, what changed in it since a
version, and the studies list. Curves travel as base64 little-endian arrays, which both
the page's code and plotly.js read without parsing numbers one by one."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import numpy as np

from tunewire.dashboard.follow import FollowedStudy


def b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _packed_curves(study: FollowedStudy, trial_ids: list[int]) -> dict[str, dict[str, str]]:
    return {
        metric: {key: b64(a) for key, a in curves.packed(trial_ids).items()}
        for metric, curves in study.curves.items()
    }


# Row fields a page always reads; the others are left out when empty (a page reads a
# missing one as empty), which makes a large study's JSON a third smaller.
_ALWAYS = frozenset({"id", "state", "params", "source"})


def compact(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k in _ALWAYS or v}


def study_payload(study: FollowedStudy) -> dict[str, Any]:
    """Everything the study's pages show (read under the study's lock)."""
    with study.lock:
        ids = sorted(study.trials)
        return {
            "now": time.time(),
            "epoch": study.epoch,
            "study": study.summary,
            "spec": study.spec,
            "version": study.version,
            "trials": [compact(study.trials[i]) for i in ids],
            "curves": _packed_curves(study, ids),
            "pareto": study.pareto(),
            "importance": study.importance,
        }


def study_json(study: FollowedStudy, extra: dict[str, Any]) -> bytes:
    """`study_payload` and `extra` as JSON, encoded once per version of the study (pages
    opened one after another get the same bytes)."""
    with study.lock:
        cached = study.encoded
        if cached is None or cached[0] != study.version:
            payload = study_payload(study)
            del payload["now"]
            body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
            cached = study.encoded = (study.version, body)
    head = json.dumps({"now": time.time(), **extra}, separators=(",", ":")).encode()
    return head[:-1] + b"," + cached[1][1:]


def changes_payload(study: FollowedStudy, since: int) -> dict[str, Any]:
    """What changed after version `since`: the trials and their whole curves, and the
    Pareto front and importance when they changed."""
    with study.lock:
        ids = study.changed_since(since)
        out: dict[str, Any] = {
            "now": time.time(),
            "epoch": study.epoch,
            "study": study.summary,
            "version": study.version,
            "trials": [compact(study.trials[i]) for i in ids],
            "curves": _packed_curves(study, ids),
        }
        if study.results_version > since:
            out["pareto"] = study.pareto()
        if study.importance_version > since:
            out["importance"] = study.importance
        return out
