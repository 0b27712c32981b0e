"""ListStudyChanges through a real server and client, on SQLite and PostgreSQL: the whole
study a page at a time, then what changed since (reports, hand-outs, releases), with the
study's last activity; bad cursors and page sizes are refused and change nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.conftest import SIMPLE_SPEC
from tunewire.client import TuningClient
from tunewire.server.app import run_in_background
from tunewire.v1 import study_pb2 as pb
from tunewire.v1 import tuning_service_pb2 as api
from tunewire.v1 import tuning_service_pb2_grpc as api_grpc

SPEC = {
    **SIMPLE_SPEC,
    "metrics": [{"name": "loss", "goal": "minimize"}, {"name": "acc", "goal": "maximize"}],
}


def changes(client: TuningClient, cursor: str = "", size: int = 0) -> api.ListStudyChangesResponse:
    return client.call(
        "ListStudyChanges",
        api.ListStudyChangesRequest(study_name="s", cursor=cursor, page_size=size),
    )


def points(
    answers: list[api.ListStudyChangesResponse],
) -> dict[tuple[int, str], list[tuple[int, float]]]:
    out: dict[tuple[int, str], list[tuple[int, float]]] = {}
    for answer in answers:
        for c in answer.curves:
            assert len(c.steps) == len(c.values)
            out.setdefault((c.trial_id, c.metric), []).extend(zip(c.steps, c.values, strict=True))
    return out


def test_the_whole_study_comes_a_page_at_a_time_then_only_what_changed(
    client: TuningClient,
) -> None:
    client.create_study("s", SPEC)
    empty = changes(client)
    assert not empty.trials and not empty.more and not empty.study.HasField("update_time")
    for i in range(3):
        (trial,) = client.suggest("s", f"w{i}")
        for step in range(4):
            # "acc" is left out of step 1: a report needs only one of the study's metrics.
            metrics = {"loss": 10.0 * i + step} | ({} if step == 1 else {"acc": 0.1 * step})
            trial.report(step, metrics)
        if i < 2:
            trial.complete({"loss": 1.0, "acc": 0.5})
    pages = [changes(client, size=2)]
    assert pages[0].more and [t.id for t in pages[0].trials] == [1, 2]
    pages.append(changes(client, pages[0].next_cursor, size=2))
    assert not pages[1].more and [t.id for t in pages[1].trials] == [3]
    assert all(not t.measurements for p in pages for t in p.trials)
    got = points(pages)
    assert got[(3, "loss")] == [(0, 20.0), (1, 21.0), (2, 22.0), (3, 23.0)]
    assert [s for s, _ in got[(3, "acc")]] == [0, 2, 3]
    assert set(got) == {(i, m) for i in (1, 2, 3) for m in ("loss", "acc")}
    study = pages[1].study
    assert study.trial_counts.completed == 2 and study.trial_counts.active == 1
    assert study.update_time.ToNanoseconds() > 0
    assert client.get_study("s").update_time.ToNanoseconds() > 0

    # Within the overlap, the recent trials come again; a new report comes with its value.
    (held,) = client.suggest("s", "w2")
    held.report(4, {"loss": 24.0})
    later = changes(client, pages[1].next_cursor)
    assert 3 in [t.id for t in later.trials] and not later.more
    assert (4, 24.0) in points([later])[(3, "loss")]

    # A released trial comes back REQUESTED with no values; its next hand-out starts afresh.
    held.release()
    released = changes(client, later.next_cursor)
    (back,) = [t for t in released.trials if t.id == 3]
    assert back.state == pb.TRIAL_STATE_REQUESTED and not back.HasField("start_time")
    assert all(c.trial_id != 3 for c in released.curves)


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[api_grpc.TuningServiceStub]:
    server = run_in_background(f"sqlite:///{tmp_path / 'changes.db'}")
    channel = grpc.insecure_channel(server.target)
    try:
        yield api_grpc.TuningServiceStub(channel)
    finally:
        channel.close()
        server.stop(0)


@pytest.mark.parametrize(
    ("request_fields", "code", "needle"),
    [
        ({"study_name": "s", "cursor": "not a cursor"}, grpc.StatusCode.INVALID_ARGUMENT, "cursor"),
        # Base64 of a page token, and of a cursor with a time that is not finite.
        ({"study_name": "s", "cursor": "MTI="}, grpc.StatusCode.INVALID_ARGUMENT, "cursor"),
        (
            {"study_name": "s", "cursor": "YzE6bmFuOjA6LTE6MC4w"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "cursor",
        ),
        ({"study_name": "s", "page_size": -1}, grpc.StatusCode.INVALID_ARGUMENT, "page_size"),
        ({"study_name": "<img src=x>"}, grpc.StatusCode.INVALID_ARGUMENT, "name"),
        ({"study_name": "nope"}, grpc.StatusCode.NOT_FOUND, "nope"),
    ],
)
def test_bad_requests_get_a_precise_status(
    stub: api_grpc.TuningServiceStub, request_fields: dict, code: grpc.StatusCode, needle: str
) -> None:
    from tunewire.client.spec import spec_from_dict

    stub.CreateStudy(api.CreateStudyRequest(name="s", spec=spec_from_dict(SPEC)))
    with pytest.raises(grpc.RpcError) as err:
        stub.ListStudyChanges(api.ListStudyChangesRequest(**request_fields))
    assert err.value.code() == code
    assert needle in (err.value.details() or "")
