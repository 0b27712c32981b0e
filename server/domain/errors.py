"""Domain errors. Each is named for what went wrong in the domain; its base class is the
category the api layer maps to one gRPC status code (server/api/servicer.py)."""

from __future__ import annotations


class TunewireError(Exception):
    """Base of every error the domain raises on purpose; the message says what to fix."""


# -- categories (one status code each) -----------------------------------------------------
class InvalidArgument(TunewireError):
    """The request is malformed or violates the study's spec."""


class NotFound(TunewireError):
    """The study or trial does not exist."""


class AlreadyExists(TunewireError):
    """What the call would create exists already, and differs."""


class FailedPrecondition(TunewireError):
    """The call does not fit the current state (finished trial, other worker...)."""


class StorageUnavailable(TunewireError):
    """The database cannot be reached; the caller may retry."""


# -- what went wrong, by name ---------------------------------------------------------------
class StudyNotFound(NotFound):
    """No study of that name."""


class TrialNotFound(NotFound):
    """The study has no trial of that id."""


class SpecConflict(AlreadyExists):
    """A study of that name exists with a different spec."""


class StepAlreadyReported(AlreadyExists):
    """A report for the step exists with other values."""


class RequestIdReused(AlreadyExists):
    """An AddTrial request id already made a trial with other parameters."""


class TrialNotHeld(FailedPrecondition):
    """The trial is active but held by another worker."""


class TrialNotStarted(FailedPrecondition):
    """The trial waits in the queue (REQUESTED); no worker holds it."""


class LeaseExpired(FailedPrecondition):
    """The trial's lease ran out and it was marked LOST."""


class TrialFinished(FailedPrecondition):
    """The trial has already reached a final state."""


class StudyFinished(FailedPrecondition):
    """The study is completed: its budget is used."""


class StoredSpecInvalid(FailedPrecondition):
    """The study's stored spec does not validate under this server's rules."""
