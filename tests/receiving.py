"""Commands applied through intake as if an HL7 message had carried them."""

from __future__ import annotations

from pacsflow.domain import commands as cmd
from pacsflow.domain.messages import InboundMessage
from pacsflow.workflow.intake import Intake
from pacsflow.workflow.messages import Receipt, ReceivedMessage
from tests import factories as f


def receive(
    intake: Intake,
    *commands: cmd.Command,
    control_id: str | None = None,
    peer: str = "t",
    sending_application: str = "",
    answer: bytes = b"AA",
) -> Receipt:
    """Receive a message carrying the commands; raise what kept it from being applied."""
    message = InboundMessage(
        raw=b"MSH",
        peer=peer,
        sending_application=sending_application,
        control_id=control_id or f.unique("C"),
    )
    receipt = intake.receive(ReceivedMessage(message, commands), lambda _: answer)
    if receipt.outcome.error is not None:
        raise receipt.outcome.error
    return receipt


__all__ = ["receive"]
