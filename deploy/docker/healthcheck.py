#!/usr/bin/env python3
"""Container HEALTHCHECK: asks the server's grpc.health.v1.Health service (exit 0 = SERVING).

Reads the server's own settings (TUNEWIRE_PORT, TUNEWIRE_TLS_CERT) so that it probes what
`tunewire serve` listens on; TUNEWIRE_HEALTHCHECK_TARGET overrides the address.
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def probe(target: str, tls_cert: str = "", server_name: str = "", timeout: float = 3.0) -> str:
    """Returns the serving status name of the whole server ('' service) at `target`."""
    if tls_cert:
        # The server's own certificate as the trust root: right for self-signed certificates,
        # and a CA-signed one still verifies against itself as the end of the chain.
        with open(tls_cert, "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        channel = grpc.secure_channel(target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main() -> int:
    env = os.environ
    port = env.get("TUNEWIRE_PORT") or "50051"
    target = env.get("TUNEWIRE_HEALTHCHECK_TARGET") or f"localhost:{port}"
    try:
        status = probe(
            target,
            tls_cert=env.get("TUNEWIRE_TLS_CERT", ""),
            server_name=env.get("TUNEWIRE_HEALTHCHECK_SERVER_NAME", ""),
        )
    except grpc.RpcError as exc:
        print(f"unhealthy: {target}: {exc.code().name} {exc.details()}", file=sys.stderr)
        return 1
    print(f"{target}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
