"""Hostile input: whatever arrives, the listeners answer with a clear error and keep serving."""

from __future__ import annotations

import socket
import struct
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from pacsflow.adapters.hl7 import MllpClient
from pacsflow.adapters.hl7.mllp import frame
from pacsflow.app import Pacsflow
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from tests.conftest import dcmtk, requires_dcmtk, restamp, sample

GOOD_ADT = (
    "MSH|^~\\&|HIS|H|PACSFLOW|R|20261128090000||ADT^A01|{cid}|P|2.5.1\rPID|1||9^^^H||OK^FINE\r"
)
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

hl7_junk = st.one_of(
    st.binary(min_size=1, max_size=2000),
    st.text(max_size=500).map(lambda t: ("MSH|^~\\&|" + t).encode("utf-8", "surrogatepass")),
    st.lists(st.text(max_size=40), max_size=50).map(
        lambda fs: ("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|X|P|2.5.1\rPID|" + "|".join(fs)).encode(
            "utf-8", "surrogatepass"
        )
    ),
)


def _msa(ack: bytes) -> str:
    text = ack.decode("latin-1")
    line = next((s for s in text.split("\r") if s.startswith("MSA|")), "")
    return line.split("|")[1] if line else ""


@FUZZ
@given(payload=hl7_junk)
def test_any_hl7_payload_gets_an_ack_and_the_listener_keeps_serving(
    node: Pacsflow, payload: bytes
) -> None:
    payload = payload.replace(b"\x0b", b"").replace(b"\x1c", b"")  # framing bytes are MLLP's
    with MllpClient("127.0.0.1", node.hl7.port, timeout=10) as client:
        assert _msa(client.send(payload)) in {"AA", "AE", "AR"}
        assert _msa(client.send(GOOD_ADT.format(cid=f"OK{len(payload)}").encode())) == "AA"


def test_an_oversized_hl7_message_closes_only_its_connection(node: Pacsflow) -> None:
    with socket.create_connection(("127.0.0.1", node.hl7.port), timeout=10) as sock:
        try:
            sock.sendall(frame(b"MSH|^~\\&|" + b"X" * (17 * 1024 * 1024)))
            assert sock.recv(1024) == b""  # closed without an answer
        except (ConnectionResetError, BrokenPipeError):
            pass  # closed while we were still sending: the same outcome
    with MllpClient("127.0.0.1", node.hl7.port, timeout=10) as client:
        assert _msa(client.send(GOOD_ADT.format(cid="AFTER").encode())) == "AA"


def _echo_ok(node: Pacsflow) -> bool:
    return dcmtk("echoscu", "-aec", "PACSFLOW", "127.0.0.1", node.dicom.port).returncode == 0


def _stored_files(node: Pacsflow) -> set[Path]:
    return set((node.settings.data_dir / "objects").rglob("*.dcm"))


@pytest.mark.dcmtk
@requires_dcmtk
@pytest.mark.parametrize("name", ["MR_truncated.dcm", "rtplan_truncated.dcm", "badVR.dcm"])
def test_broken_files_are_refused_or_stored_intact(node: Pacsflow, name: str) -> None:
    dcmtk("storescu", "-aec", "PACSFLOW", "127.0.0.1", node.dicom.port, sample(name))
    indexed = node.queries.instances(is_published_only=False)
    # Whatever was answered 0x0000 is indexed with its file, and nothing else is on disk.
    assert {node.queries.local_file(i) for i in indexed} == _stored_files(node)
    for inst in indexed:
        path = node.queries.local_file(inst)
        assert path is not None
        assert dcmread(path).SOPInstanceUID == inst.sop_instance_uid
    assert _echo_ok(node)


def _send(node: Pacsflow, ds: Dataset) -> int:
    ae = AE(ae_title="FUZZER")
    ae.add_requested_context(CTImageStorage, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", node.dicom.port, ae_title="PACSFLOW")
    assert assoc.is_established
    try:
        status = assoc.send_c_store(ds)
        return int(status.Status)
    finally:
        assoc.release()


def test_path_traversal_uids_are_refused_and_nothing_is_written_outside(
    node: Pacsflow, tmp_path: Path
) -> None:
    _, ds = restamp("CT_small.dcm", tmp_path / "a.dcm", patient_id="EVIL")
    with warnings.catch_warnings():  # pydicom warns about the invalid UID we mean to send
        warnings.simplefilter("ignore")
        ds.StudyInstanceUID = "../../../../tmp/evil"
        assert _send(node, ds) != 0x0000
    assert not Path("/tmp/evil").exists()
    assert _stored_files(node) == set()


@FUZZ
@given(
    keyword=st.sampled_from(["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "PatientName"]),
    value=st.text(st.characters(exclude_categories=["Cs"]), max_size=80),
)
def test_any_identifier_value_gets_a_status_and_only_valid_ones_are_stored(
    node: Pacsflow, tmp_path: Path, keyword: str, value: str
) -> None:
    _, ds = restamp("CT_small.dcm", tmp_path / "f.dcm", patient_id="FUZZ")
    ds.SpecificCharacterSet = "ISO_IR 192"
    with warnings.catch_warnings():  # invalid values are the point of this test
        warnings.simplefilter("ignore")
        setattr(ds, keyword, value)
        try:
            status = _send(node, ds)
        except ValueError:  # pydicom cannot even encode it: nothing reached the server
            reject()
    found = node.queries.instances(sop_uids=[ds.SOPInstanceUID], is_published_only=False)
    if status == 0x0000:
        assert found, "success must mean indexed"
        assert node.queries.local_file(found[0]) is not None
    else:
        assert found == []


@pytest.mark.parametrize(
    "pdu",
    [
        b"\x00" * 10,
        b"\x01\x00" + struct.pack(">I", 0xFFFFFFFF) + b"\x00\x01",  # A-ASSOCIATE-RQ, 4 GiB long
        b"\x01\x00" + struct.pack(">I", 20) + b"\x00\x01" + b"\x00" * 5,  # truncated
        b"\x09\x00" + struct.pack(">I", 4) + b"\x00\x00\x00\x00",  # unknown PDU type
        b"GET / HTTP/1.1\r\n\r\n",
    ],
)
def test_raw_garbage_on_the_dicom_port_is_dropped(node: Pacsflow, pdu: bytes) -> None:
    with socket.create_connection(("127.0.0.1", node.dicom.port), timeout=5) as sock:
        sock.sendall(pdu)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(70)
        try:
            while sock.recv(4096):
                pass  # an A-ABORT or A-ASSOCIATE-RJ may come back; then the close
        except ConnectionResetError:
            pass
    assert _echo_ok(node)


GET_ROUTES = [
    "/api/studies",
    "/api/exceptions",
    "/api/orders",
    "/api/patients/{x}",
    "/api/studies/{x}",
]
PARAMS = ["limit", "patient_id", "issuer", "accession_number", "include_held", "status", "junk"]


@FUZZ
@given(
    route=st.sampled_from(GET_ROUTES),
    params=st.dictionaries(
        st.sampled_from(PARAMS),
        st.text(max_size=60),
        max_size=4,
    ),
    segment=st.text(min_size=1, max_size=60).filter(
        lambda s: "/" not in s and s not in {".", ".."}
    ),
)
def test_http_api_never_fails_with_5xx(
    node: Pacsflow, api_token: str, route: str, params: dict[str, str], segment: str
) -> None:
    url = f"http://127.0.0.1:{node.http.port}" + route.replace("{x}", quote(segment, safe=""))
    res = httpx.get(url, params=params, headers={"Authorization": f"Bearer {api_token}"})
    assert res.status_code < 500, (url, params, res.text)
    if res.status_code >= 400:
        assert res.json()  # a JSON body that says what is wrong


def test_a_huge_bearer_token_is_refused_quickly(node: Pacsflow) -> None:
    url = f"http://127.0.0.1:{node.http.port}/api/studies"
    res = httpx.get(url, headers={"Authorization": "Bearer " + "A" * 60_000}, timeout=5)
    assert res.status_code in (401, 431)


def test_invalid_utf8_declared_as_utf8_is_refused_not_stored(node: Pacsflow) -> None:
    raw = (
        b"MSH|^~\\&|HIS|H|PACSFLOW|R|20261128090000||ADT^A01|BADUTF|P|2.5.1||||||UNICODE UTF-8\r"
        b"PID|1||88^^^H||\xc3\x28\xfe\xff^BAD\r"
    )
    with MllpClient("127.0.0.1", node.hl7.port, timeout=10) as client:
        ack = client.send(raw)
    assert _msa(ack) == "AE"
    assert b"MSH-18" in ack
    assert node.queries.patient(PatientIdentifier(PatientId("88"), Issuer("H"))) is None


def test_oversized_bodies_and_ids_get_4xx_before_anything_else(
    node: Pacsflow, api_token: str
) -> None:
    base = f"http://127.0.0.1:{node.http.port}"
    with socket.create_connection(("127.0.0.1", node.http.port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/exceptions/1/match HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 4294967296\r\nContent-Type: application/json\r\n\r\n{"
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")
    auth = {"Authorization": f"Bearer {api_token}"}
    res = httpx.post(
        f"{base}/api/exceptions/9223372036854775808/match",
        json={"accession_number": ""},
        headers=auth,
    )
    assert res.status_code == 422


def test_a_chunked_body_is_cut_off_past_the_limit_and_the_server_keeps_serving(
    node: Pacsflow, api_token: str
) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        nonlocal sent
        yield b'{"reason": "'
        for _ in range(64):
            sent += 64 * 1024
            yield b"x" * (64 * 1024)
        yield b'"}'

    res = httpx.post(
        f"http://127.0.0.1:{node.http.port}/api/exceptions/1/reject",
        content=chunks(),
        headers={"Authorization": f"Bearer {api_token}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert res.status_code == 413
    assert res.headers["content-type"].startswith("application/problem+json")
    assert res.json()["title"] == "Content Too Large"
    assert httpx.get(f"http://127.0.0.1:{node.http.port}/healthz").status_code == 200


@pytest.mark.dcmtk
@requires_dcmtk
def test_port_probes_do_not_lock_the_dicom_listener_for_long(node: Pacsflow) -> None:
    for _ in range(40):  # a load balancer's TCP checks: connect, close, nothing sent
        socket.create_connection(("127.0.0.1", node.dicom.port), timeout=5).close()
    deadline = time.monotonic() + 12  # ACSE timeout 5 s (pynetdicom's default was 30 s)
    while not _echo_ok(node):
        assert time.monotonic() < deadline, "DICOM listener still refusing associations"
        time.sleep(0.5)


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.dcmtk
@requires_dcmtk
def test_a_pdu_declaring_gigabytes_is_dropped_without_buffering_it(node: Pacsflow) -> None:
    before = _rss_mib()
    chunk = b"\x00" * (1 << 20)
    with socket.create_connection(("127.0.0.1", node.dicom.port), timeout=10) as sock:
        sock.sendall(b"\x01\x00" + struct.pack(">I", 0xFFFFFFF0))
        try:
            for _ in range(100):  # stream 100 MiB of "PDU body"
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # dropped while we were still sending: what we want
    assert _rss_mib() - before < 40
    assert _echo_ok(node)


def test_a_declared_oversized_body_gets_problem_json(node: Pacsflow, api_token: str) -> None:
    # Found by schemathesis: a 2 MiB report body was answered 413 in plain text.
    res = httpx.post(
        f"http://127.0.0.1:{node.http.port}/api/reports",
        json={"status": "F", "text": "\x1f" * (2 * 1024 * 1024)},
        headers={"Authorization": f"Bearer {api_token}"},
        timeout=30,
    )
    assert res.status_code == 413
    assert res.headers["content-type"].startswith("application/problem+json")
    assert res.json()["title"] == "Content Too Large"
