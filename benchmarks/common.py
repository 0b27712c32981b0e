"""What every benchmark needs: servers in their own processes, peak memory, PostgreSQL
databases of their own, and recording results in benchmarks/RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
import uuid
from importlib import metadata
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server_process(
    storage: str,
    port: int,
    log: Path,
    threads: int = 32,
    torch_threads: int = 0,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`tunewire serve` in its own process; returns once it answers health checks.

    `threads` are RPC threads; `torch_threads` the server's torch threads (0 = the
    server's default), e.g. 1 when it shares the cores with trainers.
    """
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tunewire.client.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage",
            storage,
            "--threads",
            str(threads),
            "--torch-threads",
            str(torch_threads),
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                return proc
            except grpc.RpcError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start; see {log}") from None
                time.sleep(0.1)
    finally:
        channel.close()


def remove_sqlite_file(path: Path) -> None:
    """Deletes a SQLite database and its WAL and shared-memory files, where they exist."""
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process so far (Linux /proc)."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (state first, then the parent's id);
    FileNotFoundError once the process is gone."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree_cpu_seconds(pid: int) -> float:
    """`cpu_seconds` of a live process and of its live descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    for folder in Path("/proc").glob("[0-9]*"):
        try:
            parents[int(folder.name)] = int(stat_fields(int(folder.name))[1])
        except OSError:  # ended meanwhile
            continue
    tree, total = [pid], 0.0
    while tree:
        current = tree.pop()
        try:
            total += cpu_seconds(current)
        except OSError:
            continue
        tree += [child for child, parent in parents.items() if parent == current]
    return total


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a live process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def create_pg_database(admin_url: str) -> str | None:
    """A fresh database for one benchmark run, or None when PostgreSQL is unreachable."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    name = f"tw_bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        print(f"PostgreSQL unreachable, skipping it: {exc}", file=sys.stderr)
        return None
    finally:
        engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(admin_url: str, url: str) -> None:
    from sqlalchemy import create_engine, text

    name = url.rsplit("/", 1)[1]
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    engine.dispose()


def versions(*packages: str) -> str:
    out = []
    for p in ("tunewire", *packages):
        try:
            out.append(f"{p} {metadata.version(p)}")
        except metadata.PackageNotFoundError:
            out.append(f"{p} not installed")
    return ", ".join(out)


def append_results(
    section: str,
    command: str,
    table: str,
    notes: str = "",
    packages: tuple[str, ...] = ("grpcio", "sqlalchemy"),
) -> None:
    """Appends one run to RESULTS.md under `## section`, with command, versions and date."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = (
        f"\n### {section} — {stamp}\n\n"
        f"Command: `{command}`  \nVersions: {versions(*packages)}  \n"
        + (f"Notes: {notes}\n" if notes else "")
        + f"\n{table}\n"
    )
    text = (
        RESULTS.read_text()
        if RESULTS.exists()
        else "# Benchmark results\n\nNewest runs last in each section.\n"
    )
    header = f"\n## {section}\n"
    if header not in text:
        text += header
    # Insert at the end of the section (before the next "## " heading).
    start = text.index(header) + len(header)
    nxt = text.find("\n## ", start)
    text = text[:nxt] + block + text[nxt:] if nxt != -1 else text + block
    RESULTS.write_text(text)
