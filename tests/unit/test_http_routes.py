"""The HTTP adapter's two tables: errors to statuses, routes to the permission they name."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from pacsflow.adapters.http.problems import error_problem
from pacsflow.adapters.http.routes import PUBLIC, Routes
from pacsflow.domain.access import Permission
from pacsflow.domain.errors import (
    ConflictingState,
    Forbidden,
    InvalidInput,
    NotFound,
    PacsflowError,
    StorageFull,
    Unauthenticated,
)
from pacsflow.workflow.jobs import UnknownJob
from pacsflow.workflow.reading import UnknownStudy
from pacsflow.workflow.routing import UnknownVersion


@pytest.mark.parametrize(
    "error",
    [NotFound("no study 1.2"), UnknownJob("no job 7"), UnknownVersion("v"), UnknownStudy("s")],
)
def test_every_missing_resource_is_a_404_not_found(error: PacsflowError) -> None:
    response = error_problem(error)
    assert (response.status_code, response.media_type) == (404, "application/problem+json")
    assert b'"title":"Not Found"' in response.body
    assert str(error).encode() in response.body


@pytest.mark.parametrize(
    ("error", "status", "title"),
    [
        (Unauthenticated("x"), 401, "Unauthenticated"),
        (Forbidden("x"), 403, "Forbidden"),
        (InvalidInput("x"), 400, "InvalidInput"),
        (ConflictingState("x"), 409, "ConflictingState"),
        (StorageFull("x"), 503, "StorageFull"),
        (PacsflowError("x"), 500, "PacsflowError"),
    ],
)
def test_other_errors_keep_their_status_and_kind(
    error: PacsflowError, status: int, title: str
) -> None:
    response = error_problem(error)
    assert response.status_code == status
    assert f'"title":"{title}"'.encode() in response.body
    assert ("www-authenticate" in response.headers) is (status == 401)


def test_the_permission_table_is_read_from_the_declarations() -> None:
    routes = Routes(tags=["things"])

    @routes.get("/thing", Permission.READ_JOBS)
    def thing() -> None:
        """A route."""

    @routes.post("/thing", PUBLIC)
    def open_thing() -> None:
        """Another."""

    assert routes.permissions == {
        ("GET", "/thing"): Permission.READ_JOBS,
        ("POST", "/thing"): None,
    }


def test_a_declared_route_is_served_behind_its_permission_only() -> None:
    routes = Routes()

    @routes.get("/guarded", Permission.READ_JOBS)
    def guarded() -> None:
        """A route."""

    @routes.get("/open", PUBLIC)
    def unguarded() -> None:
        """Another."""

    app = FastAPI()
    routes.add_to(app)
    found = {r.path: r for r in app.routes if isinstance(r, APIRoute)}
    assert [len(found[p].dependencies) for p in ("/guarded", "/open")] == [1, 0]
