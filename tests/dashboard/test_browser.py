"""The dashboard in a real browser (headless Chromium through Playwright) against a real
server whose studies simulated trainers filled: every page draws its plots from the
study's data, a new report shows without reloading, markup in user strings stays text, a
server that goes down gives a banner that clears when it is back, and the report file
works with the network cut off. Screenshots of each page go to the test's folder, or to
TUNEWIRE_DASHBOARD_SCREENSHOTS (e.g. docs) when set."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import screenshot_folder
from tests.dashboard.seeding import PROBE
from tunewire.client import TuningClient
from tunewire.client.cli import main as cli_main
from tunewire.dashboard.cli import RunningDashboard, run_in_background
from tunewire.dashboard.settings import DashboardSettings
from tunewire.server.app import RunningServer
from tunewire.server.app import run_in_background as run_server

pytestmark = pytest.mark.slow
PLOTS_JS = (Path(__file__).parents[2] / "dashboard" / "static" / "plots.js").read_text()
READY = "body[data-ready='1']"


def open_page(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(READY, timeout=30_000)


def plot(page: Any, plot_id: str) -> dict[str, Any]:
    """What a plotly plot holds: its traces' types and point counts."""
    return page.evaluate(
        """(id) => { const gd = document.getElementById(id);
        const first = gd.data[0] || {};
        return { traces: gd.data.length, types: gd.data.map((t) => t.type),
                 points: gd.data.map((t) => (t.x || (t.dimensions || [{}])[0].values || []).length),
                 dims: first.dimensions ? first.dimensions.length : 0 }; }""",
        plot_id,
    )


def no_injected_markup(page: Any) -> None:
    assert page.dialogs == [], page.dialogs
    assert page.errors == [], page.errors
    assert page.evaluate("document.querySelectorAll('main img, main script').length") == 0


def test_every_page_draws_its_plots_from_the_study(
    dashboard: RunningDashboard, seeded: RunningServer, page: Any, tmp_path: Path
) -> None:
    shots = screenshot_folder(tmp_path)
    with TuningClient(seeded.target) as client:
        trials = client.list_trials("mlp", measurements=False)
        front = client.best_trials("pareto")
    results = [t for t in trials if t.state in ("completed", "stopped_early")]

    open_page(page, dashboard.url)
    assert page.locator("#studies-table tbody tr").count() == 2
    assert page.locator("tr[data-study='mlp'] td").nth(2).inner_text() == str(len(trials))
    page.screenshot(path=str(shots / "dashboard-studies.png"), full_page=True)

    open_page(page, dashboard.url + "#/study/mlp")
    history = plot(page, "history")
    assert history["traces"] >= 2 and sum(history["points"][:-1]) == len(results)
    curves = plot(page, "curves")
    assert "scattergl" in curves["types"] and sum(curves["points"]) > len(trials) * 2
    assert int(page.get_attribute("#curves", "data-rungs")) >= 2  # ASHA rungs at 2, 4, 8
    stopped = [t for t in trials if t.stopped_at_step is not None]
    assert int(page.get_attribute("#curves", "data-stops")) == len(stopped) > 0
    page.screenshot(path=str(shots / "dashboard-overview.png"), full_page=True)

    open_page(page, dashboard.url + "#/study/mlp/parameters")
    # Importance is computed in the background: the page draws it when it comes.
    page.wait_for_function(
        "document.getElementById('importance').data.length === 1", timeout=30_000
    )
    assert int(page.get_attribute("#slice", "data-points")) == len(results)
    page.screenshot(path=str(shots / "dashboard-parameters.png"), full_page=True)

    open_page(page, dashboard.url + "#/study/mlp/parallel")
    assert plot(page, "parallel")["dims"] == 5 + 1
    assert int(page.get_attribute("#parallel", "data-lines")) == len(results)
    page.screenshot(path=str(shots / "dashboard-parallel.png"), full_page=True)

    open_page(page, dashboard.url + "#/study/mlp/trials")
    assert page.locator("#trial-table tbody tr").count() == len(trials)
    assert page.get_by_text(PROBE, exact=True).count() >= 1  # a categorical value, a worker
    page.click("th[data-key='m:val_loss']")
    best = min(t.final_metrics["val_loss"] for t in results if t.final_metrics)
    first = page.locator("#trial-table tbody tr").first.get_attribute("data-trial")
    assert [t for t in results if t.id == int(first)][0].final_metrics["val_loss"] == best
    page.select_option("#state-filter", "lost")
    assert page.locator("#trial-table tbody tr").count() == 1
    page.select_option("#state-filter", "")
    page.fill("input[data-key='p:optimizer']", "=" + PROBE)
    page.press("input[data-key='p:optimizer']", "Enter")
    probe_rows = [t for t in trials if t.params.get("optimizer") == PROBE]
    assert page.locator("#trial-table tbody tr").count() == len(probe_rows)
    page.fill("input[data-key='p:optimizer']", "")
    page.press("input[data-key='p:optimizer']", "Enter")
    page.screenshot(path=str(shots / "dashboard-trials.png"))

    open_page(page, dashboard.url + "#/study/mlp/workers")
    workers = page.locator("#workers-table tbody tr")
    assert workers.count() == len({t.worker_id for t in trials if t.worker_id})
    assert page.locator(f"#workers-table tr[data-worker='{PROBE}']").count() == 1
    lost = page.locator("#lost-table tbody tr")
    assert lost.count() == 1 and "#" in lost.first.inner_text()
    assert int(page.get_attribute("#timeline", "data-bars")) > 0
    page.screenshot(path=str(shots / "dashboard-workers.png"), full_page=True)

    open_page(page, dashboard.url + "#/study/pareto/pareto")
    assert int(page.get_attribute("#pareto", "data-front")) == len(front)
    page.screenshot(path=str(shots / "dashboard-pareto.png"), full_page=True)

    # Every plot has the mode bar's PNG download, and it draws a PNG in the browser.
    assert page.locator("#pareto .modebar-btn[data-title='Download plot as a PNG']").count() == 1
    png = page.evaluate("Plotly.toImage(document.getElementById('pareto'), {format: 'png'})")
    assert png.startswith("data:image/png;base64,")
    no_injected_markup(page)

    # The shipped partial bundle of plotly.js has every trace type the pages ask for.
    named = re.findall(r'type: (?:[^"?]*\? )?"(\w+)"(?: : "(\w+)")?', PLOTS_JS)
    drawn = {t for pair in named for t in pair if t} - {"line", "log", "category", "date"}
    assert drawn == {"scatter", "scattergl", "bar", "parcoords", "splom"}
    bundled = set(page.evaluate("Object.keys(Plotly.PlotSchema.get().traces)"))
    assert drawn <= bundled, drawn - bundled


def test_a_new_report_shows_without_reloading(
    dashboard: RunningDashboard, seeded: RunningServer, page: Any
) -> None:
    open_page(page, dashboard.url + "#/study/mlp/trials")
    page.click("th[data-key='id']")  # newest first
    assert page.locator("th[data-key='id']").get_attribute("class") == "sorted-desc"
    with TuningClient(seeded.target) as client:
        (trial,) = client.suggest("mlp", "live-worker")
        row = f"#trial-table tr[data-trial='{trial.id}']"
        page.wait_for_selector(row, timeout=5_000)
        reported = time.monotonic()
        trial.report(0, {"val_loss": 0.4242})
        page.wait_for_function(
            "(s) => (document.querySelector(s) || {innerText: ''}).innerText.includes('0.4242 @')",
            arg=row,
            timeout=2_000,
        )
        shown = time.monotonic() - reported
        trial.complete()
    print(f"a report showed {shown:.2f} s after it was made")
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload
    no_injected_markup(page)


def test_a_server_down_gives_a_banner_that_clears_when_it_is_back(
    page: Any, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'down.db'}"
    server = run_server(db)
    port = server.port
    with TuningClient(server.target) as client:
        from tests.dashboard.seeding import MULTI

        client.create_study("s", MULTI)
    running = run_in_background(DashboardSettings(server=server.target, port=0, poll_seconds=0.5))
    try:
        open_page(page, running.url + "#/study/s")
        banner = page.locator("#banner")
        assert banner.is_hidden()
        server.stop(0)
        banner.wait_for(state="visible", timeout=10_000)
        assert (
            "cannot be reached" in banner.inner_text()
            and f"127.0.0.1:{port}" in banner.inner_text()
        )
        assert "Traceback" not in banner.inner_text()
        assert page.locator("#study-header h1").inner_text().startswith("s")  # still shown
        server = run_server(db, port=port)
        banner.wait_for(state="hidden", timeout=15_000)
    finally:
        running.stop()
        server.stop(0)
    no_injected_markup(page)


def test_markup_in_a_study_address_stays_text(dashboard: RunningDashboard, page: Any) -> None:
    page.goto(dashboard.url + "#/study/" + PROBE)
    banner = page.locator("#banner")
    banner.wait_for(state="visible", timeout=10_000)
    assert PROBE in banner.inner_text()
    assert PROBE in page.locator("#crumbs").inner_text()
    no_injected_markup(page)


def test_the_report_is_one_file_that_opens_offline(
    seeded: RunningServer, page: Any, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    assert cli_main(["study", "report", "mlp", "-o", str(out), "--server", seeded.target]) == 0
    requested: list[str] = []

    def offline(route: Any) -> None:
        requested.append(route.request.url)
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            route.abort()

    page.route("**/*", offline)
    open_page(page, out.as_uri())
    assert requested == [out.as_uri()]  # everything is inside the file
    for plot_id in ("history", "curves", "importance", "slice", "parallel", "timeline"):
        assert plot(page, plot_id)["traces"] >= 1, plot_id
    assert page.locator("#trial-table tbody tr").count() > 0
    assert page.get_by_text(PROBE, exact=True).count() >= 1
    png = page.evaluate("Plotly.toImage(document.getElementById('curves'), {format: 'png'})")
    assert png.startswith("data:image/png;base64,")
    page.screenshot(path=str(screenshot_folder(tmp_path) / "dashboard-report.png"))
    no_injected_markup(page)


def test_markup_in_study_and_parameter_names_stays_text_in_a_report(
    page: Any, tmp_path: Path
) -> None:
    """The API refuses such names; a report built from other data must still be safe."""
    from tests.dashboard.test_report import probe_report

    out = tmp_path / "probe.html"
    out.write_text(probe_report())
    open_page(page, out.as_uri())
    assert page.locator("#study-header h1").inner_text().startswith(PROBE)
    assert page.locator(f"th[data-key='p:{PROBE}']").count() == 1
    assert PROBE in page.title()
    no_injected_markup(page)
