"""ASGI middleware in front of every endpoint: what can be refused before a body is parsed is.

In order: header size (431), API key (401, before anything is read), content type of a POST
(415), the declared length (413 at once: a client that announces 100 MB and sends nothing is not
waited for), then the body read with a per-chunk timeout (408) and the same limit counted while
reading (413), which also covers chunked bodies without a content-length. The body is then
replayed to FastAPI. Every refusal is a JSON ``{"error": ...}`` like the endpoints' own.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from starlette.responses import JSONResponse

# Paths that answer without a key: probes and the API's own description.
OPEN_PATHS = ("/healthz", "/readyz", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc")
BODY_TYPES = ("application/json", "multipart/form-data")

# Set by the Gateway replica that owns this process (Gateway.__init__ -> configure).
LIMITS: dict[str, Any] = {"api_key": None, "max_body": 32 * 2**20, "read_timeout_s": 30.0, "max_header_bytes": 16384}


def configure(**limits: Any) -> None:
    LIMITS.update(limits)


def key_ok(headers: dict[str, str], api_key: str | None) -> bool:
    if api_key is None:
        return True
    given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
    return hmac.compare_digest(given.encode(), api_key.encode())  # constant time


class RequestGuard:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refused = await self._check(scope)
        if refused:
            return await JSONResponse({"error": refused[1]}, status_code=refused[0])(scope, receive, send)
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        body = bytearray()
        while True:
            try:
                msg = await asyncio.wait_for(receive(), LIMITS["read_timeout_s"])
            except TimeoutError:
                error = f"request body not received within {LIMITS['read_timeout_s']:.0f} s"
                return await JSONResponse({"error": error}, status_code=408)(scope, receive, send)
            if msg["type"] == "http.disconnect":
                return None
            body += msg.get("body", b"")
            if len(body) > LIMITS["max_body"]:
                error = f"request body exceeds the limit of {LIMITS['max_body']} bytes"
                return await JSONResponse({"error": error}, status_code=413)(scope, receive, send)
            if not msg.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _check(self, scope) -> tuple[int, str] | None:
        raw = scope.get("headers") or []
        if sum(len(k) + len(v) for k, v in raw) > LIMITS["max_header_bytes"]:
            return 431, f"request headers exceed {LIMITS['max_header_bytes']} bytes"
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}
        path = scope["path"]
        is_open = path.endswith(OPEN_PATHS) or "/docs-assets/" in path
        if not is_open and not key_ok(headers, LIMITS["api_key"]):
            return 401, "missing or wrong API key (header x-api-key, or authorization: Bearer KEY)"
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return None
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in BODY_TYPES:
            return 415, f"content-type {ctype or '(none)'!r} is not accepted; send {' or '.join(BODY_TYPES)}"
        length = headers.get("content-length")
        if length is not None and not length.strip().isdigit():
            return 400, f"content-length {length!r} is not a number"
        if length is not None and int(length) > LIMITS["max_body"]:
            return 413, f"request body of {int(length)} bytes exceeds the limit of {LIMITS['max_body']}"
        return None
