"""The dashboard's side of the gRPC API: the calls it makes, through the Python client, and
their failures as two exceptions a page can explain. Read-only: no call here changes a
study."""

from __future__ import annotations

import logging
import threading

import grpc

from tunewire.client import TunewireClientError, TuningClient
from tunewire.dashboard.settings import DashboardSettings
from tunewire.v1 import study_pb2 as pb
from tunewire.v1 import tuning_service_pb2 as api

log = logging.getLogger(__name__)

# Codes that mean "the server cannot be reached now": a banner, and the page retries.
UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class ServerUnavailable(Exception):
    """The tunewire server does not answer (down, restarting, unreachable)."""


class StudyMissing(Exception):
    """No such study (deleted, or a name the server refuses)."""


class CallRefused(Exception):
    """The server answered with an error that waiting will not change (e.g. a wrong token)."""


class StudySource:
    """Reads studies from one tunewire server (or a `dns:///` name of its replicas).

    A channel that failed to connect is replaced by a new one on the next call, so that
    the dashboard recovers as soon as the server is back instead of after gRPC's
    reconnect backoff (which grows to minutes).
    """

    def __init__(self, settings: DashboardSettings, *, timeout: float = 30.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._lock = threading.Lock()
        self._client: TuningClient | None = None

    def _connected(self) -> TuningClient:
        with self._lock:
            if self._client is None:
                s = self.settings
                self._client = TuningClient(
                    s.server,
                    token=s.token or None,
                    tls=s.tls,
                    tls_ca=s.tls_ca or None,
                    timeout=self.timeout,
                    retry_timeout=0.5,
                )
            return self._client

    def _reconnect(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def call(self, method: str, request: object) -> object:
        """One RPC; failures as ServerUnavailable, StudyMissing or CallRefused."""
        try:
            return self._connected().call(method, request)
        except TunewireClientError as exc:
            if exc.code in UNREACHABLE:
                self._reconnect()
                raise ServerUnavailable(
                    f"cannot reach the tunewire server at {self.settings.server} ({exc.code.name})"
                ) from None
            if exc.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise StudyMissing(exc.details) from None
            refused = f"the server refused {method}: {exc.code.name}: {exc.details}"
            raise CallRefused(refused) from None

    def studies(self) -> list[pb.Study]:
        out: list[pb.Study] = []
        token = ""
        while True:
            page = self.call("ListStudies", api.ListStudiesRequest(page_token=token))
            assert isinstance(page, api.ListStudiesResponse)
            out.extend(page.studies)
            token = page.next_page_token
            if not token:
                return out

    def best(self, study: str) -> pb.Trial | None:
        """The best trial of a study (for several metrics: the first of its Pareto front)."""
        answer = self.call(
            "ListOptimalTrials", api.ListOptimalTrialsRequest(study_name=study, count=1)
        )
        assert isinstance(answer, api.ListOptimalTrialsResponse)
        return answer.trials[0] if answer.trials else None

    def changes(self, study: str, cursor: str) -> api.ListStudyChangesResponse:
        answer = self.call(
            "ListStudyChanges", api.ListStudyChangesRequest(study_name=study, cursor=cursor)
        )
        assert isinstance(answer, api.ListStudyChangesResponse)
        return answer

    def close(self) -> None:
        self._reconnect()
