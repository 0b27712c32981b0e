"""What every HTTP request passes before the dashboard answers it: read-only methods, a
Host header naming this machine when the dashboard listens on loopback (so that a web page
elsewhere cannot reach it through DNS rebinding), the browsers' token when one is set, and
security headers on every answer.

The token: start `tunewire dashboard --ui-token T` (or TUNEWIRE_DASHBOARD_TOKEN) and open
http://HOST:PORT/?token=T once; the dashboard answers with a cookie (HttpOnly,
SameSite=Strict) and the address without the token. Scripts may send
`Authorization: Bearer T` instead. /healthz needs no token (probes).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "tunewire_dashboard"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
OPEN_PATHS = {"/healthz"}
# plotly.js draws with inline styles and compiles its WebGL shaders with `new Function`;
# scripts come only from the dashboard itself, so injected markup cannot run code.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def host_name(host_header: str) -> str:
    """The name in a Host header, without the port ("[::1]:8080" -> "::1")."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Guard:
    """ASGI middleware; see the module's docstring."""

    def __init__(self, app: ASGIApp, *, ui_token: str, loopback_only: bool) -> None:
        self.app = app
        self.ui_token = ui_token
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + HEADERS
            await send(message)

        if scope["method"] not in ("GET", "HEAD"):
            allow = [(b"allow", b"GET, HEAD")]
            await _answer(send_with_headers, 405, "the dashboard is read-only", allow)
            return
        if self.loopback_only and host_name(headers.get("host", "")).lower() not in LOOPBACK_NAMES:
            await _answer(send_with_headers, 421, "this dashboard answers to localhost only")
            return
        if self.ui_token and scope["path"] not in OPEN_PATHS:
            raw_query = scope.get("query_string", b"").decode("latin-1")
            query = parse_qsl(raw_query, keep_blank_values=True)
            given = dict(query).get("token")
            if given is not None and self._valid(given):
                rest = urlencode([(k, v) for k, v in query if k != "token"])
                location = scope["path"] + (f"?{rest}" if rest else "")
                cookie = f"{COOKIE}={self.ui_token}; HttpOnly; SameSite=Strict; Path=/"
                await _answer(
                    send_with_headers,
                    303,
                    "signed in",
                    [(b"location", location.encode()), (b"set-cookie", cookie.encode())],
                )
                return
            if not self._valid(_presented(headers)):
                await _answer(
                    send_with_headers,
                    401,
                    "this dashboard needs its token: open the address `tunewire dashboard` "
                    "printed (it ends in ?token=...), or send Authorization: Bearer TOKEN",
                )
                return
        await self.app(scope, receive, send_with_headers)

    def _valid(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.ui_token.encode())


def _presented(headers: dict[str, str]) -> str:
    """The token a request carries: its bearer header, else its cookie ("" for none)."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except CookieError:  # a malformed Cookie header carries no token
        return ""
    morsel = cookie.get(COOKIE)
    return morsel.value if morsel is not None else ""


async def _answer(
    send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": text}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
