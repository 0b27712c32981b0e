"""`tunewire study report NAME -o report.html`: one self-contained HTML file with the
dashboard's views of a study (plots, trial table, workers), which opens without a network:
the page's code, plotly.js and the study's data are all inside it."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from tunewire.client import TuningClient
from tunewire.dashboard.app import STATIC, plotly_js
from tunewire.dashboard.follow import FollowedStudy
from tunewire.dashboard.payloads import study_payload
from tunewire.v1 import tuning_service_pb2 as api

SCRIPTS = ("core.js", "plots.js", "tables.js", "app.js")


class ClientChanges:
    """ListStudyChanges through a client, whose errors reach the caller as they are (the
    command line explains them)."""

    def __init__(self, client: TuningClient) -> None:
        self.client = client

    def changes(self, study: str, cursor: str) -> api.ListStudyChangesResponse:
        answer = self.client.call(
            "ListStudyChanges", api.ListStudyChangesRequest(study_name=study, cursor=cursor)
        )
        assert isinstance(answer, api.ListStudyChangesResponse)
        return answer


def script_json(payload: Any) -> str:
    """JSON that cannot end the <script> element holding it, whatever its strings say."""
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def inline_script(code: str) -> str:
    if "</script" in code.lower():
        raise ValueError("a script to inline contains </script")
    return f"<script>{code}</script>"


def render_report(payload: dict[str, Any]) -> str:
    """The page of `index.html` with its stylesheet, plotly.js, its scripts and the study's
    data inside it."""
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    title = f"<title>tunewire report: {html.escape(payload['study']['name'])}</title>"
    page = page.replace("<title>tunewire dashboard</title>", title)
    css = (STATIC / "style.css").read_text(encoding="utf-8")
    page = page.replace('<link rel="stylesheet" href="static/style.css">', f"<style>{css}</style>")
    page = page.replace('<link rel="preload" href="static/plotly.min.js" as="script">\n', "")
    data = f'<script type="application/json" id="tw-report">{script_json(payload)}</script>'
    plotly = inline_script(plotly_js().read_text(encoding="utf-8"))
    marker = (
        "<!-- plotly.js: loaded by TW.plotly() when a page draws a plot (a report has it here) -->"
    )
    page = page.replace(marker, data + "\n" + plotly)
    for name in SCRIPTS:
        code = inline_script((STATIC / name).read_text(encoding="utf-8"))
        page = page.replace(f'<script src="static/{name}"></script>', code)
    if 'src="static/' in page or 'href="static/' in page:
        raise ValueError("index.html links a file the report does not inline")
    return page


def study_report(client: TuningClient, name: str) -> str:
    """The report of study `name` as read from the server now, importance included."""
    study = FollowedStudy(name)
    study.refresh(ClientChanges(client), force=True)
    study.compute_importance()
    return render_report(study_payload(study))


def write_report(client: TuningClient, name: str, path: str | Path) -> Path:
    """Writes the report of study `name` to `path`; returns the path."""
    out = Path(path)
    out.write_text(study_report(client, name), encoding="utf-8")
    return out
