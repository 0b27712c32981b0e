"""Prometheus metrics: RPC counts and latencies by method and code, trials per study."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tunewire.server.errors import StorageUnavailable
from tunewire.server.storage.sql import Storage

log = logging.getLogger(__name__)

RPCS = Counter("tunewire_rpc_total", "RPCs handled, by method and status code", ["method", "code"])
RPC_SECONDS = Histogram(
    "tunewire_rpc_seconds",
    "RPC handling time in seconds, by method",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SUGGEST_SECONDS = Histogram(
    "tunewire_suggestion_seconds",
    "SuggestTrials handling time (including the algorithm), in seconds",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times unary RPCs; the status code comes from the servicer context."""

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        if handler is None or handler.request_streaming or handler.response_streaming:
            return handler
        method = details.method.rsplit("/", 1)[-1]
        inner = handler.unary_unary

        async def timed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            code = "OK"
            try:
                result = inner(request, context)
                return await result if inspect.isawaitable(result) else result
            except asyncio.CancelledError:  # the client went away or its deadline passed
                code = "CANCELLED"
                raise
            except BaseException:
                status = context.code()
                code = status.name if isinstance(status, grpc.StatusCode) else "UNKNOWN"
                raise
            finally:
                elapsed = time.perf_counter() - start
                RPCS.labels(method, code).inc()
                RPC_SECONDS.labels(method).observe(elapsed)
                if method == "SuggestTrials":
                    SUGGEST_SECONDS.observe(elapsed)

        return grpc.unary_unary_rpc_method_handler(
            timed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class TrialStateCollector(Collector):
    """Trials per study and state, read from the database at scrape time (stateless).

    One per process, registered once; it reads every storage a server in this process was
    started with (tests and benchmarks run several servers in one process).
    """

    def __init__(self) -> None:
        # Weak: a server that is gone (a finished test) drops out of the gauge with its storage.
        self._storages: weakref.WeakValueDictionary[str, Storage] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def add(self, storage: Storage) -> None:
        with self._lock:
            # Two servers on one database count its trials once.
            self._storages.setdefault(storage.url, storage)

    def collect(self) -> Iterator[Metric]:
        from tunewire.server.study import TrialState

        trials = GaugeMetricFamily(
            "tunewire_trials", "Trials per study and state", labels=["study", "state"]
        )
        up = GaugeMetricFamily(
            "tunewire_storage_up",
            "1 if the last scrape could read the database, else 0",
        )

        def read(repo: Any) -> list[tuple[str, dict[TrialState, int]]]:
            rows = repo.list_studies("", 10_000)
            counts = repo.trial_counts([r.id for r in rows])
            return [(r.name, counts[r.id]) for r in rows]

        with self._lock:
            storages = list(self._storages.values())
        reachable = 1
        for storage in storages:
            try:
                # One attempt: a scrape must answer within its timeout, not retry for long.
                studies = storage.run(read, attempts=1)
            except StorageUnavailable as exc:
                log.warning("metrics: cannot read trial counts: %s", exc)
                reachable = 0
                continue
            for name, counts in studies:
                for state in TrialState:
                    trials.add_metric([name, state.value], counts.get(state, 0))
        up.add_metric([], reachable)
        yield trials
        yield up


_COLLECTOR = TrialStateCollector()
_started_ports: set[int] = set()
_start_lock = threading.Lock()


def start_metrics_server(port: int, storage: Storage) -> None:
    """Serves /metrics over HTTP on `port` (each port once per process) and adds `storage`'s
    trials to the tunewire_trials gauge."""
    with _start_lock:
        if not _started_ports:
            REGISTRY.register(_COLLECTOR)
        _COLLECTOR.add(storage)
        if port not in _started_ports:
            start_http_server(port)
            _started_ports.add(port)
