"""The service conformance suite: every test runs against SQLite and PostgreSQL, through a
real gRPC server on a loopback port and the real client."""

from __future__ import annotations

import copy
import time

import grpc
import pytest

from tests.conftest import SIMPLE_SPEC
from tunewire.client import TunewireClientError, TuningClient
from tunewire.v1 import study_pb2 as pb


def spec(**overrides: object) -> dict:
    s = copy.deepcopy(SIMPLE_SPEC)
    s.update(overrides)
    return s


def test_create_study_is_idempotent_and_conflicts_on_other_spec(client: TuningClient) -> None:
    first = client.create_study("s", spec())
    again = client.create_study("s", spec())
    assert first.name == again.name == "s"
    assert again.state == pb.STUDY_STATE_ACTIVE
    with pytest.raises(TunewireClientError) as err:
        client.create_study("s", spec(seed=2))
    assert err.value.code == grpc.StatusCode.ALREADY_EXISTS
    assert "different spec" in err.value.details


def test_get_list_delete_stop_resume(client: TuningClient) -> None:
    for name in ("b", "a", "c"):
        client.create_study(name, spec())
    assert [s.name for s in client.list_studies()] == ["a", "b", "c"]
    stopped = client.stop_study("b")
    assert stopped.state == pb.STUDY_STATE_STOPPED
    trials, done, _ = client.suggest_raw("b", "w1")
    assert trials == [] and done
    assert client.resume_study("b").state == pb.STUDY_STATE_ACTIVE
    assert len(client.suggest("b", "w1")) == 1
    client.delete_study("b")
    with pytest.raises(TunewireClientError) as err:
        client.get_study("b")
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert [s.name for s in client.list_studies()] == ["a", "c"]


def test_trial_lifecycle_and_best(client: TuningClient) -> None:
    client.create_study("s", spec(max_trials=4))
    values = []
    for i in range(4):
        (trial,) = client.suggest("s", "w1")
        assert "units_1" in trial.params or trial.params["layers"] == 0
        for step in range(3):
            assert trial.report(step, {"loss": 10.0 - i - step, "acc": 0.5}) is False
        record = trial.complete({"loss": 10.0 - i - 2, "acc": 0.9})
        assert record.state == "completed"
        values.append(10.0 - i - 2)
    trials, done, _ = client.suggest_raw("s", "w1")
    assert trials == [] and done
    assert client.get_study("s").state == pb.STUDY_STATE_COMPLETED
    best = client.best_trials("s", count=2)
    assert [b.final_metrics["loss"] for b in best] == sorted(values)[:2]
    listed = client.list_trials("s", ["completed"])
    assert len(listed) == 4 and all(len(t.measurements) == 3 for t in listed)


def test_worker_gets_its_held_trial_back(client: TuningClient) -> None:
    client.create_study("s", spec())
    (a,) = client.suggest("s", "w1")
    (b,) = client.suggest("s", "w1")
    assert a.id == b.id and a.params == b.params
    (c,) = client.suggest("s", "w2")
    assert c.id != a.id
    assert len(client.suggest("s", "w1", count=3)) == 3


def test_reports_are_idempotent_by_step(client: TuningClient) -> None:
    client.create_study("s", spec())
    (trial,) = client.suggest("s", "w1")
    trial.report(0, {"loss": 1.0})
    trial.report(0, {"loss": 1.0})  # a retry after a timeout
    trial.report(1, {"loss": 0.5})
    record = client.get_trial("s", trial.id)
    assert [m[0] for m in record.measurements] == [0, 1]
    with pytest.raises(TunewireClientError) as err:
        trial.report(1, {"loss": 0.7})
    assert err.value.code == grpc.StatusCode.ALREADY_EXISTS
    # complete without metrics: the last report is the result; a retried complete answers the same
    assert trial.complete().final_metrics == {"loss": 0.5}
    assert trial.complete({"loss": 0.5}).state == "completed"
    assert trial.complete().state == "completed"


def test_expired_lease_marks_trial_lost_and_reoffers_config(client: TuningClient) -> None:
    client.create_study("s", spec(lease_timeout_seconds=1.0, max_trial_retries=1))
    (trial,) = client.suggest("s", "w1")
    time.sleep(1.3)
    (retry,) = client.suggest("s", "w2")
    assert retry.id != trial.id
    assert retry.params == trial.params
    lost = client.get_trial("s", trial.id)
    assert lost.state == "lost"
    assert client.get_trial("s", retry.id).retry_of == trial.id
    with pytest.raises(TunewireClientError) as err:
        trial.report(0, {"loss": 1.0})
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "lost" in err.value.details
    # Retry limit 1: when the retry is lost too, its configuration is not offered again.
    time.sleep(1.3)
    (fresh,) = client.suggest("s", "w3")
    assert fresh.params != trial.params
    assert client.get_trial("s", retry.id).state == "lost"


def test_heartbeat_keeps_the_lease(client: TuningClient) -> None:
    client.create_study("s", spec(lease_timeout_seconds=1.0))
    (trial,) = client.suggest("s", "w1")
    with trial.heartbeat(interval=0.2):
        time.sleep(2.0)
    client.suggest("s", "w2")  # touches the study: would mark an expired trial lost
    assert client.get_trial("s", trial.id).state == "active"
    trial.complete({"loss": 1.0})


def test_reports_keep_the_lease(client: TuningClient) -> None:
    """A report renews the lease as a heartbeat does, also when it repeats a step already
    reported (a retried report): 2.4 s of reports outlast a 1 s lease, 2 s of them retries
    of one step."""
    client.create_study("s", spec(lease_timeout_seconds=1.0))
    (trial,) = client.suggest("s", "w1")
    for step in (0, 1, 1, 1, 1, 1):
        time.sleep(0.4)
        trial.report(step, {"loss": 1.0 / (step + 1)})
    client.suggest("s", "w2")  # touches the study: would mark an expired trial lost
    assert client.get_trial("s", trial.id).state == "active"
    time.sleep(1.3)
    client.suggest("s", "w3")
    assert client.get_trial("s", trial.id).state == "lost"


def test_release_hands_trial_to_next_worker(client: TuningClient) -> None:
    client.create_study("s", spec())
    (trial,) = client.suggest("s", "w1")
    trial.report(0, {"loss": 3.0})
    assert trial.release().state == "requested"
    (again,) = client.suggest("s", "w2")
    assert again.id == trial.id and again.params == trial.params
    again.report(0, {"loss": 2.0})  # starts afresh: step 0 again is fine
    assert again.complete().final_metrics == {"loss": 2.0}


def test_add_trial_enqueues_and_warm_starts(client: TuningClient) -> None:
    client.create_study("s", spec())
    params = {"x": 1.5, "lr": 0.01, "layers": 1, "units_1": 64, "opt": "adam", "batch": 32}
    warm = client.add_trial("s", params, {"loss": 0.25})
    assert warm.state == "completed" and warm.source == "user"
    queued = client.add_trial("s", dict(params, x=2.5))
    assert queued.state == "requested"
    (trial,) = client.suggest("s", "w1")
    assert trial.id == queued.id and trial.params["x"] == 2.5
    assert client.best_trials("s")[0].id == warm.id


def test_infeasible_failed_and_context_manager(client: TuningClient) -> None:
    client.create_study("s", spec())
    (a,) = client.suggest("s", "w1")
    assert a.infeasible("out of memory").state == "infeasible"
    (b,) = client.suggest("s", "w1")
    with pytest.raises(RuntimeError):
        with b:
            raise RuntimeError("boom")
    failed = client.get_trial("s", b.id)
    assert failed.state == "failed" and "boom" in failed.reason
    (c,) = client.suggest("s", "w1")
    record = c.complete({"loss": float("nan")})
    assert record.state == "infeasible" and "non-finite" in record.reason
    assert client.list_trials("s", ["failed"])[0].id == b.id


def test_max_concurrent_trials(client: TuningClient) -> None:
    client.create_study("s", spec(max_concurrent_trials=2))
    assert len(client.suggest("s", "w1")) == 1
    assert len(client.suggest("s", "w2")) == 1
    trials, done, retry_after = client.suggest_raw("s", "w3")
    assert trials == [] and not done and retry_after > 0


def test_grid_search_exhausts(client: TuningClient) -> None:
    grid = {
        "parameters": [
            {"name": "layers", "type": "int", "min": 0, "max": 2},
            {
                "name": "width",
                "type": "categorical",
                "values": ["s", "l"],
                "condition": {"parent": "layers", "min": 1},
            },
        ],
        "metrics": [{"name": "loss", "goal": "minimize"}],
        "algorithm": "grid",
    }
    client.create_study("g", grid)
    seen = []
    for trial in client.worker_loop("g", "w1"):
        seen.append(tuple(sorted(trial.params.items())))
        trial.complete({"loss": 1.0})
    assert len(seen) == len(set(seen)) == 5  # layers=0, and 1,2 x {s,l}
    assert client.get_study("g").state == pb.STUDY_STATE_COMPLETED


def test_multi_objective_best_is_pareto_front(client: TuningClient) -> None:
    client.create_study(
        "m",
        spec(metrics=[{"name": "loss", "goal": "minimize"}, {"name": "acc", "goal": "maximize"}]),
    )
    results = [(1.0, 0.5), (2.0, 0.9), (3.0, 0.8), (0.5, 0.4), (1.0, 0.4)]
    ids = []
    for loss, acc in results:
        (t,) = client.suggest("m", "w")
        t.complete({"loss": loss, "acc": acc})
        ids.append(t.id)
    front = {t.id for t in client.best_trials("m")}
    assert front == {ids[0], ids[1], ids[3]}


def test_ownership_and_finished_trials_are_enforced(client: TuningClient) -> None:
    client.create_study("s", spec())
    (trial,) = client.suggest("s", "w1")
    intruder = TuningClient(client.target, retry_timeout=1)
    (other,) = intruder.suggest("s", "w2")
    other.id = trial.id  # w2 tries to act on w1's trial
    for call in (lambda: other.report(0, {"loss": 1.0}), lambda: other.complete({"loss": 1.0})):
        with pytest.raises(TunewireClientError) as err:
            call()
        assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "held by worker 'w1'" in err.value.details
    trial.complete({"loss": 1.0})
    with pytest.raises(TunewireClientError) as err:
        trial.report(5, {"loss": 1.0})
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(TunewireClientError) as err:
        trial.fail("late")
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    intruder.close()


def test_server_early_stopping_decision_is_recorded(client: TuningClient) -> None:
    client.create_study(
        "es", spec(early_stopping={"rule": "threshold", "bound": 5.0, "after_step": 2})
    )
    (trial,) = client.suggest("es", "w")
    assert not trial.report(1, {"loss": 9.0})
    assert trial.report(2, {"loss": 9.0})
    assert trial.report(3, {"loss": 8.0})  # told again
    record = trial.complete()
    assert record.state == "stopped_early"
    assert record.stopped_at_step == 2 and record.stop_rule == "threshold"
    with pytest.raises(TunewireClientError) as err:
        trial.report(4, {"loss": 8.0})
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
