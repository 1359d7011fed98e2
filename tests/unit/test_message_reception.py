"""The inbound message policy as one use case: journal, retransmission, apply, settle."""

from __future__ import annotations

import pytest

from pacsflow.domain import commands as cmd
from pacsflow.domain.errors import TransientError, UnknownOrder
from pacsflow.domain.messages import InboundMessage, MessageStatus
from pacsflow.domain.orders import AccessionNumber
from pacsflow.workflow.intake import Intake
from pacsflow.workflow.messages import MessageOutcome, ReceivedMessage
from tests import factories as f
from tests.fakes import FixedClock, memory_uow


@pytest.fixture
def intake():
    return Intake(memory_uow(), FixedClock())


def _message(control_id: str, digest: str) -> InboundMessage:
    return InboundMessage(
        raw=b"MSH", peer="ris:1", sending_application="RIS", control_id=control_id, digest=digest
    )


class Answers:
    """The adapter's side: one distinct answer per call, and what each was for."""

    def __init__(self) -> None:
        self.outcomes: list[MessageOutcome] = []

    def __call__(self, outcome: MessageOutcome) -> bytes:
        self.outcomes.append(outcome)
        return f"ANSWER {len(self.outcomes)} {outcome.status}".encode()


def test_retransmission_gets_the_stored_answer_without_a_new_one(intake):
    answers = Answers()
    register = cmd.RegisterPatient(f.patient())
    first = intake.receive(ReceivedMessage(_message("C1", "d1"), [register]), answers)

    again = intake.receive(ReceivedMessage(_message("C1", "d1"), [register]), answers)

    assert first.answer == b"ANSWER 1 applied"
    assert again.answer == first.answer
    assert again.outcome.status is MessageStatus.DUPLICATE
    assert again.outcome.earlier is not None
    assert again.outcome.earlier.id == first.outcome.entry_id
    assert len(answers.outcomes) == 1


def test_reused_control_id_with_other_content_is_applied_as_new(intake):
    answers = Answers()
    first = intake.receive(
        ReceivedMessage(_message("C2", "d1"), [cmd.RegisterPatient(f.patient())]), answers
    )

    other = intake.receive(
        ReceivedMessage(_message("C2", "d2"), [cmd.RegisterPatient(f.patient())]), answers
    )

    assert other.outcome.status is MessageStatus.APPLIED
    assert other.outcome.reused is not None
    assert other.outcome.reused.id == first.outcome.entry_id
    assert other.answer == b"ANSWER 2 applied"


def test_a_translation_error_is_journaled_rejected_with_the_adapters_answer(intake):
    error = UnknownOrder("no order has accession number 'X'")

    receipt = intake.receive(ReceivedMessage(_message("C3", "d3"), error=error), Answers())

    assert receipt.outcome.status is MessageStatus.REJECTED
    assert receipt.outcome.error is error
    assert receipt.answer == b"ANSWER 1 rejected"


def test_a_command_that_cannot_be_applied_is_rejected_and_rolled_back(intake):
    cancel = cmd.CancelOrder(AccessionNumber(f.unique("ACC")))

    receipt = intake.receive(ReceivedMessage(_message("C4", "d4"), [cancel]), Answers())

    assert receipt.outcome.status is MessageStatus.REJECTED
    assert isinstance(receipt.outcome.error, UnknownOrder)
    assert receipt.answer == b"ANSWER 2 rejected"  # the applied answer was rolled back


def test_a_transient_failure_is_failed_and_the_resend_is_applied(intake):
    answers = Answers()
    register = cmd.RegisterPatient(f.patient())
    busy = TransientError("database is locked")
    failed = intake.receive(ReceivedMessage(_message("C5", "d5"), error=busy), answers)

    resent = intake.receive(ReceivedMessage(_message("C5", "d5"), [register]), answers)

    assert failed.outcome.status is MessageStatus.FAILED
    assert resent.outcome.status is MessageStatus.APPLIED
