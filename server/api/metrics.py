"""The Prometheus endpoint (/metrics over HTTP): the interceptors' RPC counts and latencies,
and trials per study and state, read through the study service at scrape time."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tunewire.server.domain.errors import StorageUnavailable
from tunewire.server.domain.study import TrialState
from tunewire.server.service.studies import StudyService

log = logging.getLogger(__name__)


class TrialStateCollector(Collector):
    """Trials per study and state, read from the database at scrape time (stateless).

    One per process, registered once; it reads the studies of every server in this process
    (tests and benchmarks run several in one process), each database once.
    """

    def __init__(self) -> None:
        # Weak: a server that is gone (a finished test) drops out of the gauge.
        self._services: weakref.WeakValueDictionary[str, StudyService] = (
            weakref.WeakValueDictionary()
        )
        self._lock = threading.Lock()

    def add(self, database: str, studies: StudyService) -> None:
        with self._lock:
            self._services.setdefault(database, studies)

    def collect(self) -> Iterator[Metric]:
        trials = GaugeMetricFamily(
            "tunewire_trials", "Trials per study and state", labels=["study", "state"]
        )
        up = GaugeMetricFamily(
            "tunewire_storage_up",
            "1 if the last scrape could read the database, else 0",
        )
        with self._lock:
            services = list(self._services.values())
        reachable = 1
        for studies in services:
            try:
                counts = studies.trial_counts()
            except StorageUnavailable as exc:
                log.warning("metrics: cannot read trial counts: %s", exc)
                reachable = 0
                continue
            for name, by_state in counts:
                for state in TrialState:
                    trials.add_metric([name, state.value], by_state.get(state, 0))
        up.add_metric([], reachable)
        yield trials
        yield up


_COLLECTOR = TrialStateCollector()
_started_ports: set[int] = set()
_start_lock = threading.Lock()


def start_metrics_server(port: int, host: str, database: str, studies: StudyService) -> None:
    """Serves /metrics over HTTP on host:port (each port once per process) and adds the
    trials of `studies` (of the database at URL `database`) to the tunewire_trials gauge."""
    with _start_lock:
        if not _started_ports:
            REGISTRY.register(_COLLECTOR)
        _COLLECTOR.add(database, studies)
        if port not in _started_ports:
            start_http_server(port, addr=host)
            _started_ports.add(port)
