"""Debian's Orthanc as a real DICOM peer: its own config, free ports, storage in a tmp dir.

Orthanc cannot bind its DICOM port to loopback alone, so by the project rule it runs only in a
private network namespace made for the tests: ``scripts/test`` runs pytest under ``unshare -n``
(root only) with ``lo`` up and ``PACSFLOW_TEST_NETNS=1``. pacsflow runs in-process, so it
shares that namespace with Orthanc; without the variable the ``orthanc`` fixture skips. By hand:
``unshare -n sh -c 'ip link set lo up && PACSFLOW_TEST_NETNS=1 .venv/bin/python -m pytest ...'``.
Orthanc gets ``TCP_NODELAY=1`` like the DCMTK tools, ``"Plugins": []`` (Debian's own config
would load /usr/share/orthanc/plugins) and ``DicomAssociationCloseDelay`` 0 (it would keep an
idle association to a C-MOVE destination open for 5 s). Orthanc 1.10 starts in about 0.1 s but a
clean stop takes about 3.3 s (its HTTP server needs 2 s, its DICOM server 1 s), so leaving the
fixture kills it; call ``stop()`` or ``restart()`` to exercise a clean shutdown.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pytest

ORTHANC = Path("/usr/sbin/Orthanc")

#: Read at import: the autouse fixture in tests/conftest.py removes every PACSFLOW_* variable
#: before a test's own fixtures run.
IN_TEST_NETNS = os.environ.get("PACSFLOW_TEST_NETNS") == "1"

#: A DicomModalities entry: AE title, host, port.
Modality = tuple[str, str, int]

#: Loopback needs no proxy, whatever http_proxy says.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


#: Debian's orthanc-dicomweb plugin (DICOMweb: STOW-RS, QIDO-RS, WADO-RS under /dicom-web/).
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


class OrthancError(RuntimeError):
    """Orthanc did not start, stop or answer as expected; the message carries its log."""


def free_port() -> int:
    """A loopback port that was free a moment ago (Orthanc binds it right after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def orthanc_unavailable() -> str | None:
    """Why Orthanc cannot run as a test peer here, or None when it can."""
    if not IN_TEST_NETNS:
        return (
            "Orthanc runs only in the tests' private network namespace: run ./scripts/test "
            "as root, or pytest under `unshare -n` with lo up and PACSFLOW_TEST_NETNS=1"
        )
    if not ORTHANC.is_file():
        return f"{ORTHANC} is missing (apt-get install orthanc)"
    return None


class OrthancPeer:
    """One Orthanc process with its own config; ports and storage survive restarts."""

    def __init__(
        self,
        directory: Path,
        *,
        aet: str = "ORTHANC",
        modalities: Mapping[str, Modality] | None = None,
        stable_age: int = 1,
        dicomweb: bool = False,
        extra_config: Mapping[str, object] | None = None,
    ) -> None:
        self.directory = directory
        self.aet = aet
        self.modalities: dict[str, Modality] = dict(modalities or {})
        self.stable_age = stable_age
        self.dicomweb = dicomweb
        #: Options merged over the defaults below (``AcceptedTransferSyntaxes``, new in 1.9.0).
        self.extra_config: dict[str, object] = dict(extra_config or {})
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.config_path = directory / "orthanc.json"
        self.log_path = directory / "orthanc.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def config(self) -> dict[str, object]:
        """The configuration Orthanc is started with (written anew on every start)."""
        storage = str(self.directory / "storage")
        return {
            "Name": f"pacsflow-test-{self.aet}",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "DicomCheckCalledAet": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [DICOMWEB_PLUGIN] if self.dicomweb else [],
            "DicomWeb": {"Enable": self.dicomweb, "Root": "/dicom-web/"},
            "DicomModalities": {name: list(m) for name, m in self.modalities.items()},
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True,
            "DicomAssociationCloseDelay": 0,
            "StableAge": self.stable_age,
            "OverwriteInstances": False,
            "ConcurrentJobs": 2,
            "StorageCompression": False,
            # Throwaway data: an fsync per instance only slows the tests down.
            "SyncStorageArea": False,
            **self.extra_config,
        }

    def start(self, timeout: float = 10.0) -> None:
        """Start Orthanc; return once its REST API answers and its DICOM port accepts."""
        if self.is_running:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config(), indent=2), encoding="utf-8")
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [str(ORTHANC), str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        deadline = time.monotonic() + timeout
        while not (self._http_ready() and self._dicom_ready()):
            if self._process.poll() is not None:
                self._close_log()
                raise OrthancError(f"Orthanc exited with {self._process.returncode}" + self._tail())
            if time.monotonic() > deadline:
                self.kill()
                raise OrthancError(f"Orthanc did not come up within {timeout} s" + self._tail())
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut Orthanc down cleanly (SIGTERM), killing it if it has not exited in time."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None
        self._close_log()

    def kill(self) -> None:
        """Kill Orthanc at once (SIGKILL), as a crash or power cut would."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()
        self._process = None
        self._close_log()

    def restart(self, timeout: float = 10.0) -> None:
        """Stop cleanly and start again on the same ports with the same storage."""
        self.stop(timeout)
        self.start(timeout)

    def __enter__(self) -> OrthancPeer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()

    def rest_get(self, path: str) -> Any:
        """GET a REST path (``/system``); the decoded JSON answer."""
        return self._rest("GET", path, None)

    def rest_post(self, path: str, body: object) -> Any:
        """POST bytes as they are, anything else as JSON; the decoded JSON answer."""
        return self._rest("POST", path, body)

    def rest_put(self, path: str, body: object) -> Any:
        """PUT bytes as they are, anything else as JSON; the decoded JSON answer."""
        return self._rest("PUT", path, body)

    def upload(self, path: Path) -> str:
        """Store a DICOM file through the REST API; Orthanc's id of the instance."""
        answer = self.rest_post("/instances", path.read_bytes())
        return str(answer["ID"])

    def instances(self) -> list[str]:
        """The SOPInstanceUIDs of every stored instance."""
        expanded = self.rest_get("/instances?expand")
        return sorted(str(i["MainDicomTags"]["SOPInstanceUID"]) for i in expanded)

    def study_uids(self) -> list[str]:
        """The StudyInstanceUIDs of every stored study."""
        expanded = self.rest_get("/studies?expand")
        return sorted(str(s["MainDicomTags"]["StudyInstanceUID"]) for s in expanded)

    def count_instances(self) -> int:
        return int(self.rest_get("/statistics")["CountInstances"])

    def add_modality(self, name: str, aet: str, host: str, port: int) -> None:
        """Declare a DICOM peer (C-MOVE destination, C-FIND/C-MOVE caller), kept on restart."""
        self.rest_put(f"/modalities/{name}", {"AET": aet, "Host": host, "Port": port})
        self.modalities[name] = (aet, host, port)

    def _rest(self, method: str, path: str, body: object) -> Any:
        data = None
        headers = {}
        if isinstance(body, bytes):
            data, headers["Content-Type"] = body, "application/dicom"
        elif body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with _HTTP.open(request, timeout=10) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise OrthancError(f"{method} {path}: HTTP {exc.code} {detail}") from exc
        return json.loads(raw) if raw else None

    def _http_ready(self) -> bool:
        try:
            with _HTTP.open(self.url + "/system", timeout=1) as response:
                return int(response.status) == 200
        except OSError:
            return False

    def _dicom_ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.dicom_port), timeout=1):
                return True
        except OSError:
            return False

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "; Orthanc's log:\n" + "\n".join(text.splitlines()[-lines:])


@contextmanager
def running_orthanc(
    directory: Path,
    *,
    aet: str = "ORTHANC",
    modalities: Mapping[str, Modality] | None = None,
    dicomweb: bool = False,
) -> Iterator[OrthancPeer]:
    """A started Orthanc peer, killed on exit; skips the test where Orthanc cannot run."""
    reason = orthanc_unavailable()
    if reason is not None:
        pytest.skip(reason)
    if dicomweb and not Path(DICOMWEB_PLUGIN).exists():
        pytest.skip("Debian's orthanc-dicomweb is not installed")
    with OrthancPeer(directory, aet=aet, modalities=modalities, dicomweb=dicomweb) as peer:
        yield peer


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[OrthancPeer]:
    """A running Orthanc (AE title ORTHANC, no modalities yet) in the test's namespace."""
    with running_orthanc(tmp_path / "orthanc") as peer:
        yield peer
