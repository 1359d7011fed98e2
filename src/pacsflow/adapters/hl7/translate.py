"""HL7 v2 messages -> pacsflow commands (IHE Radiology TF-2, RAD-1/4/12/13).

Dispatch is on MSH-9 through one table; each message family has its module:
translate_adt.py (identity), translate_orders.py (ORM/OMI), translate_results.py (ORU),
and values.py the field values they share.

HL7 timestamps without an offset are read in `assume_zone` (UTC unless configured): HL7 v2
leaves them in the sender's local time, which the message does not state.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, tzinfo

from pacsflow.adapters.hl7 import translate_adt as adt
from pacsflow.adapters.hl7 import translate_orders as orders
from pacsflow.adapters.hl7 import translate_results as results
from pacsflow.adapters.hl7.codec import Message
from pacsflow.adapters.hl7.errors import UnsupportedEvent
from pacsflow.adapters.hl7.field_map import (
    FIELD_MAP_KEYS,
    OMI_DEFAULTS,
    ORM_DEFAULTS,
    ORU_DEFAULTS,
    FieldMap,
    OrderFieldLocations,
)
from pacsflow.adapters.hl7.translate_adt import read_patient
from pacsflow.adapters.hl7.values import parse_timestamp
from pacsflow.domain import commands as cmd
from pacsflow.domain.errors import UnsupportedMessage

Translator = Callable[[Message, FieldMap, tzinfo], list[cmd.Command]]


def translate(
    message: Message, field_map: FieldMap | None = None, *, assume_zone: tzinfo = UTC
) -> list[cmd.Command]:
    """The commands a message asks for; InvalidInput (with the position) when it cannot."""
    header = message.msh
    handler = _HANDLERS.get((header.message_code, header.trigger_event))
    if handler is None:
        if any(code == header.message_code for code, _ in _HANDLERS):
            raise UnsupportedEvent(
                f"MSH-9 (message type) {header.message_type}: pacsflow does not handle "
                f"{header.message_code} event {header.trigger_event or '(empty)'}",
                location="MSH-9.2",
            )
        raise UnsupportedMessage(
            f"MSH-9 (message type) {header.message_type or '(empty)'} is not handled; "
            "pacsflow takes ADT^A01/A04/A05/A08/A24/A31/A37/A40/A47, ORM^O01, OMI^O23 and "
            "ORU^R01",
            location="MSH-9",
        )
    return handler(message, field_map or FieldMap(), assume_zone)


_HANDLERS: dict[tuple[str, str], Translator] = {
    ("ADT", "A01"): adt.register,
    ("ADT", "A04"): adt.register,
    ("ADT", "A05"): adt.register,
    ("ADT", "A08"): adt.update,
    ("ADT", "A24"): adt.link,
    ("ADT", "A31"): adt.update,
    ("ADT", "A37"): adt.unlink,
    ("ADT", "A40"): adt.merge,
    ("ADT", "A47"): adt.change_identifier,
    ("ORM", "O01"): orders.orm,
    ("OMI", "O23"): orders.omi,
    ("ORU", "R01"): results.oru,
}


__all__ = [
    "FIELD_MAP_KEYS",
    "OMI_DEFAULTS",
    "ORM_DEFAULTS",
    "ORU_DEFAULTS",
    "FieldMap",
    "OrderFieldLocations",
    "parse_timestamp",
    "read_patient",
    "translate",
]
