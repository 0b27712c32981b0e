"""Parameter importance (fANOVA-style, over a random forest) and the Pareto front."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tunewire.dashboard import analysis

PARAMETERS = [
    {"name": "lr", "kind": "float", "low": 1e-4, "high": 1.0, "log": True},
    {"name": "noise", "kind": "float", "low": 0.0, "high": 1.0, "log": False},
    {"name": "opt", "kind": "categorical", "choices": ["sgd", "adam", "<b>x</b>"]},
    {"name": "units", "kind": "int", "low": 1, "high": 8, "log": False, "condition": "opt"},
]


def test_encoding_scales_to_the_range_in_log_space_and_marks_inactive_parameters() -> None:
    x = analysis.encode(PARAMETERS, [{"lr": 1e-2, "noise": 0.25, "opt": "adam"}])
    assert np.allclose(x[0, :3], [0.5, 0.25, 0.5])
    assert x[0, 3] == analysis.INACTIVE


def test_the_parameter_the_objective_depends_on_is_the_most_important() -> None:
    rng = np.random.default_rng(1)
    params = [
        {
            "lr": float(10 ** rng.uniform(-4, 0)),
            "noise": float(rng.uniform()),
            "opt": ["sgd", "adam", "<b>x</b>"][i % 3],
            "units": int(rng.integers(1, 9)),
        }
        for i in range(300)
    ]
    objective = [(np.log10(p["lr"]) + 2) ** 2 + 0.3 * (p["opt"] == "sgd") for p in params]
    found = analysis.importance(PARAMETERS, params, objective)
    assert found is not None and found["trials"] == 300
    assert found["parameters"][0] == "lr"
    shares = dict(zip(found["parameters"], found["importance"], strict=True))
    assert abs(sum(shares.values()) - 1) < 1e-9
    assert shares["lr"] > 0.6 and shares["opt"] > shares["noise"]


def test_importance_needs_trials_with_different_results() -> None:
    assert analysis.importance(PARAMETERS, [{"lr": 0.1}] * 3, [1.0] * 3) is None
    same = [{"lr": 0.1 * (i + 1), "noise": 0.1} for i in range(8)]
    assert analysis.importance(PARAMETERS, same, [2.0] * 8) is None


def test_importance_runs_in_one_low_priority_child_kept_while_work_comes() -> None:
    rng = np.random.default_rng(2)
    params = [
        {"lr": float(10 ** rng.uniform(-4, 0)), "noise": float(rng.uniform())} for _ in range(40)
    ]
    objective = [np.log10(p["lr"]) ** 2 for p in params]
    worker = analysis.ImportanceProcess(idle_seconds=1.0)
    first = worker.compute(PARAMETERS[:2], params, objective)
    child = worker.pid()
    assert first is not None and first["parameters"][0] == "lr" and child is not None
    # The lowest CPU priority: the server sharing the machine is served first.
    assert os.getpriority(os.PRIO_PROCESS, child) == 19
    assert worker.compute(PARAMETERS[:2], params, objective) == first
    assert worker.pid() == child and worker.started == 1  # scikit-learn imported once
    deadline = time.monotonic() + 30
    while worker.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert worker.pid() is None  # ended after a second without work
    assert worker.compute(PARAMETERS[:2], params, objective) == first
    assert worker.started == 2


def test_the_importance_child_ends_when_the_dashboard_is_killed() -> None:
    script = (
        "from tunewire.dashboard import analysis\n"
        "params = [{'lr': 10 ** (-i / 10), 'noise': i % 3 / 3} for i in range(20)]\n"
        "worker = analysis.ImportanceProcess()\n"
        "worker.compute(analysis_parameters, params, [i % 7 for i in range(20)])\n"
        "print(worker.pid(), flush=True)\n"
        "import time; time.sleep(600)\n"
    ).replace("analysis_parameters", repr(PARAMETERS[:2]))
    dashboard = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert dashboard.stdout is not None
        child = int(dashboard.stdout.readline())
        assert os.getpriority(os.PRIO_PROCESS, child) == 19
    finally:
        dashboard.send_signal(signal.SIGKILL)  # no chance to end its child itself
        dashboard.wait(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:  # gone, or a zombie its new parent has not reaped yet
            if Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
        except FileNotFoundError:
            break
        time.sleep(0.2)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the importance child outlived the dashboard")


def test_main_effects_of_a_tree_split_the_variance_exactly_for_an_additive_function() -> None:
    from sklearn.tree import DecisionTreeRegressor

    grid = np.array(
        [[a, b] for a in np.linspace(0.05, 0.95, 10) for b in np.linspace(0.05, 0.95, 10)]
    )
    y = 3 * (grid[:, 0] > 0.5) + 1 * (grid[:, 1] > 0.5)
    tree = DecisionTreeRegressor(max_depth=2).fit(grid, y)
    effects = analysis.main_effects(tree.tree_, 2)
    assert effects is not None
    # Each split's cell covers [INACTIVE, 1]: the shares follow from the cell widths, and
    # an additive function has no interaction left over.
    assert abs(effects.sum() - 1.0) < 1e-9 and effects[0] > 8 * effects[1]


def test_pareto_front_keeps_the_rows_nothing_beats_on_every_metric() -> None:
    y = np.array([[1.0, 5.0], [2.0, 2.0], [3.0, 3.0], [5.0, 1.0], [2.0, 2.0], [6.0, 0.5]])
    assert list(analysis.pareto_front(y, [False, False])) == [0, 1, 3, 4, 5]
    assert list(analysis.pareto_front(y, [True, False])) == [5]
    assert list(analysis.pareto_front(y, [True, True])) == [0, 2, 3, 5]
    assert list(analysis.pareto_front(np.zeros((0, 2)), [False, False])) == []
