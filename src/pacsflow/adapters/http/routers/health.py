"""GET /healthz: whether every listener is up (public)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from pacsflow.adapters.http.context import Services
from pacsflow.adapters.http.routes import PUBLIC, Routes

routes = Routes(tags=["operations"])


@routes.get("/healthz", PUBLIC)
def healthz(services: Services) -> JSONResponse:
    """200 when every listener is up; the state of each either way."""
    listeners = services.health()
    is_up = all(state == "up" for state in listeners.values())
    body: dict[str, Any] = {"status": "ok" if is_up else "degraded", "listeners": listeners}
    return JSONResponse(body, status_code=200 if is_up else 503)
