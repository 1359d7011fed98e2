"""Shared helpers of the benchmark scripts: network namespace, free ports, processes, /proc."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PACSFLOW = VENV_BIN / "pacsflow"
_CLK = os.sysconf("SC_CLK_TCK")
_IN_NETNS = "PACSFLOW_BENCH_NETNS"


def ensure_netns() -> None:
    """Re-run this script inside a private network namespace that has only loopback.

    Orthanc and DCMTK's storescp cannot bind 127.0.0.1 only; inside `unshare -n` every port is
    unreachable from outside the machine whatever the process binds.
    """
    if os.environ.get(_IN_NETNS) == "1":
        return
    argv = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    inner = f"ip link set lo up && exec env {_IN_NETNS}=1 {argv}"
    os.execvp("unshare", ["unshare", "-n", "sh", "-c", inner])


def free_ports(n: int) -> list[int]:
    """n distinct TCP ports nobody listens on right now (on loopback)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def proc_status(pid: int) -> dict[str, float]:
    """VmHWM/VmRSS (kB), threads and user+sys CPU seconds of a process."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "Threads"):
                out[key] = int(value.split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / _CLK
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def http_json(url: str, timeout: float = 30) -> Any:
    """GET url and decode its JSON body."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def wait_http_ok(proc: subprocess.Popen[bytes], url: str, timeout: float = 60) -> None:
    """Wait until url answers 200 (the server's health check), or fail."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early, rc={proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not healthy after {timeout}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server we started: SIGTERM, then SIGKILL after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def dcmtk_env() -> dict[str, str]:
    """Environment for DCMTK tools and Orthanc: Nagle off (Debian's DCMTK leaves it on)."""
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    return env


def pacsflow_env(data_dir: Path, dicom: int, hl7: int, http: int) -> dict[str, str]:
    """Environment for `pacsflow serve` with a fresh data dir and the given ports."""
    env = dict(os.environ)
    env.update(
        {
            "PACSFLOW_DATA_DIR": str(data_dir),
            "PACSFLOW_HOST": "127.0.0.1",
            "PACSFLOW_DICOM_PORT": str(dicom),
            "PACSFLOW_HL7_PORT": str(hl7),
            "PACSFLOW_HTTP_PORT": str(http),
            "PACSFLOW_LOG_LEVEL": "WARNING",
        }
    )
    return env


def machine() -> dict[str, str]:
    """What machine and software versions a result was measured on."""

    def run(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
        except FileNotFoundError:
            return ""

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in run("lscpu").splitlines()
            if line.startswith("Model name")
        ),
        "",
    )
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "nproc": run("nproc"),
        "cpu": model,
        "mem_gib": f"{int(mem) / 1024 / 1024:.1f}",
        "kernel": run("uname", "-r"),
        "python": sys.version.split()[0],
        "dcmtk": run("dpkg-query", "-W", "-f=${Version}", "dcmtk"),
        "orthanc": run("dpkg-query", "-W", "-f=${Version}", "orthanc"),
        "pacsflow": version("pacsflow"),
        "pynetdicom": version("pynetdicom"),
        "pydicom": version("pydicom"),
        "sqlalchemy": version("sqlalchemy"),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
