"""Prometheus metrics: RPC counts and latencies by method and code, trials per study."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tunewire.server.storage.sql import Storage

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


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts and times unary RPCs; the status code comes from the servicer context."""

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or handler.request_streaming or handler.response_streaming:
            return handler
        method = details.method.rsplit("/", 1)[-1]
        inner = handler.unary_unary

        def timed(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            code = "OK"
            try:
                return inner(request, context)
            except Exception:
                status = context.code() if hasattr(context, "code") else None
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
    """Trials per study and state, read from the database at scrape time (stateless)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def collect(self) -> Any:
        from tunewire.server.study import TrialState

        gauge = GaugeMetricFamily(
            "tunewire_trials", "Trials per study and state", labels=["study", "state"]
        )

        def read(repo: Any) -> list[tuple[str, dict[TrialState, int]]]:
            rows = repo.list_studies("", 10_000)
            counts = repo.trial_counts([r.id for r in rows])
            return [(r.name, counts[r.id]) for r in rows]

        for name, counts in self.storage.run(read):
            for state in TrialState:
                gauge.add_metric([name, state.value], counts.get(state, 0))
        yield gauge


_started: dict[int, bool] = {}


def start_metrics_server(port: int, storage: Storage) -> None:
    """Serves /metrics over HTTP on `port` (once per process)."""
    if _started.get(port):
        return
    REGISTRY.register(TrialStateCollector(storage))
    start_http_server(port)
    _started[port] = True
