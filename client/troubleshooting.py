"""What to check when a command cannot talk to the server: the failed call's status, and a
probe of the address, turned into a hint about the address, TLS or the token."""

from __future__ import annotations

import socket

from tunewire.client.records import TunewireClientError

ADDRESS = "the address (--server HOST:PORT or TUNEWIRE_SERVER)"
RUNNING = "that a server runs there (`tunewire serve`)"
USE_TLS = "TLS: a server started with --tls-cert needs --tls (and --tls-ca CA.pem for a private CA)"
NO_TLS = "TLS: a server without a certificate needs no --tls / TUNEWIRE_TLS"
CERTIFICATE = (
    "the certificate: --tls-ca must be the CA that signed the server's certificate, whose "
    "names must include the host you connect to"
)
TOKEN = "the token (--token or TUNEWIRE_TOKEN) must be the one the server was started with"


def accepts_connections(target: str, timeout: float = 2.0) -> bool | None:
    """Whether something accepts TCP connections at a "host:port" target (any of the host's
    addresses); None when the target is not of that form (e.g. a unix socket)."""
    address = target.removeprefix("dns:///")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "/" in host:
        return None
    try:
        with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout):
            return True
    except OSError:
        return False


def explain_failure(error: TunewireClientError, *, target: str, tls: bool, waited: float) -> str:
    """One or two lines for a person: what failed and what to check.

    gRPC reports only the last address it tried (for `localhost`, ::1 may refuse while
    127.0.0.1 failed the TLS handshake), so a server that is away is told from one that
    speaks another protocol by connecting to the address.

    Args:
        error: the failed call.
        target: the server address the client used.
        tls: whether the client used TLS.
        waited: how long the command tried, in seconds.

    Returns:
        The error itself, followed by a hint when its code has a usual cause.
    """
    code = error.code.name
    if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
        cause = error.details or code
        tls_checks = [NO_TLS, CERTIFICATE] if tls else [USE_TLS]
        listening = accepts_connections(target)
        if "resolv" in cause:
            problem, checks = "the host name does not resolve", [ADDRESS]
        elif listening is False:
            problem, checks = "nothing accepts connections there", [RUNNING, ADDRESS]
        elif listening and code == "DEADLINE_EXCEEDED":
            problem = "the server did not answer in time"
            checks = ["that it is not overloaded (or give a longer --timeout)"]
        elif listening:
            problem = "something listens there, but the connection failed"
            checks = [*tls_checks, f"that {target} is a tunewire server"]
        else:
            problem, checks = "the connection failed", [ADDRESS, RUNNING, *tls_checks]
        return (
            f"cannot reach the server at {target} (tried for {waited:.0f} s): {problem}\n"
            f"  check {'; '.join(checks)}\n  gRPC said: {cause}"
        )
    if code in ("UNAUTHENTICATED", "PERMISSION_DENIED") and "--token" not in error.details:
        return f"{error}\n  check {TOKEN}"
    return str(error)
