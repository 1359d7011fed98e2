"""Problem JSON (RFC 9457): the one map from pacsflow's errors to HTTP statuses."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from pacsflow.domain.errors import (
    ConflictingState,
    Forbidden,
    InvalidInput,
    NotFound,
    PacsflowError,
    TransientError,
    Unauthenticated,
)
from pacsflow.domain.reading import StudyClaimed

#: Each error kind and its status, the most specific first; anything else is a 500.
_PROBLEM_STATUS: tuple[tuple[type[PacsflowError], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (InvalidInput, 400),
    (NotFound, 404),
    (ConflictingState, 409),
    (TransientError, 503),
)


def status_of(exc: PacsflowError) -> int:
    """The HTTP status that answers this error."""
    return next((code for kind, code in _PROBLEM_STATUS if isinstance(exc, kind)), 500)


def problem(status: int, title: str, detail: str) -> JSONResponse:
    """A problem document with this status, title and detail."""
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


def error_problem(exc: PacsflowError) -> JSONResponse:
    """The problem document that answers an error (its title: the error's kind)."""
    code = status_of(exc)
    # A missing resource keeps the status phrase as its title, whichever lookup missed it.
    title = "Not Found" if code == 404 else type(exc).__name__
    response = problem(code, title, str(exc))
    if code == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every pacsflow error raised by a route with its problem document."""

    @app.exception_handler(PacsflowError)
    async def _on_error(_request: Request, exc: PacsflowError) -> JSONResponse:
        return error_problem(exc)

    @app.exception_handler(StudyClaimed)
    async def _on_claimed(_request: Request, exc: StudyClaimed) -> JSONResponse:
        # The problem document of every 409, plus who holds the study and until when.
        body = {
            "type": "about:blank",
            "title": "StudyClaimed",
            "status": 409,
            "detail": str(exc),
            "claimed_by": exc.claim.reader,
            "claim_expires_at": exc.claim.expires_at.isoformat(),
        }
        return JSONResponse(body, status_code=409, media_type="application/problem+json")


__all__ = ["error_problem", "install_problem_handlers", "problem", "status_of"]
