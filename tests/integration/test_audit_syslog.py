"""ATNA forwarding: DICOM audit message XML, RFC 5424 frames, RFC 5425 delivery over TLS."""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pacsflow.adapters.syslog import (
    SyslogTlsSender,
    audit_message,
    client_tls_context,
    octet_counted,
    syslog_frame,
)
from pacsflow.adapters.syslog.messages import network_access_point_type
from pacsflow.domain import audit as a
from pacsflow.domain import audit_events
from pacsflow.domain.audit import ActiveParticipant, AuditSource, Outcome
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from tests.conftest import Pki

T0 = datetime(2026, 11, 28, 8, 0, 1, 250000, tzinfo=UTC)
SOURCE = AuditSource("PACSFLOW", enterprise_site="GENHOSP")
ALICE = ActiveParticipant("alice", user_name="Alice", network_access_point="10.0.0.7")
CT01 = ActiveParticipant("CT01", network_access_point="ct01.example.org")
NODE = ActiveParticipant("PACSFLOW", alternative_user_id="4242", network_access_point="::1")
P1 = PatientIdentifier(PatientId("P001"), Issuer("HOSP"))

EVENTS = {
    "query": audit_events.query(
        SOURCE, CT01, T0, query_text="PatientID=P001\nModality=CT", responder=NODE, patients=[P1]
    ),
    "transfer": audit_events.instances_transferred(
        SOURCE,
        NODE,
        ActiveParticipant("DEST", network_access_point="127.0.0.1"),
        T0,
        action=a.Action.READ,
        requestor=CT01,
        patients=[P1],
        studies=[audit_events.study_object("1.2.3", ["ACC1", "ACC2"])],
    ),
    "merge": audit_events.patient_record(
        SOURCE,
        ALICE,
        T0,
        action=a.Action.UPDATE,
        patients=[P1, PatientIdentifier(PatientId("P002"))],
    ),
    "failed_login": audit_events.user_authentication(
        SOURCE, ALICE, T0, outcome=Outcome.MINOR_FAILURE, description="bad password\x07"
    ),
    "config": audit_events.security_alert(
        SOURCE,
        ALICE,
        T0,
        alert=a.EventTypes.SOFTWARE_CONFIGURATION,
        resource="pacsflow:routing-rules/v12",
    ),
    "audit_read": audit_events.audit_log_used(SOURCE, ALICE, T0),
    "start": audit_events.application_activity(SOURCE, NODE, T0),
}

_TOP_ORDER = [
    "EventIdentification",
    "ActiveParticipant",
    "AuditSourceIdentification",
    "ParticipantObjectIdentification",
]


def _check_coded(element: ET.Element) -> None:
    for attr in ("csd-code", "codeSystemName", "originalText"):
        assert element.get(attr), f"{element.tag} lacks {attr}"


def check_structure(xml: bytes) -> ET.Element:
    """The required elements and attributes of PS3.15 A.5.1, in schema order."""
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(xml)
    assert root.tag == "AuditMessage"
    tags = [child.tag for child in root]
    assert tags == sorted(tags, key=_TOP_ORDER.index), "children out of schema order"
    assert tags.count("EventIdentification") == 1
    assert tags.count("AuditSourceIdentification") == 1
    assert "ActiveParticipant" in tags

    ident = root.find("EventIdentification")
    assert ident is not None
    assert ident.get("EventActionCode") in {"C", "R", "U", "D", "E"}
    assert ident.get("EventOutcomeIndicator") in {"0", "4", "8", "12"}
    stamp = ident.get("EventDateTime", "")
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")).tzinfo is not None
    event_id = ident.find("EventID")
    assert event_id is not None
    assert event_id.get("codeSystemName") == "DCM"
    for coded in (event_id, *ident.findall("EventTypeCode")):
        _check_coded(coded)

    for participant in root.findall("ActiveParticipant"):
        assert participant.get("UserID")
        assert participant.get("UserIsRequestor") in {"true", "false"}
        if participant.get("NetworkAccessPointID"):
            assert participant.get("NetworkAccessPointTypeCode") in {"1", "2", "5"}
        for role in participant.findall("RoleIDCode"):
            _check_coded(role)
    source = root.find("AuditSourceIdentification")
    assert source is not None
    assert source.get("AuditSourceID")
    for code in source.findall("AuditSourceTypeCode"):
        _check_coded(code)

    for obj in root.findall("ParticipantObjectIdentification"):
        assert obj.get("ParticipantObjectID")
        assert obj.get("ParticipantObjectTypeCode") in {"1", "2", "3", "4"}
        assert obj.get("ParticipantObjectTypeCodeRole")
        children = [c.tag for c in obj]
        assert children[0] == "ParticipantObjectIDTypeCode"
        id_type = obj.find("ParticipantObjectIDTypeCode")
        assert id_type is not None
        _check_coded(id_type)
        assert not {"ParticipantObjectName", "ParticipantObjectQuery"} <= set(children)
    return root


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_every_event_renders_a_well_formed_dicom_audit_message(name: str) -> None:
    root = check_structure(audit_message(EVENTS[name]))
    ident = root.find("EventIdentification")
    assert ident is not None
    event_id = ident.find("EventID")
    assert event_id is not None
    assert event_id.get("csd-code") == EVENTS[name].event_id.value
    assert ident.get("EventDateTime") == "2026-11-28T08:00:01.250000Z"


def test_query_carries_its_text_in_base64_and_the_patient_as_cx() -> None:
    root = check_structure(audit_message(EVENTS["query"]))
    query, patient = root.findall("ParticipantObjectIdentification")
    assert query.get("ParticipantObjectTypeCodeRole") == "24"
    assert query.get("ParticipantObjectID") == "1.2.840.10008.5.1.4.1.2.2.1"
    encoded = query.findtext("ParticipantObjectQuery") or ""
    assert base64.b64decode(encoded).decode() == "PatientID=P001\nModality=CT"
    assert patient.get("ParticipantObjectID") == "P001^^^HOSP"
    assert (
        patient.get("ParticipantObjectTypeCode"),
        patient.get("ParticipantObjectTypeCodeRole"),
    ) == (
        "1",
        "1",
    )
    requestors = [
        p.get("UserID")
        for p in root.iter("ActiveParticipant")
        if p.get("UserIsRequestor") == "true"
    ]
    assert requestors == ["CT01"]


def test_transfer_names_roles_and_the_study_with_its_accessions() -> None:
    root = check_structure(audit_message(EVENTS["transfer"]))
    roles = {}
    for participant in root.iter("ActiveParticipant"):
        role = participant.find("RoleIDCode")
        assert role is not None
        roles[participant.get("UserID")] = (
            role.get("csd-code"),
            participant.get("NetworkAccessPointTypeCode"),
        )
    assert roles == {"CT01": ("110151", "1"), "PACSFLOW": ("110153", "2"), "DEST": ("110152", "2")}
    study = root.findall("ParticipantObjectIdentification")[1]
    id_type = study.find("ParticipantObjectIDTypeCode")
    assert id_type is not None
    assert id_type.get("csd-code") == "110180"
    assert [acc.get("Number") for acc in study.findall("Accession")] == ["ACC1", "ACC2"]


def test_characters_xml_cannot_carry_are_replaced() -> None:
    root = check_structure(audit_message(EVENTS["failed_login"]))
    assert root.findtext("EventIdentification/EventOutcomeDescription") == "bad password\ufffd"


@pytest.mark.parametrize(
    ("point", "code"),
    [("10.1.2.3", "2"), ("[::1]", "2"), ("host.example", "1"), ("https://x/y", "5")],
)
def test_network_access_point_type(point: str, code: str) -> None:
    assert network_access_point_type(point) == code


def test_syslog_frame_is_rfc5424_with_the_atna_header() -> None:
    frame = syslog_frame(EVENTS["query"], hostname="pacs1.example.org", procid="123")
    header, _, msg = frame.partition(b" \xef\xbb\xbf")
    assert (
        header == b"<85>1 2026-11-28T08:00:01.250000Z pacs1.example.org pacsflow 123 IHE+RFC-3881 -"
    )
    check_structure(msg)


def test_syslog_header_fields_are_printable_and_bounded() -> None:
    frame = syslog_frame(EVENTS["start"], hostname="bad host\n" + "x" * 300, procid="")
    fields = frame.split(b" ", 7)
    assert fields[2] == b"badhost" + b"x" * 248
    assert fields[4] == b"-"


def test_octet_counting_prefixes_the_length() -> None:
    message = syslog_frame(EVENTS["merge"], hostname="h")
    framed = octet_counted(message)
    length, _, rest = framed.partition(b" ")
    assert int(length) == len(rest) == len(message)


# --- delivery over TLS ------------------------------------------------------------------------


@dataclass
class Collector:
    """A loopback RFC 5425 receiver: TLS with client certificates, octet-counted frames."""

    context: ssl.SSLContext
    listener: socket.socket
    frames: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    connections: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                with self.cond:
                    self.connections += 1
                buffer = b""
                while chunk := tls.recv(65536):
                    buffer += chunk
                    while b" " in buffer:
                        length, _, rest = buffer.partition(b" ")
                        if len(rest) < int(length):
                            break
                        with self.cond:
                            self.frames.append(rest[: int(length)])
                            self.cond.notify_all()
                        buffer = rest[int(length) :]
        except (OSError, ssl.SSLError) as exc:
            with self.cond:
                self.errors.append(repr(exc))
                self.cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10) -> list[bytes]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.frames) >= count, timeout)
            return list(self.frames)


def _server_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(pki.ca)
    context.verify_mode = ssl.CERT_REQUIRED  # ATNA ITI-19: both nodes authenticate
    return context


def _collector(pki: Pki, port: int = 0) -> Iterator[Collector]:
    listener = socket.create_server(("127.0.0.1", port))
    collector = Collector(_server_context(pki), listener)
    thread = threading.Thread(target=collector.serve, daemon=True)
    thread.start()
    yield collector
    listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in the serving thread
    listener.close()
    thread.join(5)


@pytest.fixture
def collector(pki: Pki) -> Iterator[Collector]:
    yield from _collector(pki)


def _sender(
    pki: Pki,
    port: int,
    *,
    queue_size: int = 10_000,
    min_backoff: float = 0.5,
    max_backoff: float = 30.0,
) -> SyslogTlsSender:
    context = client_tls_context(pki.ca, pki.client_cert, pki.client_key)
    return SyslogTlsSender(
        "127.0.0.1",
        port,
        context,
        hostname="pacs1.test",
        queue_size=queue_size,
        min_backoff=min_backoff,
        max_backoff=max_backoff,
    )


def test_events_reach_the_collector_in_order_over_mutual_tls(
    pki: Pki, collector: Collector
) -> None:
    sender = _sender(pki, collector.port)
    sender.start()
    names = ["query", "transfer", "failed_login"]
    for name in names:
        sender.send(EVENTS[name])
    assert sender.flush(10)
    frames = collector.wait_for(3)
    sender.close()
    assert len(frames) == 3
    assert collector.connections == 1
    for name, frame in zip(names, frames, strict=True):
        assert frame.startswith(b"<85>1 2026-11-28T08:00:01.250000Z pacs1.test pacsflow ")
        _, _, xml = frame.partition(b"\xef\xbb\xbf")
        root = check_structure(xml)
        event_id = root.find("EventIdentification/EventID")
        assert event_id is not None
        assert event_id.get("csd-code") == EVENTS[name].event_id.value
    assert (sender.sent, sender.dropped, sender.pending) == (3, 0, 0)


def test_a_large_message_is_delivered_whole(pki: Pki, collector: Collector) -> None:
    big = audit_events.query(SOURCE, CT01, T0, query_text="x" * 100_000)
    sender = _sender(pki, collector.port)
    sender.start()
    sender.send(big)
    assert sender.flush(10)
    (frame,) = collector.wait_for(1)
    sender.close()
    assert len(frame) > 100_000
    check_structure(frame.partition(b"\xef\xbb\xbf")[2])


def test_events_wait_for_a_collector_that_comes_up_later(pki: Pki) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    sender = _sender(pki, port, min_backoff=0.05, max_backoff=0.2)
    sender.start()
    sender.send(EVENTS["start"])
    sender.send(EVENTS["audit_read"])
    deadline = time.monotonic() + 5
    while sender.failures == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sender.failures > 0
    assert sender.pending == 2
    late = _collector(pki, port)
    collector = next(late)
    try:
        assert sender.flush(10)
        frames = collector.wait_for(2)
        assert [b"110100" in f for f in frames] == [True, False]
        assert b"110101" in frames[1]
    finally:
        sender.close()
        next(late, None)


def test_an_untrusted_collector_gets_nothing(pki: Pki, collector: Collector) -> None:
    context = client_tls_context()  # the system CAs do not know the test CA
    sender = SyslogTlsSender(
        "127.0.0.1", collector.port, context, min_backoff=0.05, max_backoff=0.1
    )
    sender.start()
    sender.send(EVENTS["merge"])
    assert not sender.flush(0.5)
    sender.close(timeout=0.5)
    assert collector.frames == []
    assert sender.failures > 0
    assert sender.pending == 1


def test_a_client_without_a_certificate_is_refused(pki: Pki, collector: Collector) -> None:
    sender = SyslogTlsSender(
        "127.0.0.1", collector.port, client_tls_context(pki.ca), min_backoff=0.05, max_backoff=0.1
    )
    sender.start()
    sender.send(EVENTS["merge"])
    sender.flush(0.5)
    sender.close(timeout=0.5)
    assert collector.frames == []


def test_a_full_queue_drops_the_newest_and_never_blocks(pki: Pki) -> None:
    sender = _sender(pki, 9, queue_size=2)  # never started
    for name in ("query", "merge", "start"):
        sender.send(EVENTS[name])
    assert (sender.pending, sender.dropped) == (2, 1)
    sender.close(timeout=0.1)
    sender.send(EVENTS["start"])
    assert sender.dropped == 2


def test_a_node_forwards_its_audit_records_to_the_configured_collector(
    pki: Pki, collector: Collector, tmp_path: Path
) -> None:
    from pacsflow.app import Pacsflow
    from tests.conftest import make_settings

    node = Pacsflow(
        make_settings(
            tmp_path,
            audit_syslog_host="127.0.0.1",
            audit_syslog_port=collector.port,
            audit_syslog_ca_file=pki.ca,
            audit_syslog_cert_file=pki.client_cert,
            audit_syslog_key_file=pki.client_key,
        )
    )
    node.start()
    try:
        # The first start records its settings (110113/110131), then the start itself.
        frames = collector.wait_for(2)
    finally:
        node.stop()
    [started] = [f for f in frames if b"110100" in f]  # Application Activity: the node started
    assert b"<AuditMessage" in started
    assert any(b"110131" in f for f in frames)  # Software Configuration: first start
