"""A real `pacsflow serve` process on loopback, configured through a TOML file and env vars."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from pacsflow.adapters.hl7 import MllpClient

_PACSFLOW = [sys.executable, "-m", "pacsflow"]


def free_port() -> int:
    """A port that was free a moment ago (the server binds it right after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_env(**settings: str) -> dict[str, str]:
    """Our environment without PACSFLOW_* variables, plus settings as PACSFLOW_* overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACSFLOW_")}
    env.update({f"PACSFLOW_{k.upper()}": v for k, v in settings.items()})
    return env


def pacsflow_cli(config: Path, env: dict[str, str], *args: str) -> str:
    """Run a `pacsflow` command with this config file; its stdout, stripped."""
    done = subprocess.run(
        [*_PACSFLOW, *args, "--config", str(config)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def stop_serve(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if it has not exited within 15 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_serve(config: Path, env: dict[str, str], url: str, log: Path) -> subprocess.Popen[bytes]:
    """Start `pacsflow serve`, its output in log, and wait until GET url/healthz answers 200."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*_PACSFLOW, "serve", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError("pacsflow serve exited:\n" + log.read_text())
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    return process
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("pacsflow serve did not become healthy:\n" + log.read_text())
            time.sleep(0.05)
    except BaseException:
        stop_serve(process)
        raise


def _send_hl7(port: int, messages: tuple[str, ...], charset: str) -> list[str]:
    """Send messages on one MLLP connection; the decoded ACKs."""
    with MllpClient("127.0.0.1", port, timeout=10) as client:
        return [client.send(m.encode(charset)).decode(charset) for m in messages]


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
        return _send_hl7(self.hl7_port, messages, charset)

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
    # The environment overrides the file.
    env = serve_env(http_port=str(ports[2]), fast_hashing_for_tests="1")
    pacsflow_cli(config, env, "users", "create", "e2e", "--role", "reconciler")
    token = pacsflow_cli(config, env, "tokens", "create", "e2e", "--name", "e2e tests")
    log = tmp_path / "serve.log"
    proc = start_serve(config, env, f"http://127.0.0.1:{ports[2]}", log)
    try:
        yield Served(proc, tmp_path / "data", ports[0], ports[1], ports[2], log, token)
    finally:
        stop_serve(proc)


@dataclass
class Node:
    """`pacsflow serve` on fixed ports over one data directory, set up by its TOML file alone."""

    tmp: Path
    ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(3)])
    process: subprocess.Popen[bytes] | None = None
    token: str = ""
    starts: int = 0

    @property
    def config(self) -> Path:
        return self.tmp / "pacsflow.toml"

    @property
    def dicom_port(self) -> int:
        return self.ports[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports[2]}"

    def write_config(self, settings: str) -> None:
        """The TOML file: data directory, AE title and the three ports, then settings."""
        self.config.write_text(
            f"""
data_dir = "{self.tmp / "data"}"
ae_title = "PACSFLOW"
dicom_port = {self.ports[0]}
hl7_port = {self.ports[1]}
http_port = {self.ports[2]}
{settings}""",
            encoding="utf-8",
        )

    def cli(self, *args: str) -> str:
        return pacsflow_cli(self.config, serve_env(), *args)

    def create_token(self, user: str, role: str, name: str) -> None:
        """A user with that role, and a token of theirs for the API calls."""
        self.cli("users", "create", user, "--role", role)
        self.token = self.cli("tokens", "create", user, "--name", name)

    def start(self, **env_settings: str) -> None:
        """Start and wait until healthy; keyword arguments are PACSFLOW_* overrides."""
        self.starts += 1
        log = self.tmp / f"serve-{self.starts}.log"
        self.process = start_serve(self.config, serve_env(**env_settings), self.url, log)

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: no clean shutdown of anything."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_serve(self.process)

    def api(self, method: str, path: str, **kw: Any) -> Any:
        """The JSON body of a successful API call with the token."""
        r = httpx.request(
            method,
            self.url + path,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
            **kw,
        )
        assert r.is_success, r.text
        return r.json()

    def get(self, path: str, **params: str) -> Any:
        return self.api("GET", path, params=params)

    def send_hl7(self, *messages: str) -> list[str]:
        return _send_hl7(self.ports[1], messages, "utf-8")
