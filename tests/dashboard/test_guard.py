"""The guard in front of every request: read-only, answers to localhost only when it
listens there, the browsers' token (once in the address, then a cookie), and security
headers on every answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tunewire.dashboard.guard import COOKIE, Guard, host_name


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def request(
    guard: Guard,
    path: str = "/",
    *,
    method: str = "GET",
    host: str = "127.0.0.1:8080",
    query: str = "",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str]]:
    sent: list[dict[str, Any]] = []
    raw = [(b"host", host.encode())] + [
        (k.encode(), v.encode()) for k, v in (headers or {}).items()
    ]
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": raw,
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    start = sent[0]
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


def test_only_reads_and_security_headers_on_every_answer() -> None:
    guard = Guard(ok_app, ui_token="", loopback_only=True)
    status, headers = request(guard)
    assert status == 200
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert request(guard, method=method)[0] == 405


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:8080", 200),
        ("localhost:8080", 200),
        ("[::1]:8080", 200),
        ("localhost", 200),
        ("evil.example:8080", 421),
        ("127.0.0.1.evil.example", 421),
        ("", 421),
    ],
)
def test_a_loopback_dashboard_answers_to_loopback_names_only(host: str, status: int) -> None:
    assert request(Guard(ok_app, ui_token="", loopback_only=True), host=host)[0] == status
    assert request(Guard(ok_app, ui_token="", loopback_only=False), host=host)[0] == 200


def test_the_browser_token_once_in_the_address_then_as_a_cookie() -> None:
    guard = Guard(ok_app, ui_token="s3cret", loopback_only=False)
    assert request(guard)[0] == 401
    assert request(guard, "/api/studies", query="token=wrong")[0] == 401
    status, headers = request(guard, "/study", query="token=s3cret&x=1")
    assert status == 303 and headers["location"] == "/study?x=1"
    cookie = headers["set-cookie"]
    assert (
        cookie.startswith(f"{COOKIE}=s3cret;")
        and "HttpOnly" in cookie
        and "SameSite=Strict" in cookie
    )
    assert request(guard, headers={"cookie": f"{COOKIE}=s3cret"})[0] == 200
    assert request(guard, headers={"cookie": f"{COOKIE}=nope"})[0] == 401
    assert request(guard, headers={"cookie": 'bad"cookie'})[0] == 401
    assert request(guard, headers={"authorization": "Bearer s3cret"})[0] == 200
    assert request(guard, "/healthz")[0] == 200  # probes need no token


def test_host_names() -> None:
    assert (
        host_name("[::1]:80") == "::1"
        and host_name("a.b:80") == "a.b"
        and host_name("::1") == "::1"
    )
