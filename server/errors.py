"""Domain errors. The gRPC edge maps each to one status code (see server/servicer.py)."""

from __future__ import annotations


class TunewireError(Exception):
    """Base of every error the domain raises on purpose; the message says what to fix."""


class InvalidArgument(TunewireError):
    """The request is malformed or violates the study's spec."""


class NotFound(TunewireError):
    """The study or trial does not exist."""


class AlreadyExists(TunewireError):
    """A study of that name exists with a different spec."""


class FailedPrecondition(TunewireError):
    """The call does not fit the current state (finished trial, other worker...)."""


class StorageUnavailable(TunewireError):
    """The database cannot be reached; the caller may retry."""
