"""The composition root: builds the service for a database (choosing, once, where calls
run and how suggestions are driven) and runs it as a gRPC server with auth, health,
reflection, TLS and metrics."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tunewire.server.algorithms import get_algorithm
from tunewire.server.api.interceptors import (
    DecodeGuardInterceptor,
    MetricsInterceptor,
    TokenAuthInterceptor,
)
from tunewire.server.api.reflection import add_reflection
from tunewire.server.api.servicer import TuningServicer, add_to_server
from tunewire.server.domain.study import ALGORITHMS
from tunewire.server.service.access import StudyAccess
from tunewire.server.service.placement import CallPlacement, InlineLightCalls, PooledCalls
from tunewire.server.service.stopping import StopDecisions
from tunewire.server.service.studies import StudyService
from tunewire.server.service.suggest import (
    CombiningSuggest,
    InFlightSuggestions,
    OptimisticSuggest,
    Suggestions,
    SuggestStrategy,
)
from tunewire.server.service.trials import TrialService
from tunewire.server.service.tuning import TuningService
from tunewire.server.settings import ServerSettings
from tunewire.server.storage.base import Storage
from tunewire.server.storage.sql import SqlStorage, default_storage_url
from tunewire.v1 import tuning_service_pb2

log = logging.getLogger(__name__)
T = TypeVar("T")

SERVICE_NAME = tuning_service_pb2.DESCRIPTOR.services_by_name["TuningService"].full_name


def compose_service(
    storage: Storage, executor: futures.Executor, clock: Callable[[], float] = time.time
) -> TuningService:
    """The service over `storage`. SQLite (one writer for the whole file): light calls on
    the event loop, optimistic suggestions around the algorithm, and what a stop decision
    reads of the other trials read before a report's write transaction; PostgreSQL: every
    call in the thread pool, concurrent suggestions combined, and every read of a report
    inside its transaction."""
    access = StudyAccess(storage, clock)
    suggestions = Suggestions(access)
    calls: CallPlacement
    suggest: SuggestStrategy
    if storage.single_writer:
        calls = InlineLightCalls(executor)
        suggest = OptimisticSuggest(suggestions, calls)
    else:
        calls = PooledCalls(executor)
        suggest = CombiningSuggest(suggestions, calls)
    studies = StudyService(access)
    trials = TrialService(access, StopDecisions(access), pre_read_peers=storage.single_writer)
    return TuningService(studies, trials, InFlightSuggestions(suggest), calls)


class _EventLoopThread:
    """One asyncio event loop on a daemon thread, shared by every server in the process
    (tests and the demo start several; grpc.aio is happiest with one loop)."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def run(cls, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        with cls._lock:
            if cls._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="grpc-aio", daemon=True).start()
                cls._loop = loop
        return asyncio.run_coroutine_threadsafe(coro, cls._loop).result(timeout)


class Server:
    """A started grpc.aio server, driven from ordinary threads."""

    def __init__(
        self,
        aio_server: grpc.aio.Server,
        executor: futures.ThreadPoolExecutor,
        service: TuningService,
    ) -> None:
        self._server = aio_server
        self._executor = executor
        self.service = service

    def stop(self, grace: float | None = 1.0) -> None:
        """Stops accepting calls, lets running ones finish for up to `grace` seconds."""
        _EventLoopThread.run(self._server.stop(grace))
        self._executor.shutdown(wait=True, cancel_futures=True)


def preload_algorithms() -> None:
    """Imports every algorithm now (torch and BoTorch take seconds to import), so that the
    first suggestion a worker asks for is not slow."""
    for name in ALGORITHMS:
        get_algorithm(name)


def build_server(settings: ServerSettings, storage: Storage) -> tuple[Server, int]:
    """A started gRPC server on settings.host:port; returns it and the bound port.

    Raises:
        SettingsError: settings that would expose the server (see `ServerSettings.check`).
        OSError: the address cannot be bound.
    """
    for warning in settings.check():
        log.warning(warning)
    if settings.torch_threads > 0:
        import torch

        torch.set_num_threads(settings.torch_threads)
    preload_algorithms()
    from tunewire.server.algorithms.gp.threads import one_blas_thread_for_this_process

    one_blas_thread_for_this_process()
    return _EventLoopThread.run(_start(settings, storage))


async def _start(settings: ServerSettings, storage: Storage) -> tuple[Server, int]:
    # Each pool thread, and with SQLite the event loop (where its short write transactions
    # run one after another), keeps one connection for its write transactions.
    def init_rpc_thread() -> None:
        storage.keep_connection_on_this_thread()
        if settings.torch_threads > 0:
            # The pool threads compute the suggestions, and OpenMP keeps its thread count
            # per thread: set in the main thread only, each pool thread's first GP kernel
            # would start a team of one spinning thread per core.
            import torch

            torch.set_num_threads(settings.torch_threads)

    executor = futures.ThreadPoolExecutor(
        max_workers=settings.threads, thread_name_prefix="rpc", initializer=init_rpc_thread
    )
    if storage.single_writer:
        storage.keep_connection_on_this_thread()
    service = compose_service(storage, executor)
    interceptors: list[grpc.aio.ServerInterceptor] = [DecodeGuardInterceptor()]
    if settings.metrics_port:
        from tunewire.server.api.metrics import start_metrics_server

        start_metrics_server(
            settings.metrics_port, settings.metrics_host, storage.url, service.studies
        )
        interceptors.append(MetricsInterceptor())
    if settings.token:
        interceptors.append(TokenAuthInterceptor(settings.token))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
        ],
    )
    add_to_server(TuningServicer(service), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    add_reflection(server, (SERVICE_NAME, health.SERVICE_NAME))
    address = host_port(settings.host, settings.port)
    try:
        if settings.tls_cert:
            credentials = grpc.ssl_server_credentials(
                [(Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes())]
            )
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc.aio raises where grpc.server returned 0
        executor.shutdown(wait=False)
        raise OSError(f"cannot listen on {address}: {exc}") from None
    except BaseException:
        executor.shutdown(wait=False)
        raise
    if port == 0:
        executor.shutdown(wait=False)
        raise OSError(f"cannot listen on {address}")
    await server.start()
    return Server(server, executor, service), port


def host_port(host: str, port: int) -> str:
    """An address to listen on or dial: an IPv6 address goes in brackets ([::1]:50051)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


@dataclass
class RunningServer:
    """A server running in this process (tests, benchmarks)."""

    server: Server
    storage: Storage
    port: int
    host: str

    @property
    def target(self) -> str:
        return host_port(self.host, self.port)

    def stop(self, grace: float = 1.0) -> None:
        self.server.stop(grace)
        self.storage.dispose()


def run_in_background(
    storage_url: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str = "",
    tls_cert: str = "",
    tls_key: str = "",
    threads: int = 32,
    metrics_port: int = 0,
) -> RunningServer:
    """Starts a server on its own threads and returns at once."""
    settings = ServerSettings(
        host=host,
        port=port,
        storage=storage_url or "",
        token=token,
        tls_cert=tls_cert,
        tls_key=tls_key,
        threads=threads,
        metrics_port=metrics_port,
    )
    storage = SqlStorage(settings.storage or default_storage_url())
    server, bound = build_server(settings, storage)
    return RunningServer(server, storage, bound, "127.0.0.1" if host in ("0.0.0.0", "") else host)


def serve(settings: ServerSettings) -> None:
    """Runs until SIGINT/SIGTERM; then stops accepting calls and lets running ones finish."""
    storage = SqlStorage(settings.storage or default_storage_url())
    server, port = build_server(settings, storage)
    safe_url = storage.engine.url.render_as_string(hide_password=True)
    log.info(
        "tunewire serving on %s:%d (storage %s, auth %s, tls %s)",
        settings.host,
        port,
        safe_url,
        "on" if settings.token else "off",
        "on" if settings.tls_cert else "off",
    )
    print(f"tunewire server listening on {host_port(settings.host, port)}", flush=True)
    done = threading.Event()

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: shutting down", signum)
        done.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    done.wait()
    server.stop(5)
    storage.dispose()
