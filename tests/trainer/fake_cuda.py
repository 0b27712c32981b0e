"""A stand-in for the CUDA runtime on machines without a GPU: only the calls whose answers
steer the trainer's decisions (is there CUDA, how many devices, bf16, set_device,
empty_cache), each recorded so that a test can assert what the trainer did.

Tensors never reach a GPU: tests that need a "copy to CUDA" patch `Tensor.pin_memory` /
`Tensor.to` themselves, at the smallest seam.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from tunewire.trainer.cli import _child as worker_process_entry
from tunewire.trainer.worker import WorkerSettings

SetAttr = Callable[[Any, str, Any], None]


@dataclass
class FakeCuda:
    """`count` GPUs; `native_bf16` False is an older GPU (V100, T4) that only emulates
    bfloat16, for which `is_bf16_supported()` still says True unless asked about emulation.

    Attributes:
        set_devices: every `torch.cuda.set_device` call, in order.
        empty_cache_calls: one entry per `torch.cuda.empty_cache` call: what `on_empty_cache`
            returned at that moment (None when no hook is set).
    """

    count: int = 2
    native_bf16: bool = True
    current: int = 0
    set_devices: list[torch.device] = field(default_factory=list)
    empty_cache_calls: list[object] = field(default_factory=list)
    on_empty_cache: Callable[[], object] | None = None

    def install(self, set_attr: SetAttr = setattr) -> FakeCuda:
        """Replaces the torch.cuda functions; pass `monkeypatch.setattr` in a test so they
        are restored afterwards (a worker process started for a test installs for good)."""
        set_attr(torch.cuda, "is_available", lambda: True)
        set_attr(torch.cuda, "device_count", lambda: self.count)
        set_attr(torch.cuda, "current_device", lambda: self.current)
        set_attr(torch.cuda, "set_device", self.set_device)
        set_attr(torch.cuda, "is_bf16_supported", self.is_bf16_supported)
        set_attr(torch.cuda, "empty_cache", self.empty_cache)
        return self

    def set_device(self, device: torch.device | str | int) -> None:
        device = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
        if device.type != "cuda" or device.index is None or device.index >= self.count:
            raise RuntimeError(f"set_device({device}): invalid device ordinal")
        self.set_devices.append(device)
        self.current = device.index

    def is_bf16_supported(self, including_emulation: bool = True) -> bool:
        return self.native_bf16 or including_emulation

    def empty_cache(self) -> None:
        self.empty_cache_calls.append(self.on_empty_cache() if self.on_empty_cache else None)


def worker_process_on_fake_gpus(
    settings: WorkerSettings, index: int, verbose: bool, queue: mp.Queue
) -> None:
    """The entry of a `--devices` worker process, in a process whose CUDA is this fake:
    the CLI starts it in place of its own entry (spawned, so the parent's patches are gone)."""
    FakeCuda().install()
    worker_process_entry(settings, index, verbose, queue)


def worker_process_dying_on_gpu_1(
    settings: WorkerSettings, index: int, verbose: bool, queue: mp.Queue
) -> None:
    """As `worker_process_on_fake_gpus`, but the process for the second device dies at once
    without a summary, as one killed by the driver or crashing in C code would."""
    if index == 1:
        os._exit(7)
    worker_process_on_fake_gpus(settings, index, verbose, queue)
