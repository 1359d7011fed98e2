"""The permission matrix: every HTTP route, every role, enforced."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.routing import APIRoute

from pacsflow.adapters.http.app import ROUTE_PERMISSIONS
from pacsflow.app import Pacsflow
from pacsflow.domain.access import ROLE_PERMISSIONS, Role

DOCUMENTATION = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def _routes(node: Pacsflow) -> list[tuple[str, str]]:
    app = node.http.app
    found: list[tuple[str, str]] = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            found.extend((method, route.path) for method in sorted(route.methods or ()))
        else:
            assert getattr(route, "path", "") in DOCUMENTATION, f"unexpected route {route}"
    return found


def _url(node: Pacsflow, path: str) -> str:
    return f"http://127.0.0.1:{node.http.port}" + re.sub(r"\{[^}]+\}", "x", path)


def test_every_route_declares_its_permission(node: Pacsflow) -> None:
    assert sorted(_routes(node)) == sorted(ROUTE_PERMISSIONS)


@pytest.mark.parametrize("role", list(Role))
def test_each_role_gets_exactly_its_permissions(node: Pacsflow, role: Role) -> None:
    node.accounts.create_user(f"user-{role.value}", [role])
    token = node.accounts.create_token(f"user-{role.value}", "matrix")
    for method, path in _routes(node):
        needed = ROUTE_PERMISSIONS[(method, path)]
        res = httpx.request(
            method, _url(node, path), headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        if needed is None or needed in ROLE_PERMISSIONS[role]:
            assert res.status_code not in (401, 403), (role, method, path, res.text)
        else:
            assert res.status_code == 403, (role, method, path, res.status_code)
            assert res.json()["title"] == "Forbidden"


def test_no_or_bad_credentials_get_401(node: Pacsflow) -> None:
    for method, path in _routes(node):
        if ROUTE_PERMISSIONS[(method, path)] is None:
            continue
        for headers in (
            {},
            {"Authorization": "Bearer pf_000000000000_" + "0" * 48},
            {"Authorization": "Basic dXNlcjpwYXNz"},
        ):
            res = httpx.request(method, _url(node, path), headers=headers, timeout=10)
            assert res.status_code == 401, (method, path, headers)
            assert res.headers["WWW-Authenticate"] == "Bearer"


def test_revoked_and_expired_tokens_are_refused(node: Pacsflow) -> None:
    from datetime import timedelta

    node.accounts.create_user("temp", [Role.CLINICIAN])
    token = node.accounts.create_token("temp", "short")
    url = _url(node, "/api/studies")
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    node.accounts.revoke_token(token.split("_")[1])
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    expired = node.accounts.create_token("temp", "expired", ttl=timedelta(seconds=-1))
    assert httpx.get(url, headers={"Authorization": f"Bearer {expired}"}).status_code == 401
