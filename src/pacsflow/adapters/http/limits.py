"""The largest request body accepted, enforced whether or not the body declares its length."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pacsflow.adapters.http.problems import problem

#: The largest request body accepted (reconciliation actions are a few hundred bytes).
MAX_BODY_BYTES = 1 << 20


class _ChunkedBodyLimit:
    """Cut off a body that declares no length (chunked) once it passes MAX_BODY_BYTES.

    Raised as HTTP 413 from the read, which the application answers as problem JSON; a
    declared Content-Length is refused earlier (the `_limit_body` middleware). Starlette's
    own `max_body_size` is not used: it rewrites the answer to any request declaring too
    large a length into a plain-text 413, even the JSON one already chosen.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise StarletteHTTPException(status_code=413)
            return message

        await self.app(scope, limited, send)


def _too_large() -> Response:
    return problem(413, "Content Too Large", f"bodies over {MAX_BODY_BYTES} bytes")


def install_body_limits(app: FastAPI) -> None:
    """Refuse bodies over MAX_BODY_BYTES with a 413 problem document."""
    app.add_middleware(_ChunkedBodyLimit)

    @app.middleware("http")
    async def _limit_body(request: Request, call_next: Any) -> Any:
        # Refuse oversized bodies before anything reads them (and before authentication).
        length = request.headers.get("content-length", "")
        if length and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return _too_large()
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # A chunked body (no Content-Length) past the limit is cut off while being read.
        if exc.status_code == 413:
            return _too_large()
        return await http_exception_handler(request, exc)


__all__ = ["MAX_BODY_BYTES", "install_body_limits"]
