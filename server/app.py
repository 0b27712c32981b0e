"""Builds and runs the gRPC server: servicer, auth, health, reflection, TLS, metrics."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent import futures
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tunewire.server.algorithms import get_algorithm
from tunewire.server.service import TuningService
from tunewire.server.servicer import AsyncTuningServicer
from tunewire.server.storage.sql import Storage, default_storage_url
from tunewire.server.study import ALGORITHMS
from tunewire.v1 import tuning_service_pb2, tuning_service_pb2_grpc

log = logging.getLogger(__name__)
T = TypeVar("T")

SERVICE_NAME = tuning_service_pb2.DESCRIPTOR.services_by_name["TuningService"].full_name
# Calls that never need a token: load balancers and orchestrators probe these.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass
class ServerSettings:
    """Server configuration; every field can be set by a flag or a TUNEWIRE_* variable."""

    host: str = field(default="0.0.0.0", metadata={"help": "address to listen on"})
    port: int = field(default=50051, metadata={"help": "gRPC port (0 = any free port)"})
    storage: str = field(
        default="", metadata={"help": "database URL (default: sqlite file ./tunewire.db)"}
    )
    tls_cert: str = field(default="", metadata={"help": "PEM certificate file (enables TLS)"})
    tls_key: str = field(default="", metadata={"help": "PEM private key file"})
    token: str = field(default="", metadata={"help": "bearer token clients must send"})
    threads: int = field(
        default=32, metadata={"help": "threads for calls that do not run on the event loop"}
    )
    metrics_port: int = field(
        default=0, metadata={"help": "Prometheus metrics HTTP port (0 = off)"}
    )
    max_message_bytes: int = field(
        default=4 * 1024 * 1024, metadata={"help": "largest request accepted"}
    )
    log_format: str = field(default="text", metadata={"help": "log lines: text or json"})
    torch_threads: int = field(
        default=0,
        metadata={"help": "torch threads for model fitting (0 = torch's default: all cores)"},
    )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServerSettings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"TUNEWIRE_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = int(raw) if f.type in ("int", int) else raw
        return cls(**values)


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Requires `authorization: Bearer <token>` on every call but health and reflection."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        if details.method.startswith(OPEN_PREFIXES):
            return await continuation(details)
        sent = dict(details.invocation_metadata or ()).get("authorization", "")
        if isinstance(sent, str):
            sent = sent.encode()
        if hmac.compare_digest(sent, self._expected):
            return await continuation(details)
        handler = await continuation(details)
        message = (
            "missing bearer token: send metadata 'authorization: Bearer <token>'"
            if not sent
            else "invalid bearer token"
        )

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        if handler is None or handler.request_streaming or handler.response_streaming:

            async def deny_stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

            return grpc.stream_stream_rpc_method_handler(deny_stream)
        return grpc.unary_unary_rpc_method_handler(
            deny,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


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

    def __init__(self, aio_server: grpc.aio.Server, executor: futures.ThreadPoolExecutor) -> None:
        self._server = aio_server
        self._executor = executor

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
    """A started gRPC server on settings.host:port; returns it and the bound port."""
    if settings.torch_threads > 0:
        import torch

        torch.set_num_threads(settings.torch_threads)
    preload_algorithms()
    return _EventLoopThread.run(_start(settings, storage))


async def _start(settings: ServerSettings, storage: Storage) -> tuple[Server, int]:
    interceptors: list[grpc.aio.ServerInterceptor] = []
    if settings.metrics_port:
        from tunewire.server.metrics import MetricsInterceptor, start_metrics_server

        start_metrics_server(settings.metrics_port, storage)
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

    # Each pool thread, and with SQLite the event loop (where its short write transactions
    # run one after another), keeps one connection for its write transactions.
    def init_rpc_thread() -> None:
        storage.keep_connection_on_this_thread()
        if settings.torch_threads > 0:
            # The pool threads compute the suggestions, and OpenMP keeps its thread count
            # per thread: set in the main thread only, it left each pool thread's first GP
            # kernel (torch.cdist) starting a team of one thread per core, whose spinning
            # doubled a suggestion's CPU (benchmarks/RESULTS.md, bench_trainers 11-30).
            import torch

            torch.set_num_threads(settings.torch_threads)

    executor = futures.ThreadPoolExecutor(
        max_workers=settings.threads, thread_name_prefix="rpc", initializer=init_rpc_thread
    )
    if storage.single_writer:
        storage.keep_connection_on_this_thread()
    tuning_service_pb2_grpc.add_TuningServiceServicer_to_server(
        AsyncTuningServicer(TuningService(storage), executor, inline_ok=storage.single_writer),
        server,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{settings.host}:{settings.port}"
    try:
        if settings.tls_cert or settings.tls_key:
            if not (settings.tls_cert and settings.tls_key):
                raise ValueError("TLS needs both --tls-cert and --tls-key")
            credentials = grpc.ssl_server_credentials(
                [(Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes())]
            )
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc.aio raises where grpc.server returned 0
        raise OSError(f"cannot listen on {address}: {exc}") from None
    except BaseException:
        executor.shutdown(wait=False)
        raise
    if port == 0:
        executor.shutdown(wait=False)
        raise OSError(f"cannot listen on {address}")
    await server.start()
    return Server(server, executor), port


@dataclass
class RunningServer:
    """A server running in this process (tests, benchmarks, the demo)."""

    server: Server
    storage: Storage
    port: int
    host: str

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

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
    storage = Storage(settings.storage or default_storage_url())
    server, bound = build_server(settings, storage)
    return RunningServer(server, storage, bound, "127.0.0.1" if host in ("0.0.0.0", "") else host)


def serve(settings: ServerSettings) -> None:
    """Runs until SIGINT/SIGTERM; then stops accepting calls and lets running ones finish."""
    storage = Storage(settings.storage or default_storage_url())
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
    print(f"tunewire server listening on {settings.host}:{port}", flush=True)
    done = threading.Event()

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: shutting down", signum)
        done.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    done.wait()
    server.stop(5)
    storage.dispose()
