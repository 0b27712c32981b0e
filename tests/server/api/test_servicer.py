"""The servicer's status table on its own: every domain error category maps to the gRPC
status docs/api.md documents for it, every named error falls under one category, and
anything else is INTERNAL. No server, no service."""

from __future__ import annotations

import inspect
from pathlib import Path

import grpc
import pytest

from tunewire.server.api.servicer import STATUS_OF, Undecodable, lenient, status_of
from tunewire.server.domain import errors
from tunewire.server.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    StorageUnavailable,
    TunewireError,
)
from tunewire.v1 import tuning_service_pb2 as api

DOCS = Path(__file__).resolve().parents[3] / "docs" / "api.md"
CATEGORIES = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    StorageUnavailable: grpc.StatusCode.UNAVAILABLE,
}
NAMED = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, TunewireError) and cls is not TunewireError and cls not in CATEGORIES
]


def test_each_category_is_one_status_code() -> None:
    assert STATUS_OF == CATEGORIES
    for category, code in CATEGORIES.items():
        assert status_of(category("x")) == code


def test_every_status_code_of_the_table_is_documented() -> None:
    text = DOCS.read_text()
    for code in STATUS_OF.values():
        assert f"`{code.name}`" in text, code.name


@pytest.mark.parametrize("error", NAMED, ids=[cls.__name__ for cls in NAMED])
def test_a_named_error_gets_its_one_category_code(error: type[TunewireError]) -> None:
    categories = [c for c in CATEGORIES if issubclass(error, c)]
    assert len(categories) == 1, categories
    assert status_of(error("x")) == CATEGORIES[categories[0]]


def test_the_named_errors_are_the_ones_the_table_was_written_for() -> None:
    # A new named error must pick a category; this list makes the choice visible.
    assert {cls.__name__: status_of(cls("x")).name for cls in NAMED} == {
        "StudyNotFound": "NOT_FOUND",
        "TrialNotFound": "NOT_FOUND",
        "SpecConflict": "ALREADY_EXISTS",
        "StepAlreadyReported": "ALREADY_EXISTS",
        "RequestIdReused": "ALREADY_EXISTS",
        "TrialNotHeld": "FAILED_PRECONDITION",
        "TrialNotStarted": "FAILED_PRECONDITION",
        "LeaseExpired": "FAILED_PRECONDITION",
        "TrialFinished": "FAILED_PRECONDITION",
        "StudyFinished": "FAILED_PRECONDITION",
        "StoredSpecInvalid": "FAILED_PRECONDITION",
    }


def test_an_error_of_no_category_is_internal() -> None:
    class Uncategorised(TunewireError):
        pass

    assert status_of(TunewireError("x")) == grpc.StatusCode.INTERNAL
    assert status_of(Uncategorised("x")) == grpc.StatusCode.INTERNAL


def test_a_subclass_of_a_named_error_keeps_its_category() -> None:
    class LeaseExpiredLongAgo(errors.LeaseExpired):
        pass

    assert status_of(LeaseExpiredLongAgo("x")) == grpc.StatusCode.FAILED_PRECONDITION


def test_undecodable_bytes_reach_the_handler_instead_of_failing_in_grpc() -> None:
    parse = lenient(api.GetStudyRequest)
    assert parse(api.GetStudyRequest(name="s").SerializeToString()).name == "s"
    bad = parse(b"\x0a\xff")  # field 1, a length beyond the end
    assert isinstance(bad, Undecodable) and bad.kind == "tunewire.v1.GetStudyRequest"
