"""A capability's routes, each declared with the one permission it needs.

The permission is stated once, in the route's declaration; `add_to` applies it when the
route joins the application, and `permissions` is the table read back from the declarations
(the permission test walks it). Routes go on the application itself, in declaration order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import FastAPI

from pacsflow.adapters.http.auth import requires
from pacsflow.domain.access import Permission

_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])
#: The permission of a route anyone may call.
PUBLIC: Permission | None = None


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    path: str
    endpoint: Callable[..., Any]
    permission: Permission | None
    options: dict[str, Any]


@dataclass(slots=True)
class Routes:
    """The routes of one capability, with the OpenAPI tags they share by default."""

    tags: list[str] = field(default_factory=list)
    _routes: list[_Route] = field(default_factory=list, init=False)

    def get(
        self, path: str, permission: Permission | None, **options: Any
    ) -> Callable[[_Endpoint], _Endpoint]:
        """Declare a GET route that needs this permission (PUBLIC: none)."""
        return self._declare("GET", path, permission, options)

    def post(
        self, path: str, permission: Permission | None, **options: Any
    ) -> Callable[[_Endpoint], _Endpoint]:
        """Declare a POST route that needs this permission (PUBLIC: none)."""
        return self._declare("POST", path, permission, options)

    def _declare(
        self, method: str, path: str, permission: Permission | None, options: dict[str, Any]
    ) -> Callable[[_Endpoint], _Endpoint]:
        def declare(endpoint: _Endpoint) -> _Endpoint:
            self._routes.append(_Route(method, path, endpoint, permission, options))
            return endpoint

        return declare

    @property
    def permissions(self) -> dict[tuple[str, str], Permission | None]:
        """Each route (method, path) and the permission it needs (None: public)."""
        return {(r.method, r.path): r.permission for r in self._routes}

    def add_to(self, app: FastAPI) -> None:
        """Serve these routes from the application, each behind its permission."""
        for r in self._routes:
            options = {"tags": self.tags, **r.options}
            guard = [] if r.permission is None else [requires(r.permission)]
            app.add_api_route(r.path, r.endpoint, methods=[r.method], dependencies=guard, **options)


__all__ = ["PUBLIC", "Routes"]
