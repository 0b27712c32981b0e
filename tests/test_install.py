"""scripts/install.sh says what it does before each step (pip itself runs quietly), run in
a copy of the repository whose .venv holds stand-ins for python and pip."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_install_announces_every_step_before_it_runs(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "install.sh", tmp_path / "scripts" / "install.sh")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    log = tmp_path / "steps.log"
    # Every step goes to one log: the script's messages (stderr) and each stand-in's call.
    stand_ins = {
        "python": 'echo "python $*" >> "$LOG"; case "$*" in *"import torch"*) exit 1;; esac',
        "pip": 'echo "pip $*" >> "$LOG"',
    }
    for name, body in stand_ins.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (bin_dir / "activate").write_text(f'PATH="{bin_dir}:$PATH"\n')
    with log.open("a") as messages:
        result = subprocess.run(
            ["bash", "scripts/install.sh", "dev"],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "LOG": str(log)},
            stderr=messages,
            timeout=60,
        )
    assert result.returncode == 0
    lines = log.read_text().splitlines()
    calls = [i for i, line in enumerate(lines) if line.startswith("pip install")]
    assert len(calls) == 3  # pip itself, torch, tunewire
    for i in calls:
        assert lines[i - 1].startswith("install: "), lines
    assert "torch==2.13.0" in lines[calls[1]] and "PyTorch" in lines[calls[1] - 1]
    assert "-e .[dev]" in lines[calls[2]] and "extras dev" in lines[calls[2] - 1]
    assert lines[-1].startswith("install: done: .venv/bin/tunewire")
