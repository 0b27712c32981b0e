"""Choosing and preparing the device a worker trains on."""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A `--devices` entry names a device this machine does not have."""


def resolve_device(text: str) -> torch.device:
    """``auto`` (or empty) is the first GPU when CUDA is available, else the CPU.

    Raises:
        DeviceError: a malformed name, or a CUDA device that does not exist here.
    """
    text = text.strip().lower()
    if text in ("", "auto"):
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {text!r}: use cpu, cuda or cuda:N ({exc})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {text!r}: CUDA is not available on this machine")
        index = 0 if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return torch.device("cuda", index)
    if device.type != "cpu":
        raise DeviceError(f"device {text!r}: the trainer runs on cpu or cuda:N")
    return device


def parse_devices(text: str) -> list[str]:
    """``cuda:0,cuda:1`` -> one worker per entry; ``cpu*2`` or ``cpu,cpu`` -> two CPU
    workers. Entries are checked with `resolve_device`."""
    entries: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, star, count = part.partition("*")
        if star:
            if not count.isdigit() or int(count) < 1:
                raise DeviceError(f"--devices entry {part!r}: write NAME*COUNT, e.g. cpu*2")
            entries += [name.strip()] * int(count)
        else:
            entries.append(part)
    if not entries:
        raise DeviceError("--devices is empty: give e.g. cpu, cuda:0,cuda:1 or cpu*2")
    for entry in entries:
        resolve_device(entry)
    return entries


def prepare_device(device: torch.device, threads: int | None) -> None:
    """One torch thread per worker unless told otherwise: several workers share the cores,
    and these small networks gain little from intra-op threads."""
    torch.set_num_threads(threads or 1)
    if device.type == "cuda":
        torch.cuda.set_device(device)


def release_cuda_memory() -> None:
    """Returns cached blocks after an out-of-memory error so the next trial starts clean."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
