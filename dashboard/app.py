"""The dashboard's web app (Starlette): the page, its static files and plotly.js, and the
JSON it reads. Every answer is computed from the tunewire server through `StudySource`;
blocking work (gRPC calls, encoding large studies) runs in worker threads."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tunewire.dashboard.follow import FollowedStudies, FollowedStudy
from tunewire.dashboard.guard import Guard
from tunewire.dashboard.payloads import changes_payload, study_json
from tunewire.dashboard.records import study_summary
from tunewire.dashboard.settings import DashboardSettings
from tunewire.dashboard.source import CallRefused, ServerUnavailable, StudyMissing, StudySource

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
# Waits before a newly loaded study's importance is computed, so the page draws first.
IMPORTANCE_DELAY_SECONDS = 1.0


def plotly_js() -> Path:
    """plotly.js with the trace types the pages draw, shipped with the dashboard
    (scripts/build_plotly.sh builds it)."""
    return STATIC / "plotly.min.js"


def json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


class Dashboard:
    """The app's state: the source, the followed studies, the best trials shown per study."""

    def __init__(self, settings: DashboardSettings, source: StudySource | None = None) -> None:
        self.settings = settings
        self.source = source or StudySource(settings)
        self.studies = FollowedStudies()
        # Best trial per study, kept while its counts and last change stay the same.
        self._best: dict[str, tuple[Any, dict[str, Any] | None]] = {}

    def studies_payload(self) -> dict[str, Any]:
        out = []
        best: dict[str, tuple[Any, dict[str, Any] | None]] = {}
        for message in self.source.studies():
            summary = study_summary(message)
            key = (tuple(summary["counts"].values()), summary["updated"])
            cached = self._best.get(summary["name"])
            if cached is None or cached[0] != key:
                cached = (key, self._best_of(summary))
            best[summary["name"]] = cached
            out.append({**summary, "best": cached[1]})
        self._best = best
        return {"poll_seconds": self.settings.poll_seconds, "studies": out}

    def _best_of(self, summary: dict[str, Any]) -> dict[str, Any] | None:
        if not summary["metrics"]:
            return None
        best = self.source.best(summary["name"])
        if best is None or not best.HasField("final_measurement"):
            return None
        metric = summary["metrics"][0]["name"]
        value = best.final_measurement.metrics.get(metric)
        return {"trial": best.id, "metric": metric, "value": value}

    def followed(self, name: str) -> FollowedStudy:
        study = self.studies.get(name)
        try:
            study.refresh(self.source)
        except StudyMissing:
            self.studies.forget(name)  # deleted: nothing of it is kept
            raise
        return study


def _error(exc: Exception) -> JSONResponse:
    if isinstance(exc, ServerUnavailable):
        return JSONResponse({"error": str(exc), "kind": "unavailable"}, status_code=503)
    if isinstance(exc, StudyMissing):
        return JSONResponse({"error": str(exc), "kind": "missing"}, status_code=404)
    return JSONResponse({"error": str(exc), "kind": "refused"}, status_code=502)


async def _in_thread(fn: Callable[[], Any]) -> Response:
    """fn's payload (or its JSON bytes), computed and encoded in a worker thread; the
    source's failures as JSON a page can show."""

    def encoded() -> bytes:
        payload = fn()
        return payload if isinstance(payload, bytes) else json_bytes(payload)

    try:
        body = await anyio.to_thread.run_sync(encoded)
    except (ServerUnavailable, StudyMissing, CallRefused) as exc:
        return _error(exc)
    return Response(body, media_type="application/json", headers={"cache-control": "no-store"})


def build_app(settings: DashboardSettings, source: StudySource | None = None) -> Starlette:
    """The ASGI app, behind the `Guard` (read-only, host check, browsers' token)."""
    dashboard = Dashboard(settings, source)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    async def plotly(request: Request) -> Response:
        return FileResponse(plotly_js(), headers={"cache-control": "public, max-age=86400"})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def studies(request: Request) -> Response:
        return await _in_thread(dashboard.studies_payload)

    def _importance(study: FollowedStudy) -> BackgroundTask | None:
        if not study.wants_importance():
            return None

        async def compute() -> None:
            await anyio.sleep(IMPORTANCE_DELAY_SECONDS)
            await anyio.to_thread.run_sync(study.compute_importance)

        return BackgroundTask(compute)

    async def study(request: Request) -> Response:
        name = request.path_params["name"]
        holder: list[FollowedStudy] = []

        def payload() -> bytes:
            followed = dashboard.followed(name)
            holder.append(followed)
            return study_json(followed, {"poll_seconds": settings.poll_seconds})

        response = await _in_thread(payload)
        if holder and response.status_code == 200:
            response.background = _importance(holder[0])
        return response

    async def changes(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            since = int(request.query_params.get("since", "0"))
        except ValueError:
            return JSONResponse({"error": "since must be a whole number"}, status_code=400)
        holder: list[FollowedStudy] = []

        def payload() -> dict[str, Any]:
            followed = dashboard.followed(name)
            holder.append(followed)
            return changes_payload(followed, since)

        response = await _in_thread(payload)
        if holder and response.status_code == 200:
            response.background = _importance(holder[0])
        return response

    routes = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/static/plotly.min.js", plotly),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/api/studies", studies),
        Route("/api/studies/{name}", study),
        Route("/api/studies/{name}/changes", changes),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        dashboard.source.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.dashboard = dashboard
    return app


def guarded(settings: DashboardSettings, source: StudySource | None = None) -> Guard:
    """The app as `tunewire dashboard` serves it."""
    return Guard(
        build_app(settings, source), ui_token=settings.ui_token, loopback_only=settings.loopback
    )
