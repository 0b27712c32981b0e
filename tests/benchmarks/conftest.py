"""A tiny learning-curve table recorded once per test run with the real recorder (digits-mlp,
2 configurations, 2 seeds, 2 epochs), shared by the recorder's and the replay's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from benchmarks.curves import CurveTable, curve_file
from benchmarks.record_curves import record

TINY_TASK = "digits-mlp"
TINY_CONFIGS, TINY_SEEDS, TINY_EPOCHS = 2, 2, 2


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """The recorder trains with one torch thread, as its worker processes do; the test
    process gets its own setting back afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_curves_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("curves")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        record(
            [TINY_TASK],
            {TINY_TASK: TINY_CONFIGS},
            out=out,
            seeds=TINY_SEEDS,
            max_epochs=TINY_EPOCHS,
            threads=None,
            command="pytest tiny table",
            log=lambda line: None,
        )
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture
def tiny_table(tiny_curves_dir: Path) -> CurveTable:
    return CurveTable.load(curve_file(TINY_TASK, tiny_curves_dir))
