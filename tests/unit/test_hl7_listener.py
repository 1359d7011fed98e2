"""Hl7Service.handle on a fake intake: journal, apply, answer, duplicates, failures."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from pacsflow.adapters.db.uow import SqlUnitOfWork
from pacsflow.adapters.hl7.codec import Message, parse
from pacsflow.adapters.hl7.field_map import SenderFieldMaps
from pacsflow.adapters.hl7.listener import Hl7Service
from pacsflow.adapters.hl7.mllp import MllpClient, MllpServer
from pacsflow.adapters.hl7.translate import FieldMap
from pacsflow.domain import commands as cmd
from pacsflow.domain.errors import DuplicateAccession, TransientError, UnknownOrder
from pacsflow.domain.messages import InboundMessage, JournalEntry, MessageStatus
from pacsflow.domain.orders import AccessionNumber
from pacsflow.workflow.messages import Answer, MessageReception, Receipt, ReceivedMessage
from pacsflow.workflow.ports.uow import UnitOfWork
from tests.fakes import FixedClock, memory_uow

SAMPLES = Path(__file__).parents[1] / "samples" / "hl7"
NOW = datetime(2024, 3, 15, 8, 30, tzinfo=UTC)


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


class FakeIntake:
    """The workflow's message policy on an in-memory journal; applying only records commands.

    Journaling, applying and settling fail on demand (fail_journal, fail_apply, fail_settle).
    """

    def __init__(self) -> None:
        self.applied: list[tuple[int, list[cmd.Command]]] = []
        self.fail_apply: Exception | None = None
        self.fail_journal: Exception | None = None
        self.fail_settle: Exception | None = None
        self._uow = memory_uow()
        self._reception = MessageReception(self._unit_of_work, FixedClock(NOW), self._apply)

    def receive(self, received: ReceivedMessage, answer: Answer) -> Receipt:
        receipt = self._reception.receive(received, answer)
        if receipt.outcome.status is MessageStatus.APPLIED:
            self.applied.append((receipt.outcome.entry_id, list(received.commands)))
        return receipt

    @property
    def entries(self) -> dict[int, JournalEntry]:
        with self._uow(read_only=True) as uow:
            found: dict[int, JournalEntry] = {}
            while (entry := uow.journal.get(len(found) + 1)) is not None:
                found[entry.id] = entry
            return found

    def _unit_of_work(self, *, read_only: bool = False) -> SqlUnitOfWork:
        return _FailingUnitOfWork(self, self._uow.engine, read_only=read_only)

    def _apply(
        self, uow: UnitOfWork, message: InboundMessage, commands: Sequence[cmd.Command]
    ) -> None:
        if self.fail_apply is not None:
            raise self.fail_apply


class _FailingUnitOfWork(SqlUnitOfWork):
    def __init__(self, intake: FakeIntake, engine: sa.Engine, *, read_only: bool) -> None:
        super().__init__(engine, read_only=read_only)
        self._intake = intake

    def __enter__(self) -> SqlUnitOfWork:
        uow = super().__enter__()
        journal, intake = uow.journal, self._intake
        add_entry, settle_entry = journal.add, journal.settle

        def add(
            message: InboundMessage, received_at: datetime, *, reuses: int | None = None
        ) -> int:
            if intake.fail_journal is not None:
                raise intake.fail_journal
            return add_entry(message, received_at, reuses=reuses)

        def settle(
            entry_id: int, status: MessageStatus, ack: bytes, error: str = "", *, at: datetime
        ) -> None:
            if intake.fail_settle is not None and status is not MessageStatus.APPLIED:
                raise intake.fail_settle
            settle_entry(entry_id, status, ack, error, at=at)

        journal.add = add  # type: ignore[method-assign]
        journal.settle = settle  # type: ignore[method-assign]
        return uow


def service(intake: FakeIntake, field_map: FieldMap | None = None) -> Hl7Service:
    return Hl7Service(intake, field_map, "PACSFLOW", "RADIOLOGY", clock=FixedClock().now)


def answer(intake: FakeIntake, raw: bytes) -> Message:
    return parse(service(intake).handle(raw, "127.0.0.1:5000"))


def test_aa_is_sent_after_apply_and_recorded_with_it() -> None:
    intake = FakeIntake()

    reply = service(intake).handle(sample("orm_o01_nw.hl7"), "ris:1")

    ack = parse(reply)
    assert ack.get("MSA-1") == "AA"
    assert ack.get("MSA-2") == "ORM0001"
    assert ack.msh.receiving_application == ("RIS",)
    ((entry_id, commands),) = intake.applied
    assert isinstance(commands[0], cmd.PlaceOrder)
    entry = intake.entries[entry_id]
    assert entry.status is MessageStatus.APPLIED
    assert entry.ack == reply
    assert entry.message.peer == "ris:1"
    assert (entry.message.sending_application, entry.message.sending_facility) == (
        "RIS",
        "RADIOLOGY",
    )
    assert (entry.message.control_id, entry.message.message_type) == ("ORM0001", "ORM^O01")
    assert entry.message.raw == sample("orm_o01_nw.hl7")


def test_duplicate_control_id_gets_the_earlier_ack_and_is_not_applied_again() -> None:
    intake = FakeIntake()
    hl7 = service(intake)

    first = hl7.handle(sample("adt_a01_v231.hl7"), "his:1")
    second = hl7.handle(sample("adt_a01_v231.hl7"), "his:1")

    assert second == first
    assert len(intake.applied) == 1
    assert [e.status for e in intake.entries.values()] == [
        MessageStatus.APPLIED,
        MessageStatus.DUPLICATE,
    ]


def test_same_control_id_from_another_sender_is_not_a_duplicate() -> None:
    intake = FakeIntake()
    hl7 = service(intake)

    hl7.handle(sample("adt_a01_v231.hl7"), "his:1")
    hl7.handle(sample("adt_a01_v231.hl7").replace(b"|EPIC|", b"|CERNER|"), "his:2")

    assert len(intake.applied) == 2


def test_duplicate_of_a_rejected_message_gets_the_same_rejection() -> None:
    intake = FakeIntake()
    raw = sample("adt_a04_utf8.hl7").replace(b"MRN88888^^^GENHOSP", b"")
    hl7 = service(intake)

    first = hl7.handle(raw, "his:1")
    second = hl7.handle(raw, "his:1")

    assert second == first
    assert parse(first).get("MSA-1") == "AE"


def test_missing_pid_3_is_ae_with_err_101() -> None:
    intake = FakeIntake()
    raw = sample("adt_a04_utf8.hl7").replace(b"MRN88888^^^GENHOSP", b"")

    ack = answer(intake, raw)

    assert ack.get("MSA-1") == "AE"
    assert ack.get("MSA-3") == "PID-3 (patient identifier) is required"
    assert ack.get("ERR-3") == "101"
    assert ack.get("ERR-2") == "PID"
    assert ack.get("ERR-2.3") == "3"
    assert ack.get("ERR-8") == "PID-3 (patient identifier) is required"
    assert not intake.applied
    (entry,) = intake.entries.values()
    assert entry.status is MessageStatus.REJECTED
    assert "MissingIdentifier" in entry.error


def test_unknown_message_type_is_ae_200() -> None:
    ack = answer(FakeIntake(), sample("adt_a01_v231.hl7").replace(b"ADT^A01", b"SIU^S12"))

    assert ack.get("MSA-1") == "AE"
    assert ack.get("ERR-1.4.1") == "200"  # v2.3.1: ERR-1 carries the code
    assert ack.get("ERR-1.1") == "MSH"
    assert ack.get("ERR-1.3") == "9"


def test_unknown_event_is_ae_201() -> None:
    ack = answer(FakeIntake(), sample("adt_a04_utf8.hl7").replace(b"ADT^A04", b"ADT^A03"))

    assert ack.get("ERR-3") == "201"


@pytest.mark.parametrize("control", ["XR", "CR", "SR"])
def test_an_unsupported_order_control_is_ae_103_table_value_not_found(control: str) -> None:
    raw = sample("omi_o23_v251.hl7").replace(b"\rORC|NW|", f"\rORC|{control}|".encode())

    ack = answer(FakeIntake(), raw)

    assert ack.get("MSA-1") == "AE"
    assert ack.get("ERR-3") == "103"
    assert (ack.get("ERR-2.1"), ack.get("ERR-2.3")) == ("ORC", "1")
    assert ack.get("MSA-3").startswith(f"ORC-1 (order control) '{control}' is not one")


def test_error_texts_quote_values_as_received() -> None:
    raw = b"MSH|^~\\~|HIS|H|PACSFLOW|R|20240315083000||ADT^A01|X1|P|2.5\rPID|1||9^^^H\r"

    ack = answer(FakeIntake(), raw)

    assert ack.get("MSA-1") == "AE"
    assert ack.get("MSA-3").startswith("MSH-2 (encoding characters) '^~\\~' must be distinct")
    assert ack.get("ERR-8") == ack.get("MSA-3")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UnknownOrder("no order has accession number 'ACC1001'"), "204"),
        (DuplicateAccession("accession number ACC1001 already belongs to another"), "205"),
    ],
)
def test_conflicting_state_is_ae_with_key_codes(error: Exception, code: str) -> None:
    intake = FakeIntake()
    intake.fail_apply = error

    ack = answer(intake, sample("omi_o23_v251.hl7"))

    assert ack.get("MSA-1") == "AE"
    assert ack.get("ERR-3") == code
    assert ack.get("MSA-3") == str(error)
    (entry,) = intake.entries.values()
    assert entry.status is MessageStatus.REJECTED


@pytest.mark.parametrize(
    "error", [TransientError("database is locked"), RuntimeError("connection reset")]
)
def test_failure_to_apply_is_ar_207_and_settled_failed(error: Exception) -> None:
    intake = FakeIntake()
    intake.fail_apply = error

    ack = answer(intake, sample("omi_o23_v251.hl7"))

    assert ack.get("MSA-1") == "AR"
    assert ack.get("ERR-3") == "207"
    assert "resend" in ack.get("MSA-3")
    (entry,) = intake.entries.values()
    assert entry.status is MessageStatus.FAILED
    assert type(error).__name__ in entry.error


def test_failed_message_is_applied_when_resent() -> None:
    intake = FakeIntake()
    intake.fail_apply = TransientError("database is locked")
    hl7 = service(intake)
    hl7.handle(sample("orm_o01_nw.hl7"), "ris:1")
    intake.fail_apply = None

    ack = parse(hl7.handle(sample("orm_o01_nw.hl7"), "ris:1"))

    assert ack.get("MSA-1") == "AA"
    assert len(intake.applied) == 1


def test_ar_is_still_sent_when_settling_fails() -> None:
    intake = FakeIntake()
    intake.fail_apply = TransientError("database is locked")
    intake.fail_settle = TransientError("database is still locked")

    ack = answer(intake, sample("orm_o01_nw.hl7"))

    assert ack.get("MSA-1") == "AR"


def test_ar_when_the_journal_is_unavailable() -> None:
    intake = FakeIntake()
    intake.fail_journal = TransientError("disk full")

    ack = answer(intake, sample("orm_o01_nw.hl7"))

    assert ack.get("MSA-1") == "AR"
    assert ack.get("MSA-2") == "ORM0001"
    assert not intake.applied


def test_garbage_bytes_are_journaled_and_answered_ae() -> None:
    intake = FakeIntake()

    ack = answer(intake, b"\x00\x01 this is not HL7")

    assert ack.get("MSA-1") == "AE"
    assert ack.get("ERR-3") == "100"
    (entry,) = intake.entries.values()
    assert entry.status is MessageStatus.REJECTED
    assert entry.message.raw == b"\x00\x01 this is not HL7"


def test_unparsable_message_is_journaled_with_what_msh_says() -> None:
    intake = FakeIntake()
    raw = b"MSH|^~\\&|LAB|EAST|||||ORM^O01|C77|P|2.5\rpid|bad\r"

    ack = answer(intake, raw)

    assert ack.get("MSA-1") == "AE"
    assert ack.get("MSA-2") == "C77"
    assert ack.get("ERR-3") == "102"
    (entry,) = intake.entries.values()
    assert (entry.message.sending_application, entry.message.control_id) == ("LAB", "C77")
    assert entry.status is MessageStatus.REJECTED


def test_unparsable_message_is_ar_when_the_journal_is_unavailable() -> None:
    intake = FakeIntake()
    intake.fail_journal = TransientError("disk full")

    ack = answer(intake, b"garbage")

    assert ack.get("MSA-1") == "AR"


def test_unsupported_charset_is_ae_at_msh_18() -> None:
    intake = FakeIntake()
    raw = sample("adt_a01_latin1.hl7").replace(b"8859/1", b"ISO IR87")

    ack = answer(intake, raw)

    assert ack.get("MSA-1") == "AE"
    assert ack.get("ERR-1.1") == "MSH"
    assert ack.get("ERR-1.3") == "18"
    assert "MSH-18 (character set)" in ack.get("MSA-3")


def test_enhanced_mode_gets_ca() -> None:
    raw = sample("omi_o23_v251.hl7").replace(b"2.5.1||||||UNICODE", b"2.5.1|||AL|NE||UNICODE")

    ack = answer(FakeIntake(), raw)

    assert ack.get("MSA-1") == "CA"


def test_site_field_map_is_used() -> None:
    intake = FakeIntake()
    field_map = FieldMap().with_overrides({"ORM.accession_number": "OBR-3"})

    service(intake, field_map).handle(sample("orm_o01_ca.hl7"), "ris:1")

    assert intake.applied[0][1] == [cmd.CancelOrder(AccessionNumber("FIL2001"))]


def test_a_senders_own_field_map_applies_to_that_sender_only() -> None:
    maps = SenderFieldMaps.from_settings(
        {"accession_fallbacks": "", "RIS^RADIOLOGY": {"accession_fallbacks": "ORC-2.1"}}
    )
    hl7 = Hl7Service(FakeIntake(), maps, "PACSFLOW", "RADIOLOGY", clock=FixedClock().now)
    without_obr_18 = sample("orm_o01_nw.hl7").replace(b"|ACC1001|", b"||")

    own = parse(hl7.handle(without_obr_18, "ris:1"))
    other = parse(hl7.handle(without_obr_18.replace(b"|RIS|RADIOLOGY|", b"|RIS2|RADIOLOGY|"), "x"))

    assert own.get("MSA-1") == "AA"
    assert (other.get("MSA-1"), other.get("ERR-1.4.1")) == ("AE", "101")


def test_a_senders_field_map_with_an_unknown_key_names_the_sender() -> None:
    with pytest.raises(ValueError, match="RIS2"):
        SenderFieldMaps.from_settings({"RIS2": {"accesion_number": "OBR-3"}})


@settings(database=None, deadline=None, max_examples=300)
@given(raw=st.binary(max_size=400) | st.binary(max_size=200).map(lambda b: b"MSH|^~\\&|" + b))
def test_handle_never_raises_and_always_answers(raw: bytes) -> None:
    intake = FakeIntake()

    reply = service(intake).handle(raw, "fuzz:1")

    ack = parse(reply)
    assert ack.get("MSA-1") in ("AA", "AE", "AR", "CA", "CE", "CR")


def test_service_answers_over_mllp() -> None:
    intake = FakeIntake()
    server = MllpServer("127.0.0.1", 0, service(intake).handle)
    server.start()
    try:
        with MllpClient("127.0.0.1", server.port, 5.0) as client:
            first = parse(client.send(sample("adt_a04_utf8.hl7")))
            second = parse(client.send(b"not hl7"))
    finally:
        server.stop()

    assert first.get("MSA-1") == "AA"
    assert second.get("MSA-1") == "AE"
    assert intake.entries[1].message.peer.startswith("127.0.0.1:")


def test_retransmitted_unparsable_message_gets_the_stored_ae() -> None:
    intake = FakeIntake()
    hl7 = service(intake)
    raw = b"MSH|^~\\&|LAB|EAST|||||ORM^O01|C78|P|2.5\rpid|bad\r"

    first = hl7.handle(raw, "lab:1")
    second = hl7.handle(raw, "lab:1")

    assert second == first
    assert [e.status for e in intake.entries.values()] == [
        MessageStatus.REJECTED,
        MessageStatus.DUPLICATE,
    ]
