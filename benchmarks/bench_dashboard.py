"""Is the dashboard fast enough on a large study, and what does an open one cost the server?

    python -m benchmarks.bench_dashboard            # 10,000 trials x 50 epochs (a few minutes)
    python -m benchmarks.bench_dashboard --quick    # 1,000 trials x 20 epochs, short load

A study of n trials x 50 reports (written straight into the server's SQLite file, as
bench_large_study does, next_trial_id kept consistent; 10% stopped early, a few failed,
infeasible, lost) behind `tunewire serve`; `tunewire dashboard` in its own process;
headless Chromium (Playwright). Measured: page load (navigation until every plot of the
tab is drawn: first open, which reads the whole study, then fresh tabs), target 1.5 s; a
report's time to the open trial table, target 2 s; the dashboard's peak RSS, target 300
MB; report throughput of 64 simulated workers (bench_service's Go load generator),
alternately with and without a dashboard following their study as an open page does,
and the server's CPU seconds per 1,000 reports; target: within 5%.

Appends the table to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.bench_service import REPORTS_PER_TRIAL, SPEC, build_go_loader
from benchmarks.common import (
    append_results,
    cpu_seconds,
    free_port,
    peak_rss_mb,
    tree_cpu_seconds,
)
from benchmarks.common import start_server_process as start_server
from tunewire.dashboard.app import plotly_js

EPOCHS = 50
LARGE_SPEC: dict[str, Any] = {
    "parameters": [
        {"name": "lr", "type": "float", "min": 1e-5, "max": 0.1, "scale": "log"},
        {"name": "layers", "type": "int", "min": 1, "max": 6},
        {"name": "optimizer", "type": "categorical", "values": ["sgd", "adam", "rmsprop"]},
        {"name": "batch", "type": "discrete", "values": [32, 64, 128, 256]},
        {"name": "dropout", "type": "float", "min": 0.0, "max": 0.5},
    ],
    "metrics": [{"name": "val_loss", "goal": "minimize"}],
    "algorithm": "random",
    "lease_timeout_seconds": 600,
}


def fill(db: Path, n: int, epochs: int) -> None:
    """n finished trials of study 1 with `epochs` reports each, as the service writes them."""
    now = time.time() - 3600
    optimizers = ["sgd", "adam", "rmsprop"]
    trials, reports = [], []
    for i in range(1, n + 1):
        lr = 10 ** (-5 + 4 * ((i * 7919) % n) / n)
        params: dict[str, Any] = {
            "lr": lr,
            "layers": 1 + i % 6,
            "optimizer": optimizers[i % 3],
            "batch": [32, 64, 128, 256][i % 4],
            "dropout": (i * 31 % 100) / 200,
        }
        start = now + i * 0.3
        plateau = 0.2 + 10 * abs(lr - 1e-3) + 0.02 * (1 + i % 6)
        curve = [plateau + 1.5 * 0.9**s for s in range(epochs)]
        stop: tuple[int | None, str, str] = (None, "", "")
        state, reason = "completed", ""
        if i % 10 == 3:
            state, stop = "stopped_early", (epochs - 1, "median", "worse than the median")
        elif i % 50 == 0:
            state, reason = "failed", "RuntimeError: loss is NaN"
        elif i % 97 == 0:
            state, reason = "infeasible", "out of memory"
        elif i % 211 == 0:
            state, reason = "lost", "its lease expired with no report or heartbeat"
        final = (
            json.dumps({"val_loss": curve[-1]}) if state in ("completed", "stopped_early") else None
        )
        trials.append(
            (
                i,
                json.dumps(params, sort_keys=True),
                state,
                f"bench-w{i % 64}",
                start,
                start,
                start + 20,
                final,
                reason,
                stop[0],
                stop[1],
                stop[2],
            )
        )
        reports += [
            (i, s, json.dumps({"val_loss": v}), start + s * 0.4, v) for s, v in enumerate(curve)
        ]
    con = sqlite3.connect(db, timeout=60)
    with con:
        con.executemany(
            "INSERT INTO trials (study_id, trial_id, params_json, state, source, worker_id,"
            " created_at, started_at, ended_at, final_metrics_json, reason, stop_step,"
            " stop_rule, stop_reason) VALUES (1, ?, ?, ?, 'algorithm', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            trials,
        )
        con.executemany(
            "INSERT INTO measurements (study_id, trial_id, step, metrics_json, created_at, value)"
            " VALUES (1, ?, ?, ?, ?, ?)",
            reports,
        )
        con.execute("UPDATE studies SET next_trial_id = ? WHERE id = 1", (n + 1,))
    con.close()


def start_dashboard(target: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunewire.dashboard.cli", "--server", target, "--port", str(port)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "healthz", timeout=2).close()
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start; see {log}") from None
            time.sleep(0.1)


def page_load(browser: Any, url: str) -> dict[str, float]:
    """Seconds from navigation to the page's marks, in a fresh tab: "ready" (every plot of
    the page drawn), "data" (the study read) and "plotly" (plotly.js loaded and run)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=120_000)
        marks = page.evaluate(
            "Object.fromEntries(performance.getEntriesByType('mark')"
            ".map((m) => [m.name, m.startTime]))"
        )
        return {k.removeprefix("tw-"): v / 1000 for k, v in marks.items()}
    finally:
        context.close()


def _loads(loads: list[dict[str, float]]) -> str:
    ready = [x["ready"] for x in loads]
    parts = [f"{statistics.median(ready):.2f} s (max {max(ready):.2f})"]
    for mark, what in (("data", "data"), ("plotly", "plotly.js")):
        if all(mark in x for x in loads):
            parts.append(f"{what} {statistics.median(x[mark] for x in loads):.2f}")
    return parts[0] + ("; " + ", ".join(parts[1:]) if len(parts) > 1 else "")


def live_updates(browser: Any, url: str, target: str, times: int) -> list[float]:
    """Seconds from a report to its value in the open trial table, `times` times."""
    from tunewire.client import TuningClient

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    out = []
    with TuningClient(target) as client:
        (trial,) = client.suggest("large", "bench-live")
        page = context.new_page()
        page.goto(url + "#/study/large/trials")
        page.wait_for_selector("body[data-ready='1']", timeout=120_000)
        page.click("th[data-key='id']")  # newest first: the held trial is on the first page
        row = f"#trial-table tr[data-trial='{trial.id}']"
        page.wait_for_selector(row, timeout=30_000)
        for step in range(times):
            value = 0.5 + step / 1000
            t0 = time.monotonic()
            trial.report(step, {"val_loss": value})
            page.wait_for_function(
                "([s, t]) => (document.querySelector(s) || {innerText: ''}).innerText.includes(t)",
                arg=[row, f"{value:g} @ {step}"],
                timeout=30_000,
            )
            out.append(time.monotonic() - t0)
            time.sleep(0.3)
        trial.complete()
    context.close()
    return out


def follow_like_a_page(url: str, study: str, stop: threading.Event) -> int:
    """What one open study page asks the dashboard: the study, then changes every second."""
    base = url + "api/studies/" + study
    with urllib.request.urlopen(base, timeout=120) as r:
        version = json.load(r)["version"]
    polls = 0
    while not stop.wait(1.0):
        with urllib.request.urlopen(f"{base}/changes?since={version}", timeout=120) as r:
            version = json.load(r)["version"]
        polls += 1
    return polls


def server_load(
    target: str,
    server_pid: int,
    dash_pid: int,
    dash_url: str,
    loader: Path,
    seconds: float,
    rounds: int,
) -> dict[str, list[float]]:
    """Report throughput, server CPU per 1,000 reports and the dashboard's CPU seconds (its
    importance child included), alternating without and with a dashboard following the
    loaded study."""
    from tunewire.client import TuningClient

    out: dict[str, list[float]] = {
        f"{mode} {what}": [] for mode in ("off", "on") for what in ("rps", "cpu", "dash")
    }
    for k in range(rounds):
        for mode in ("off", "on") if k % 2 == 0 else ("on", "off"):
            study = f"load-{k}-{mode}"
            with TuningClient(target) as admin:
                admin.create_study(study, SPEC)
            stop = threading.Event()
            poller = threading.Thread(target=follow_like_a_page, args=(dash_url, study, stop))
            if mode == "on":
                poller.start()
                time.sleep(1.0)
            cpu0, dash0 = cpu_seconds(server_pid), tree_cpu_seconds(dash_pid)
            done = subprocess.run(
                [
                    str(loader),
                    "-target",
                    target,
                    "-study",
                    study,
                    "-workers",
                    "64",
                    "-seconds",
                    str(seconds),
                    "-reports",
                    str(REPORTS_PER_TRIAL),
                ],
                capture_output=True,
                text=True,
                timeout=seconds + 120,
                check=True,
            )
            cpu = cpu_seconds(server_pid) - cpu0
            out[f"{mode} dash"].append(tree_cpu_seconds(dash_pid) - dash0)
            stop.set()
            if mode == "on":
                poller.join(30)
            reports = len(json.loads(done.stdout)["report_ms"])
            out[f"{mode} rps"].append(reports / seconds)
            out[f"{mode} cpu"].append(1000 * cpu / max(reports, 1))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    n = 1000 if args.quick else 10_000
    epochs = 20 if args.quick else EPOCHS
    seconds, rounds = (3.0, 2) if args.quick else (8.0, 4)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        db = tmp / "dashboard.db"
        port = free_port()
        server = start_server(f"sqlite:///{db}", port, tmp / "server.log", threads=32)
        target = f"127.0.0.1:{port}"
        dashboard = None
        try:
            from tunewire.client import TuningClient

            with TuningClient(target) as client:
                client.create_study("large", LARGE_SPEC)
            fill(db, n, epochs)
            dashboard, url = start_dashboard(target, tmp / "dashboard.log")
            rows += measure_pages(url, target)
            rss = peak_rss_mb(dashboard.pid)
            rows.append(("dashboard peak RSS", f"{rss:.0f} MB", "≤ 300 MB"))
            loader = build_go_loader(tmp)
            if loader is None:
                rows.append(("server load at 64 workers", "not measured: no Go toolchain", "< 5%"))
            else:
                load = server_load(target, server.pid, dashboard.pid, url, loader, seconds, rounds)
                off, on = statistics.median(load["off rps"]), statistics.median(load["on rps"])
                rows.append(
                    (
                        "reports/s at 64 workers, without / with a dashboard",
                        f"{off:,.0f} / {on:,.0f} ({100 * (on - off) / off:+.1f}%)",
                        "within 5%",
                    )
                )
                rows.append(
                    (
                        "server CPU s per 1,000 reports, without / with",
                        f"{statistics.median(load['off cpu']):.3f} / "
                        f"{statistics.median(load['on cpu']):.3f}",
                        "",
                    )
                )
                rows.append(
                    (
                        "dashboard CPU s per round (its importance child included), without / with",
                        f"{statistics.median(load['off dash']):.2f} / "
                        f"{statistics.median(load['on dash']):.2f}",
                        "",
                    )
                )
        finally:
            if dashboard is not None:
                dashboard.terminate()
                dashboard.wait(10)
            server.terminate()
            server.wait(10)
    table = "\n".join(
        [
            "| measure | result (page loads: every plot drawn; marks in s) | target |",
            "|---|---|---|",
        ]
        + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    )
    print(table)
    if not args.no_record:
        notes = (
            f"A study of {n:,} trials x {epochs} reports on SQLite; dashboard in its own process; "
            "Debian's Chromium headless (software WebGL) on the same machine; "
            f"{plotly_banner()}; page loads are "
            "navigation to every plot drawn; warm = median of 3 fresh tabs. Server load: "
            f"{rounds} alternating rounds of {seconds:.0f} s with bench_service's Go load "
            "generator (64 workers), the dashboard following the loaded study as an open page "
            f"does. Python {platform.python_version()}, {os.cpu_count()} cores, shared."
        )
        command = "python -m benchmarks.bench_dashboard" + (" --quick" if args.quick else "")
        append_results(
            "bench_dashboard",
            command,
            table,
            notes,
            ("grpcio", "starlette", "uvicorn", "playwright"),
        )
    return 0


def plotly_banner() -> str:
    """The shipped plotly.js's version line (its build's traces)."""
    with plotly_js().open(encoding="utf-8") as f:
        for line in f:
            if "plotly.js v" in line:
                return line.strip("* \n")
    return "plotly.js"


def measure_pages(url: str, target: str) -> list[tuple[str, str, str]]:
    """Page loads per tab (cold, then warm) and live updates, in headless Chromium."""
    try:
        from playwright.sync_api import sync_playwright

        from tests.dashboard.conftest import CHROMIUM_ARGS  # the tests' flags
    except ImportError:
        return [("page loads", "not measured: pip install playwright", "≤ 1.5 s")]
    chromium = os.environ.get("TUNEWIRE_CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        return [("page loads", f"not measured: no Chromium at {chromium}", "≤ 1.5 s")]
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            t0 = time.monotonic()
            cold = page_load(browser, url + "#/study/large")
            rows.append(
                (
                    "study overview, first open (cold: reads the whole study)",
                    _loads([cold]),
                    "≤ 1.5 s",
                )
            )
            time.sleep(max(0.0, 6 - (time.monotonic() - t0)))  # importance computed meanwhile
            for tab, path in (
                ("studies list", ""),
                ("study overview (best so far, learning curves)", "#/study/large"),
                ("parameters (importance, slice)", "#/study/large/parameters"),
                ("parallel coordinates (2,000 lines)", "#/study/large/parallel"),
                ("trial table", "#/study/large/trials"),
                ("workers", "#/study/large/workers"),
            ):
                loads = [page_load(browser, url + path) for _ in range(3)]
                rows.append(
                    (
                        f"{tab}, warm",
                        _loads(loads),
                        "≤ 1.5 s",
                    )
                )
            live = live_updates(browser, url, target, 5)
            rows.append(
                (
                    "live update after a report",
                    f"median {statistics.median(live):.2f} s, max {max(live):.2f} s",
                    "≤ 2 s",
                )
            )
        finally:
            browser.close()
    return rows


if __name__ == "__main__":
    sys.exit(main())
