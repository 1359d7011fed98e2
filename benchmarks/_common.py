"""Shared helpers of the benchmarks: netns, ports, processes, /proc, Orthanc, pacsflow, HL7."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any, Self

from pacsflow.adapters.hl7.mllp import MllpClient

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PACSFLOW = VENV_BIN / "pacsflow"
_CLK = os.sysconf("SC_CLK_TCK")
_IN_NETNS = "PACSFLOW_BENCH_NETNS"

#: Orthanc 1.10 configuration of the peer harness (shared/peer-benchmarks/orthanc-bench.json).
ORTHANC_CONFIG: dict[str, Any] = {
    "Name": "pacsflow-bench-orthanc",
    "StorageDirectory": "storage",
    "IndexDirectory": "index",
    "StorageCompression": False,
    "Plugins": [],
    "HttpServerEnabled": True,
    "HttpPort": 8042,
    "RemoteAccessAllowed": False,
    "AuthenticationEnabled": False,
    "SslEnabled": False,
    "DicomServerEnabled": True,
    "DicomAet": "ORTHANC",
    "DicomPort": 4242,
    "DicomCheckCalledAet": False,
    "DicomAlwaysAllowEcho": True,
    "DicomAlwaysAllowStore": True,
    "DicomAlwaysAllowFind": True,
    "DicomModalities": {},
    "DicomThreadsCount": 4,
    "MaximumPduLength": 16384,
    "SyncStorageArea": True,
    "OverwriteInstances": False,
    "StorageAccessOnFind": "Always",
    "LimitFindResults": 0,
    "LimitFindInstances": 0,
    "SaveJobs": False,
}


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


def wait_until(
    proc: subprocess.Popen[bytes],
    is_ready: Callable[[], bool],
    what: str,
    timeout: float = 60,
    interval: float = 0.1,
) -> None:
    """Ask is_ready() every interval seconds until it says yes; fail if proc exits first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: server exited early, rc={proc.returncode}")
        if is_ready():
            return
        time.sleep(interval)
    raise RuntimeError(f"{what} not ready after {timeout}s")


def _answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_http_ok(proc: subprocess.Popen[bytes], url: str, timeout: float = 60) -> None:
    """Wait until url answers 200 (the server's health check), or fail."""
    wait_until(proc, lambda: _answers_200(url), url, timeout)


def spawn(
    cmd: list[str], run_dir: Path, log: IO[bytes], env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Start a server in run_dir, in a session of its own, its output to log."""
    return subprocess.Popen(
        cmd, cwd=run_dir, stdout=log, stderr=log, env=env, start_new_session=True
    )


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


def sqlite_rows(db: Path, query: str) -> list[tuple[Any, ...]]:
    """Rows of a read-only query on a SQLite file (pacsflow's index)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return list(conn.execute(query))
    finally:
        conn.close()


def hl7(*segments: str) -> bytes:
    """An HL7 v2 message from its segments (each ended by a carriage return)."""
    return ("\r".join(segments) + "\r").encode()


def ack_code(reply: bytes) -> str:
    """MSA-1 of an HL7 ACK."""
    for seg in reply.split(b"\r"):
        if seg.startswith(b"MSA|"):
            return seg.split(b"|")[1].decode()
    return "?"


class Orthanc:
    """A fresh Orthanc 1.10 in its own directory: ORTHANC_CONFIG with the given overrides."""

    aet = "ORTHANC"

    def __init__(self, run_dir: Path, log_name: str = "orthanc.log", **overrides: Any) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        self.dicom_port, self.http_port = free_ports(2)
        cfg = dict(ORTHANC_CONFIG, DicomPort=self.dicom_port, HttpPort=self.http_port)
        cfg.update(overrides)
        (run_dir / "orthanc.json").write_text(json.dumps(cfg, indent=1))
        self._log = (run_dir / log_name).open("wb")
        cmd = ["Orthanc", str(run_dir / "orthanc.json")]
        self.proc = spawn(cmd, run_dir, self._log, dcmtk_env())

    def wait_ready(self) -> None:
        """Block until its REST API answers."""
        wait_http_ok(self.proc, f"http://127.0.0.1:{self.http_port}/system")

    def count(self) -> int:
        """CountInstances of /statistics."""
        return int(http_json(f"http://127.0.0.1:{self.http_port}/statistics")["CountInstances"])

    def cpu(self) -> float:
        """Orthanc's CPU seconds so far."""
        return proc_status(self.proc.pid).get("cpu_s", 0.0)

    def stop(self) -> None:
        """Stop it by PID (SIGTERM; a clean stop takes ~3 s) and close its log."""
        stop(self.proc)
        self._log.close()


def start_orthanc(run_dir: Path, **overrides: Any) -> Orthanc:
    """A started Orthanc (see Orthanc), stopped again if it never answers."""
    orthanc = Orthanc(run_dir, **overrides)
    try:
        orthanc.wait_ready()
    except BaseException:
        orthanc.stop()
        raise
    return orthanc


class PacsflowNode:
    """`pacsflow serve` in run_dir (data in run_dir/data), set up by env and config if any."""

    def __init__(
        self,
        run_dir: Path,
        ports: tuple[int, int, int],
        env: dict[str, str],
        config: Path | None = None,
        log_name: str = "pacsflow.log",
    ) -> None:
        self.run_dir = run_dir
        self.data = run_dir / "data"
        self.dicom_port, self.hl7_port, self.http_port = ports
        self.env = env
        self.config = config
        self._log = (run_dir / log_name).open("ab")
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_env(cls, run_dir: Path, log_name: str = "pacsflow.log", **settings: str) -> Self:
        """On free ports with pacsflow_env's settings, then settings as PACSFLOW_* overrides."""
        ports = free_ports(3)
        env = pacsflow_env(run_dir / "data", *ports)
        env.update({f"PACSFLOW_{k.upper()}": v for k, v in settings.items()})
        return cls(run_dir, (ports[0], ports[1], ports[2]), env, log_name=log_name)

    def _command(self, *args: str) -> list[str]:
        config = ["--config", str(self.config)] if self.config else []
        return [str(PACSFLOW), *args, *config]

    def cli(self, *args: str) -> str:
        """Run a `pacsflow` command on this node's settings; its stdout."""
        done = subprocess.run(
            self._command(*args), env=self.env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"pacsflow {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout.strip()

    def create_token(self, user: str, role: str, *token_args: str) -> str:
        """A new user with that role and a new API token of theirs."""
        self.cli("users", "create", user, "--role", role)
        return self.cli("tokens", "create", user, *token_args).splitlines()[-1].strip()

    def serve(self) -> float:
        """Start `pacsflow serve`; the perf_counter time its health check first answered."""
        self.proc = spawn(self._command("serve"), self.run_dir, self._log, self.env)
        wait_http_ok(self.proc, f"http://127.0.0.1:{self.http_port}/healthz")
        return time.perf_counter()

    def api(self, token: str, path: str, body: Any = None, expect: int = 200) -> Any:
        """The JSON answer of an API call with the token: a GET, or a POST of body as JSON."""
        headers = {"Authorization": f"Bearer {token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        url = f"http://127.0.0.1:{self.http_port}{path}"
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=30) as r:
            if r.status != expect:
                raise RuntimeError(f"{path}: HTTP {r.status}")
            return json.load(r)

    def mllp(self) -> MllpClient:
        """A new MLLP connection to its HL7 listener."""
        return MllpClient("127.0.0.1", self.hl7_port, timeout=30)

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on its index."""
        return sqlite_rows(self.data / "pacsflow.db", query)

    def stats(self) -> dict[str, float]:
        """Peak RSS (MiB) and CPU seconds of the server."""
        s = proc_status(self.proc.pid) if self.proc else {}
        return {"hwm_mib": round(s.get("VmHWM", 0) / 1024, 1), "cpu_s": round(s.get("cpu_s", 0), 2)}

    def stop(self) -> None:
        """Stop the server by PID."""
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def close(self) -> None:
        """Stop the server and close its log."""
        self.stop()
        self._log.close()


def scratch(a: argparse.Namespace, prefix: str) -> bool:
    """Make a.work_dir, a fresh temporary directory unless given; whether it is ours to remove."""
    is_own = a.work_dir is None
    if is_own:
        a.work_dir = Path(tempfile.mkdtemp(prefix=prefix))
    a.work_dir.mkdir(parents=True, exist_ok=True)
    return is_own


def keep_if_failed(run_dir: Path, is_ok: bool) -> None:
    """Remove a good run's directory; keep a failed one's, show its logs' tails and say where."""
    if is_ok:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for log_file in sorted(run_dir.rglob("*.log")):
        tail = log_file.read_bytes()[-1500:].decode(errors="replace")
        print(f"--- {log_file}\n{tail}", file=sys.stderr)
    print(f"kept {run_dir} for inspection", file=sys.stderr)


def save(rec: dict[str, Any], records: list[dict[str, Any]], out: IO[str] | None) -> None:
    """Keep a run's record, and append it to out as a JSON line at once."""
    records.append(rec)
    if out:
        out.write(json.dumps(rec) + "\n")
        out.flush()


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
