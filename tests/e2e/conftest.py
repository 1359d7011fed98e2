"""A real `pacsflow serve` process on loopback, configured through a TOML file and env vars."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pacsflow.adapters.hl7 import MllpClient


def free_port() -> int:
    """A port that was free a moment ago (the server binds it right after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    """A running `pacsflow serve` and how to reach it."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    dicom_port: int
    hl7_port: int
    http_port: int
    log: Path
    token: str

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def send_hl7(self, *messages: str, charset: str = "utf-8") -> list[str]:
        """Send messages on one MLLP connection; the decoded ACKs."""
        with MllpClient("127.0.0.1", self.hl7_port, timeout=10) as client:
            return [client.send(m.encode(charset)).decode(charset) for m in messages]

    def get(self, path: str, **params: object) -> httpx.Response:
        return httpx.get(
            self.http + path,
            params=params,  # type: ignore[arg-type]
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    ports = [free_port() for _ in range(3)]
    config = tmp_path / "pacsflow.toml"
    config.write_text(
        f"""
data_dir = "{tmp_path / "data"}"
ae_title = "PACSFLOW"
dicom_port = {ports[0]}
hl7_port = {ports[1]}

[[peers]]
ae_title = "FINDSCU"
host = "127.0.0.1"
port = 9

[[station_mappings]]
station_ae = "CT01"
modality = "CT"
""",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACSFLOW_")}
    env["PACSFLOW_HTTP_PORT"] = str(ports[2])  # the environment overrides the file
    env["PACSFLOW_FAST_HASHING_FOR_TESTS"] = "1"
    cli = [sys.executable, "-m", "pacsflow"]
    subprocess.run(
        [*cli, "users", "create", "e2e", "--role", "reconciler", "--config", str(config)],
        env=env,
        check=True,
        capture_output=True,
    )
    token = subprocess.run(
        [*cli, "tokens", "create", "e2e", "--name", "e2e tests", "--config", str(config)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pacsflow", "serve", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    s = Served(proc, tmp_path / "data", ports[0], ports[1], ports[2], log, token)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError("pacsflow serve exited:\n" + log.read_text())
            try:
                if httpx.get(s.http + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("pacsflow serve did not become healthy:\n" + log.read_text())
            time.sleep(0.1)
        yield s
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
