"""The trainer's CUDA-only decisions, on a machine without a GPU: the CUDA runtime is faked
(tests/trainer/fake_cuda.py), everything else is real: the server, the client, the worker,
worker processes, training code.

What is asserted is what our code decides: which device each worker gets and pins, that
data go through pinned memory with non-blocking copies only on CUDA, the autocast dtype and
whether gradients are scaled, and that an out-of-memory error mid-epoch makes the trial
infeasible, frees the cache once the trial's tensors are gone, and the worker goes on.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from tunewire.client import TuningClient
from tunewire.server.app import RunningServer
from tunewire.trainer import Reporter, cli
from tunewire.trainer.devices import (
    DeviceError,
    parse_devices,
    prepare_device,
    release_cuda_memory,
    resolve_device,
)
from tunewire.trainer.tasks.datasets import load_splits
from tunewire.trainer.tasks.training import _Precision, to_device
from tunewire.trainer.worker import WorkerSettings, run_worker

from . import user_tasks
from .fake_cuda import FakeCuda, worker_process_dying_on_gpu_1, worker_process_on_fake_gpus
from .user_tasks import SPACE

# Module form, so that the worker imports the very module this test reads OOM_BATCHES from.
TASKS = "tests.trainer.user_tasks"

CUDA0 = torch.device("cuda", 0)
CUDA1 = torch.device("cuda", 1)


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
    """Two GPUs with native bfloat16 (Ampere or newer)."""
    return FakeCuda(count=2).install(monkeypatch.setattr)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """prepare_device sets torch's thread count; give the rest of the session its own back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def settings(server: RunningServer, study: str, task: str, **kw: Any) -> WorkerSettings:
    return WorkerSettings(
        server=server.target, study=study, task=f"{TASKS}:{task}", progress="off", **kw
    )


# --- devices.py ---------------------------------------------------------------------------


def test_devices_name_each_gpu_and_auto_picks_the_first(gpus: FakeCuda) -> None:
    assert parse_devices("cuda:0,cuda:1") == ["cuda:0", "cuda:1"]
    assert parse_devices("cuda*2") == ["cuda", "cuda"]
    assert resolve_device("cuda") == CUDA0
    assert resolve_device("auto") == CUDA0
    assert resolve_device("") == CUDA0
    assert resolve_device("CUDA:1") == CUDA1


def test_a_gpu_this_machine_lacks_is_refused_before_any_worker_starts(gpus: FakeCuda) -> None:
    with pytest.raises(DeviceError, match=r"'cuda:2': this machine has 2 CUDA device\(s\)"):
        parse_devices("cuda:0,cuda:2")
    gpus.count = 0
    with pytest.raises(DeviceError, match=r"has 0 CUDA device"):
        resolve_device("cuda")


def test_auto_is_the_cpu_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        parse_devices("cuda:0,cuda:1")


def test_a_gpu_worker_pins_its_device_and_one_thread(gpus: FakeCuda, one_thread: None) -> None:
    prepare_device(CUDA1, None)
    assert gpus.set_devices == [CUDA1] and torch.cuda.current_device() == 1
    assert torch.get_num_threads() == 1
    prepare_device(torch.device("cpu"), 2)
    assert gpus.set_devices == [CUDA1], "a CPU worker selects no GPU"
    assert torch.get_num_threads() == 2


def test_cuda_memory_is_released_only_where_there_is_cuda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeCuda().install(monkeypatch.setattr)
    release_cuda_memory()
    assert len(fake.empty_cache_calls) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    release_cuda_memory()  # without CUDA, empty_cache would initialise nothing useful
    assert len(fake.empty_cache_calls) == 1


# --- training.py: data copies and mixed precision ------------------------------------------


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Records pin_memory and .to calls; the tensors stay where they are."""
    calls: list[tuple[Any, ...]] = []

    def pin_memory(self: torch.Tensor) -> torch.Tensor:
        calls.append(("pin_memory", id(self)))
        return self

    def to(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(("to", id(self), args, kwargs))
        return self

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
    monkeypatch.setattr(torch.Tensor, "to", to)
    return calls


SPLIT_NAMES = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "recon_train")


def test_data_reach_a_gpu_through_pinned_memory_without_blocking(
    gpus: FakeCuda, copies: list[tuple[Any, ...]]
) -> None:
    data = load_splits("digits", 0)
    to_device(data, CUDA1)
    expected: list[tuple[Any, ...]] = []
    for name in SPLIT_NAMES:
        t = getattr(data, name)
        expected += [("pin_memory", id(t)), ("to", id(t), (CUDA1,), {"non_blocking": True})]
    assert copies == expected


def test_data_stay_unpinned_with_plain_copies_on_the_cpu(copies: list[tuple[Any, ...]]) -> None:
    data = load_splits("digits", 0)
    to_device(data, torch.device("cpu"))
    cpu = torch.device("cpu")
    assert copies == [("to", id(getattr(data, n)), (cpu,), {}) for n in SPLIT_NAMES]


@pytest.mark.parametrize(
    ("amp", "device", "use_amp"),
    [(True, CUDA0, True), (True, torch.device("cpu"), False), (False, CUDA0, False)],
)
def test_mixed_precision_applies_only_when_asked_and_on_cuda(
    amp: bool, device: torch.device, use_amp: bool
) -> None:
    assert Reporter(device=device, amp=amp).use_amp is use_amp


def precision_on(device: torch.device, amp: bool) -> _Precision:
    """_Precision as train_network builds it; any warning (e.g. torch disabling autocast or
    the scaler because it saw no CUDA) fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return _Precision(Reporter(device=device, amp=amp))


def test_amp_on_a_gpu_with_native_bf16_autocasts_to_bf16_without_scaling(gpus: FakeCuda) -> None:
    precision = precision_on(CUDA0, amp=True)
    assert precision.dtype is torch.bfloat16
    assert not precision.scaler.is_enabled(), "bfloat16 has float32's range: nothing to scale"
    autocast = precision.autocast()
    assert isinstance(autocast, torch.autocast)
    assert (autocast.device, autocast.fast_dtype) == ("cuda", torch.bfloat16)


def test_amp_on_a_gpu_that_only_emulates_bf16_uses_fp16_with_loss_scaling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FakeCuda(count=1, native_bf16=False).install(monkeypatch.setattr)  # e.g. a T4
    precision = precision_on(CUDA0, amp=True)
    assert precision.dtype is torch.float16
    assert precision.scaler.is_enabled()
    autocast = precision.autocast()
    assert isinstance(autocast, torch.autocast)
    assert (autocast.device, autocast.fast_dtype) == ("cuda", torch.float16)


@pytest.mark.parametrize("device", [CUDA0, torch.device("cpu")])
def test_without_amp_there_is_no_autocast_and_no_scaler(
    gpus: FakeCuda, device: torch.device
) -> None:
    precision = precision_on(device, amp=False)
    assert not isinstance(precision.autocast(), torch.autocast)
    assert not precision.scaler.is_enabled()


def test_amp_asked_on_the_cpu_trains_in_float32_without_cuda_warnings() -> None:
    precision = precision_on(torch.device("cpu"), amp=True)
    assert not isinstance(precision.autocast(), torch.autocast)
    assert not precision.scaler.is_enabled()


def test_a_scaled_fp16_step_updates_the_weights_as_a_plain_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scaler's own arithmetic (scale the loss, unscale the gradients, step) runs on CPU
    tensors; a power-of-two scale makes it exact."""
    FakeCuda(count=1, native_bf16=False).install(monkeypatch.setattr)
    precision = precision_on(CUDA0, amp=True)
    torch.manual_seed(0)
    scaled, plain = torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)
    plain.load_state_dict(scaled.state_dict())
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    opt_scaled = torch.optim.SGD(scaled.parameters(), lr=0.1)
    opt_plain = torch.optim.SGD(plain.parameters(), lr=0.1)
    precision.step(torch.nn.functional.mse_loss(scaled(x), y), opt_scaled)
    opt_plain.zero_grad()
    torch.nn.functional.mse_loss(plain(x), y).backward()
    opt_plain.step()
    assert precision.scaler.get_scale() == 2.0**16  # the loss was scaled
    for a, b in zip(scaled.parameters(), plain.parameters(), strict=True):
        assert torch.equal(a, b)


# --- worker.py against a real server ------------------------------------------------------


def test_a_gpu_worker_trains_on_its_device_with_amp(
    sqlite_server: RunningServer, client: TuningClient, gpus: FakeCuda, one_thread: None
) -> None:
    client.create_study("gpu", {**SPACE, "max_trials": 2})
    summary = run_worker(settings(sqlite_server, "gpu", "gpu_probe", device="cuda:1", amp=True))
    assert summary.exit_code == 0, summary.message
    assert summary.device == "cuda:1" and ":cuda1:" in summary.worker_id
    assert gpus.set_devices == [CUDA1]
    trials = client.list_trials("gpu", measurements=False)
    assert [t.state for t in trials] == ["completed", "completed"]
    for t in trials:
        assert t.final_metrics is not None
        assert t.final_metrics["device_index"] == t.final_metrics["current_device"] == 1
        assert t.final_metrics["use_amp"] == 1


def test_amp_on_a_cpu_worker_warns_and_trains_in_float32(
    sqlite_server: RunningServer,
    client: TuningClient,
    caplog: pytest.LogCaptureFixture,
    one_thread: None,
) -> None:
    client.create_study("cpu-amp", {**SPACE, "max_trials": 1})
    with caplog.at_level(logging.WARNING, logger="tunewire.trainer"):
        summary = run_worker(
            settings(sqlite_server, "cpu-amp", "gpu_probe", device="cpu", amp=True)
        )
    assert summary.exit_code == 0, summary.message
    assert "--amp only applies on CUDA; training in float32 on cpu" in caplog.text
    (trial,) = client.list_trials("cpu-amp", measurements=False)
    assert trial.final_metrics is not None and trial.final_metrics["use_amp"] == 0


def test_out_of_memory_mid_epoch_is_infeasible_and_the_cache_is_emptied_after_the_trial(
    sqlite_server: RunningServer, client: TuningClient, gpus: FakeCuda, one_thread: None
) -> None:
    user_tasks.OOM_BATCHES.clear()
    # What empty_cache could not free: batches the failed trial still held at that moment.
    gpus.on_empty_cache = lambda: sum(ref() is not None for ref in user_tasks.OOM_BATCHES)
    client.create_study("oom", {**SPACE, "max_trials": 6})
    summary = run_worker(settings(sqlite_server, "oom", "out_of_memory_mid_epoch", device="cuda"))
    assert summary.exit_code == 0, summary.message
    trials = client.list_trials("oom")
    oom = [t for t in trials if t.params["x"] > 0]
    ok = [t for t in trials if t.params["x"] <= 0]
    assert len(trials) == 6 and oom and ok, "the seed should give both signs of x"
    for t in oom:
        assert t.state == "infeasible"
        assert t.reason == (
            "CUDA out of memory: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
            "total capacity of 15.77 GiB of which 1.02 GiB is free."
        )
        assert [step for step, _ in t.measurements] == [1], "the first epoch's report is kept"
    assert all(t.state == "completed" for t in ok), "the worker goes on after an OOM"
    assert gpus.empty_cache_calls == [0] * len(oom), "emptied once per OOM, batches freed"
    assert summary.counts() == {"infeasible": len(oom), "completed": len(ok)}


# --- cli.py: one worker process per GPU ---------------------------------------------------


def train_on_two_gpus(server: RunningServer, study: str) -> int:
    """`tunewire train --devices cuda:0,cuda:1`, each worker stopping after 3 trials."""
    return cli.main(
        [
            "--server",
            server.target,
            "--study",
            study,
            "--task",
            f"{TASKS}:gpu_probe",
            "--devices",
            "cuda:0,cuda:1",
            "--max-trials",
            "3",
            "--no-create-study",
            "--progress",
            "off",
            "--server-wait",
            "10",
        ]
    )


@pytest.fixture
def cli_logging() -> Iterator[None]:
    """cli.main configures logging for a whole process; give the session's back after."""
    root, trainer_log = logging.getLogger(), logging.getLogger("tunewire.trainer")
    handlers, level, trainer_level = root.handlers[:], root.level, trainer_log.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    trainer_log.setLevel(trainer_level)


def test_devices_list_of_gpus_starts_one_pinned_worker_process_each(
    sqlite_server: RunningServer,
    client: TuningClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    gpus: FakeCuda,
    cli_logging: None,
) -> None:
    # The CLI checks the list here (fake CUDA in this process); each spawned worker process
    # installs its own fake CUDA and then runs the CLI's real worker entry.
    monkeypatch.setattr(cli, "_child", worker_process_on_fake_gpus)
    client.create_study("gpus", {**SPACE, "max_trials": 6})
    code = train_on_two_gpus(sqlite_server, "gpus")
    out = capsys.readouterr().out
    assert code == 0, out
    assert gpus.set_devices == [], "the CLI process itself selects no GPU"
    trials = client.list_trials("gpus", measurements=False)
    assert len(trials) == 6 and all(t.state == "completed" for t in trials)
    by_device: dict[int, set[float]] = {0: set(), 1: set()}
    for t in trials:
        metrics = t.final_metrics
        assert metrics is not None
        index = int(metrics["device_index"])
        assert metrics["current_device"] == index, "each process works on its own GPU"
        assert re.search(rf":cuda{index}:{int(metrics['pid'])}$", t.worker_id), t.worker_id
        by_device[index].add(metrics["pid"])
    assert all(len(pids) == 1 for pids in by_device.values()), by_device
    assert by_device[0] != by_device[1], "one process per device"
    for device in ("cuda:0", "cuda:1"):
        assert re.search(rf"worker \S+:cuda{device[-1]}:\d+ \({device}\): 3 completed", out), out


def test_a_gpu_worker_process_that_dies_is_reported_with_its_own_device(
    sqlite_server: RunningServer,
    client: TuningClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    gpus: FakeCuda,
    cli_logging: None,
) -> None:
    monkeypatch.setattr(cli, "_child", worker_process_dying_on_gpu_1)
    client.create_study("crash", {**SPACE, "max_trials": 3})
    code = train_on_two_gpus(sqlite_server, "crash")
    captured = capsys.readouterr()
    assert code == 1, captured.out
    assert re.search(r"worker \S+:cuda0:\d+ \(cuda:0\): 3 completed", captured.out)
    assert re.search(
        r"worker tunewire-worker-1 \(cuda:1\): no trials .*died with exit code 7", captured.out
    ), captured.out
