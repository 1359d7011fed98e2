"""The HTTP API of a running node, called with a bearer token."""

from __future__ import annotations

import httpx

from pacsflow.app import Pacsflow


class Api:
    """The node's HTTP API with a bearer token."""

    def __init__(self, node: Pacsflow, token: str) -> None:
        self.base = f"http://127.0.0.1:{node.http.port}"
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(self.base + path, params=params, headers=self.headers, timeout=10)

    def post(self, path: str, body: object = None) -> httpx.Response:
        return httpx.post(self.base + path, json=body, headers=self.headers, timeout=10)
