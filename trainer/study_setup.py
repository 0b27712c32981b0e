"""Before a worker trains: the study it joins, created from a spec file or the task's
default spec when asked, and checked against what the task can train; and after, why the
study has no more trials."""

from __future__ import annotations

import logging
from typing import Any

from tunewire.client import SpecError, TunewireClientError, TuningClient, load_spec_file
from tunewire.trainer.errors import TaskLoadError
from tunewire.trainer.reporter import TrainFunction
from tunewire.trainer.tasks import BuiltinTask
from tunewire.v1 import study_pb2 as pb

log = logging.getLogger("tunewire.trainer")


def load_spec(path: str) -> dict[str, Any]:
    """Reads a YAML or JSON study spec file, as the client commands do."""
    try:
        raw = load_spec_file(path)
    except OSError as exc:
        raise TaskLoadError(f"--space {path}: {exc.strerror}") from None
    except SpecError as exc:
        raise TaskLoadError(f"--space {exc}") from None
    if "parameters" not in raw:
        raise TaskLoadError(f"--space {path}: expected a mapping with 'parameters' and 'metrics'")
    return raw


def ensure_study(
    client: TuningClient, study_name: str, space: str | None, create: bool, task: TrainFunction
) -> None:
    """Creates the study when asked (`create`; idempotent) from the spec file `space` or
    the task's default spec, and checks that the task can train it.

    Raises:
        TaskLoadError, TaskParameterError, TaskMetricError: a spec the task cannot train.
        TunewireClientError: the server refused (the message says why).
    """
    spec: dict[str, Any] | None = None
    if space:
        spec = load_spec(space)
    elif isinstance(task, BuiltinTask):
        spec = task.default_spec()
    try:
        if isinstance(task, BuiltinTask) and spec is not None:
            task.check_spec(spec)
        if create and spec is not None:
            client.create_study(study_name, spec)
    except SpecError as exc:
        where = f"--space {space}" if space else "the task's default spec"
        raise TaskLoadError(f"{where}: {exc}") from None
    except TunewireClientError as exc:
        if exc.code.name != "ALREADY_EXISTS":
            raise
        level = logging.WARNING if space else logging.INFO
        log.log(level, "study %r exists with another spec; joining it as it is", study_name)
    try:
        study = client.get_study(study_name)
    except TunewireClientError as exc:
        if exc.code.name == "NOT_FOUND":
            raise TaskLoadError(
                f"study {study_name!r} does not exist on {client.target}: create it "
                "(tunewire study create) or pass --space FILE.yaml"
            ) from None
        raise
    if isinstance(task, BuiltinTask):
        task.check_spec(study.spec)


def why_study_ended(client: TuningClient, study_name: str) -> str:
    """Why the server has no more trials for a worker, from the study's state."""
    study = client.get_study(study_name)
    if study.state == pb.STUDY_STATE_STOPPED:
        return (
            f"study {study_name!r} is stopped (resume it with `tunewire study resume {study_name}`)"
        )
    if study.state == pb.STUDY_STATE_COMPLETED:
        budget = study.spec.max_trials
        return f"study {study_name!r} is completed" + (
            f": its trial budget ({budget}) is spent" if budget else ""
        )
    return "study done"
