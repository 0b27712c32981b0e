"""The API contract: generated code matches the protos; buf lint is clean."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_matches_protos() -> None:
    result = subprocess.run(
        ["bash", "protos/generate.sh", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("buf") is None, reason="buf (PyPI buf-bin) not installed")
def test_buf_lint() -> None:
    result = subprocess.run(["buf", "lint"], cwd=ROOT / "protos", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
