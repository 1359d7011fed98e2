"""A reused MSH-10: a retransmission is answered once, a different message is applied."""

from __future__ import annotations

from pathlib import Path

from pacsflow.adapters.hl7.codec import parse
from pacsflow.adapters.hl7.listener import Hl7Service
from pacsflow.adapters.hl7.retransmission import content_digest
from pacsflow.domain.messages import JournalEntry, MessageStatus
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.workflow.intake import Intake
from pacsflow.workflow.queries import Queries
from tests.fakes import FixedClock, InMemoryBlobStore, memory_uow

A01 = (Path(__file__).parents[1] / "samples" / "hl7" / "adt_a01_v231.hl7").read_bytes()
MRN = PatientIdentifier(PatientId("MRN12345"), Issuer("GENHOSP"))


class Node:
    """The HL7 service on the real intake and an in-memory database."""

    def __init__(self) -> None:
        self.uow = memory_uow()
        clock = FixedClock()
        self.hl7 = Hl7Service(Intake(self.uow, clock), facility="RADIOLOGY", clock=clock.now)
        self.queries = Queries(self.uow, InMemoryBlobStore())

    def entry(self, entry_id: int) -> JournalEntry:
        with self.uow(read_only=True) as uow:
            found = uow.journal.get(entry_id)
        assert found is not None
        return found


def _resent(raw: bytes) -> bytes:
    """What an interface engine resends: MSH-7 stamped anew, CRLF segment terminators."""
    return raw.replace(b"|20240315083000||ADT^A01|", b"|20240315083512||ADT^A01|", 1).replace(
        b"\r", b"\r\n"
    )


def test_a_retransmission_gets_the_earlier_answer_and_is_applied_once() -> None:
    node = Node()

    first = node.hl7.handle(A01, "his:1")
    again = node.hl7.handle(_resent(A01), "his:1")

    assert again == first
    assert parse(first).get("MSA-1") == "AA"
    second = node.entry(2)
    assert second.status is MessageStatus.DUPLICATE
    assert second.reuses is None


def test_a_different_message_reusing_the_control_id_is_applied_and_recorded() -> None:
    node = Node()
    other = A01.replace(b"MRN12345", b"MRN99999").replace(b"SMITH^JOHN", b"JONES^MARY")

    first = node.hl7.handle(A01, "his:1")
    reply = node.hl7.handle(other, "his:1")

    assert reply != first
    assert parse(reply).get("MSA-1") == "AA"
    assert parse(reply).get("MSA-2") == "ADT0001"
    registered = node.queries.patient(PatientIdentifier(PatientId("MRN99999"), Issuer("GENHOSP")))
    assert registered is not None
    assert registered.demographics.name.family == "JONES"
    assert node.queries.patient(MRN) is not None
    entry = node.entry(2)
    assert entry.status is MessageStatus.APPLIED
    assert entry.reuses == 1


def test_a_retransmission_is_recognised_after_its_id_was_reused() -> None:
    node = Node()
    other = A01.replace(b"MRN12345", b"MRN99999")

    first = node.hl7.handle(A01, "his:1")
    node.hl7.handle(other, "his:1")
    again = node.hl7.handle(_resent(A01), "his:1")

    assert again == first
    assert node.entry(3).status is MessageStatus.DUPLICATE


def test_the_digest_ignores_msh_7_and_segment_terminators_only() -> None:
    assert content_digest(_resent(A01)) == content_digest(A01)
    assert content_digest(A01 + b"\r") == content_digest(A01)
    assert content_digest(A01.replace(b"19700412", b"19700413")) != content_digest(A01)
    assert content_digest(A01.replace(b"|P|2.3.1", b"|T|2.3.1")) != content_digest(A01)
