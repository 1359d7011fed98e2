"""Runs the HTTP application with uvicorn in a background thread."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)


class HttpServer:
    """uvicorn serving one app on a pre-bound socket, so port 0 works and the port is known."""

    def __init__(
        self, app: FastAPI, host: str, port: int, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._sock = socket.create_server((host, port), reuse_port=False)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        if ssl_context is not None:
            # uvicorn builds its own context from files; hand it ours (BCP 195) instead.
            config.load()
            config.ssl = ssl_context
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self.host = host
        self.app = app

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._sock.getsockname()[1])

    @property
    def is_running(self) -> bool:
        """True once uvicorn has started and until it stops."""
        return self._server.started and not self._server.should_exit

    def start(self, timeout: float = 10.0) -> None:
        """Serve in a background thread; returns once the server accepts connections."""
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.01)
        log.info("HTTP listener on %s:%d", self.host, self.port)

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()


__all__ = ["HttpServer"]
