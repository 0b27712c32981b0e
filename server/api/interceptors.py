"""Server interceptors: bearer-token auth on every call but health and reflection,
Prometheus counts and latencies of every RPC, and INVALID_ARGUMENT for undecodable
requests to health and reflection (the API's own RPCs decode leniently themselves)."""

from __future__ import annotations

import asyncio
import hmac
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Histogram

from tunewire.server.api.servicer import Undecodable, lenient

# Calls that never need a token: load balancers and orchestrators probe these.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

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


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Requires `authorization: Bearer <token>` on every call but health and reflection."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        if details.method.startswith(OPEN_PREFIXES):
            return await continuation(details)
        # Exactly one value: with two, a proxy that checks the first and this server the
        # last could disagree.
        values = [
            v if isinstance(v, bytes) else str(v).encode()
            for k, v in details.invocation_metadata or ()
            if k == "authorization"
        ]
        if len(values) == 1 and hmac.compare_digest(values[0], self._expected):
            return await continuation(details)
        handler = await continuation(details)
        if not values:
            message = (
                "missing bearer token: the server requires one (the client's --token or "
                "TUNEWIRE_TOKEN; on the wire, metadata 'authorization: Bearer <token>')"
            )
        elif len(values) > 1:
            message = f"{len(values)} authorization headers: send exactly one"
        else:
            message = "invalid bearer token"

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


class DecodeGuardInterceptor(grpc.aio.ServerInterceptor):
    """Health and reflection with a request that is not a valid message: INVALID_ARGUMENT
    and a short message, where gRPC would answer UNKNOWN with the decoder's internals."""

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(OPEN_PREFIXES):
            return handler
        # The generated code's deserializer is the request class's FromString.
        message_type = getattr(handler.request_deserializer, "__self__", None)
        if not hasattr(message_type, "DESCRIPTOR"):
            return handler
        parse = lenient(message_type)

        async def refuse(request: Undecodable, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)

        async def answer(result: Any, context: grpc.aio.ServicerContext) -> Any:
            if inspect.isasyncgen(result):  # a streamed answer: written here
                async for item in result:
                    await context.write(item)
                return None
            return await result if inspect.isawaitable(result) else result

        if handler.request_streaming:
            inner = handler.stream_stream or handler.stream_unary

            async def streamed(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                async def checked() -> Any:
                    async for request in requests:
                        if isinstance(request, Undecodable):
                            await refuse(request, context)
                        yield request

                return await answer(inner(checked(), context), context)

            make = (
                grpc.stream_stream_rpc_method_handler
                if handler.response_streaming
                else grpc.stream_unary_rpc_method_handler
            )
            return make(
                streamed,
                request_deserializer=parse,
                response_serializer=handler.response_serializer,
            )
        inner = handler.unary_stream or handler.unary_unary

        async def single(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Undecodable):
                await refuse(request, context)
            return await answer(inner(request, context), context)

        make = (
            grpc.unary_stream_rpc_method_handler
            if handler.response_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        return make(
            single, request_deserializer=parse, response_serializer=handler.response_serializer
        )
