"""Shared fixtures: a running pacsflow node on loopback, DCMTK runner, DICOM samples."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.transport import ThreadedAssociationServer

from pacsflow.app import Pacsflow
from pacsflow.config import DicomPeer, Settings
from pacsflow.domain.access import Role
from pacsflow.domain.uids import new_uid
from tests.fakes import RunningClock
from tests.peers.orthanc import orthanc  # noqa: F401 (fixture)
from tests.peers.postgres import pg_database_url, postgres_url  # noqa: F401 (fixtures)

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def _test_start() -> datetime:
    """The instant the tests' clocks start from: PACSFLOW_TEST_NOW (ISO 8601 with an offset,
    read here only, never by pacsflow), else the moment the run began."""
    text = os.environ.get("PACSFLOW_TEST_NOW", "")
    if not text:
        return datetime.now(UTC)
    try:
        start = datetime.fromisoformat(text)
    except ValueError as exc:
        raise pytest.UsageError(f"PACSFLOW_TEST_NOW={text!r} is not ISO 8601") from exc
    if start.tzinfo is None:
        raise pytest.UsageError(f"PACSFLOW_TEST_NOW={text!r} needs a UTC offset (e.g. Z)")
    return start.astimezone(UTC)


#: Read before any test runs (the autouse fixture below clears PACSFLOW_* variables).
TEST_START = _test_start()


def pytest_report_header() -> str:
    """Say where the tests' clocks start, so that a failing run can be repeated at that time."""
    return f"tests' clocks start at {TEST_START.isoformat()} (PACSFLOW_TEST_NOW to repeat)"


@pytest.fixture
def clock() -> RunningClock:
    """The time of the test: starts at TEST_START and runs; advance() skips ahead."""
    return RunningClock(TEST_START)


requires_dcmtk = pytest.mark.skipif(
    shutil.which("storescu") is None, reason="DCMTK is not installed (apt-get install dcmtk)"
)


def dcmtk(*args: str | Path | int, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK tool with Nagle off; the result with its output."""
    return subprocess.run(
        [str(a) for a in args],
        env=DCMTK_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


#: The storescu flag that proposes each compressed transfer syntax (storescu does not decode
#: RLE/JPEG itself, so a compressed file is sent only if its own syntax is proposed).
_PROPOSE = {
    "1.2.840.10008.1.2.5": "-xr",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.1.99": "-xd",
}


def storescu(
    port: int, *files: Path, ae_title: str = "PACSFLOW", required: bool = False
) -> subprocess.CompletedProcess[str]:
    """Send files with DCMTK storescu, one run per transfer syntax; the last failing run.

    required (-R) proposes the files' own SOP classes, not DCMTK's default list (which leaves
    out retired and some newer classes).
    """
    groups: dict[str, list[Path]] = {}
    for path in files:
        ts = str(dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        groups.setdefault(_PROPOSE.get(ts, ""), []).append(path)
    result = None
    for flag, paths in groups.items():
        args = ["storescu", "-v", *(["-R"] if required else []), *([flag] if flag else [])]
        args += ["-aec", ae_title]
        res = dcmtk(*args, "127.0.0.1", port, *paths)
        if result is None or res.returncode != 0:
            result = res
    assert result is not None, "no files to send"
    return result


@pytest.fixture(autouse=True)
def _no_pacsflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build their own settings; a developer's PACSFLOW_* variables must not leak in."""
    for name in list(os.environ):
        if name.startswith("PACSFLOW_"):
            monkeypatch.delenv(name)


@dataclass
class Receiver:
    """A pynetdicom Storage SCP on loopback that keeps what it receives (a C-MOVE target)."""

    ae_title: str
    server: ThreadedAssociationServer
    received: list[Dataset] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    from pacsflow.adapters.dicom.server import STORAGE_TRANSFER_SYNTAXES

    ae = AE(ae_title="DEST")
    for cx in AllStoragePresentationContexts:
        assert cx.abstract_syntax is not None
        ae.add_supported_context(cx.abstract_syntax, STORAGE_TRANSFER_SYNTAXES)
    holder: list[Receiver] = []

    def on_store(event: evt.Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        with holder[0].lock:
            holder[0].received.append(ds)
        return 0x0000

    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    assert server is not None
    holder.append(Receiver("DEST", server))
    yield holder[0]
    server.shutdown()


def move_study(port: int, study_uid: str, receiver: Receiver) -> list[Dataset]:
    """C-MOVE a study to the receiver (DEST) with movescu; what it received, taken from it.

    No waiting: the final C-MOVE response comes only after every sub-operation was answered,
    and the receiver keeps each object before it answers. The final response's count of
    completed sub-operations must be what arrived, none failed.
    """
    res = dcmtk(
        "movescu", "-d", "-S", "-aec", "PACSFLOW", "-aem", "DEST",
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
        "127.0.0.1", port,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    log = res.stdout + res.stderr  # DCMTK logs to stderr
    counts = dict(re.findall(r"(Completed|Failed|Warning) Suboperations\s*: (\d+)", log))
    assert counts, log  # the last of each is the final response's
    with receiver.lock:
        got, receiver.received[:] = list(receiver.received), []
    assert (int(counts["Completed"]), counts["Failed"], counts["Warning"]) == (len(got), "0", "0")
    return got


#: DCMTK's default calling AE titles, configured as peers allowed to query and retrieve
#: (query/retrieve is refused to AEs that are not configured). They listen nowhere.
TOOL_PEERS = [
    DicomPeer(ae_title=title, host="127.0.0.1", port=9, move_destinations=["DEST"])
    for title in ("FINDSCU", "MOVESCU", "GETSCU")
]


def make_settings(tmp_path: Path, peers: list[DicomPeer] | None = None, **kw: object) -> Settings:
    """Settings for a test node: every port chosen by the OS, data in tmp_path."""
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "dicom_port": 0,
        "hl7_port": 0,
        "http_port": 0,
        "peers": peers or [],
        "log_level": "DEBUG",
        "fast_hashing_for_tests": True,
    }
    values.update(kw)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def node(tmp_path: Path, receiver: Receiver, clock: RunningClock) -> Iterator[Pacsflow]:
    """A running pacsflow node on loopback whose C-MOVE peer DEST is the receiver fixture."""
    settings = make_settings(
        tmp_path,
        peers=[DicomPeer(ae_title="DEST", host="127.0.0.1", port=receiver.port), *TOOL_PEERS],
        station_mappings=[{"station_ae": "CT01", "modality": "CT"}],
    )
    n = Pacsflow(settings, clock)
    n.start()
    yield n
    n.stop()


@pytest.fixture
def api_token(node: Pacsflow) -> str:
    """A bearer token of a reconciler (studies, patients, orders, exceptions) on the node."""
    node.accounts.create_user("tester", [Role.RECONCILER])
    return node.accounts.create_token("tester", "tests")


def sample(name: str) -> Path:
    """A DICOM file shipped with pydicom (no download)."""
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom does not ship {name}"
    return Path(str(path))


def restamp(
    name: str | Path,
    out: Path,
    *,
    patient_id: str,
    accession: str = "",
    study_uid: str | None = None,
    name_pn: str | None = None,
    issuer: str | None = None,
    birth: str | None = None,
    sex: str | None = None,
) -> tuple[Path, Dataset]:
    """Copy a pydicom sample (or a file) with new identifiers and fresh UIDs, as a modality
    would send it."""
    ds = dcmread(name if isinstance(name, Path) else sample(name))
    ds.PatientID = patient_id
    ds.AccessionNumber = accession
    ds.StudyInstanceUID = study_uid or new_uid()
    ds.SeriesInstanceUID = new_uid()
    ds.SOPInstanceUID = new_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if name_pn is not None:
        if not name_pn.isascii():
            ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName = name_pn
    if issuer is not None:
        ds.IssuerOfPatientID = issuer
    if birth is not None:
        ds.PatientBirthDate = birth
    if sex is not None:
        ds.PatientSex = sex
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out, ds


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        d / "ca.key",
        "-out",
        d / "ca.crt",
        "-subj",
        "/CN=pacsflow test CA",
        "-days",
        "2",
    )
    for name, san in (("server", "IP:127.0.0.1"), ("client", "DNS:pacs1.test")):
        _openssl(
            "req",
            *ec,
            "-keyout",
            d / f"{name}.key",
            "-out",
            d / f"{name}.csr",
            "-subj",
            f"/CN={name}",
        )
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n", encoding="ascii")
        _openssl(
            "x509",
            "-req",
            "-in",
            d / f"{name}.csr",
            "-CA",
            d / "ca.crt",
            "-CAkey",
            d / "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            d / f"{name}.ext",
            "-out",
            d / f"{name}.crt",
        )
    return Pki(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key")
