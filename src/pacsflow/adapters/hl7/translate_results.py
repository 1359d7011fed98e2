"""ORU^R01 -> the report a reporting system sends (its status and text)."""

from __future__ import annotations

from datetime import tzinfo

from pacsflow.adapters.hl7.codec import Message, Segment
from pacsflow.adapters.hl7.errors import (
    RequiredFieldMissing,
)
from pacsflow.adapters.hl7.field_map import (
    FieldMap,
)
from pacsflow.adapters.hl7.translate_adt import patient_of
from pacsflow.adapters.hl7.translate_orders import OrderScope, first_accession
from pacsflow.adapters.hl7.values import field_text as _text
from pacsflow.adapters.hl7.values import parse_timestamp
from pacsflow.domain import commands as cmd
from pacsflow.domain.errors import MissingIdentifier
from pacsflow.domain.reports import Report, ReportStatus, status_from_code

_TEXT_TYPES = frozenset({"TX", "FT", "ST", "CE", "CWE", ""})
#: OBX-3 codes that carry a Study Instance UID instead of text (DCM 113014, or the keyword).
_STUDY_UID_CODES = frozenset({"113014", "STUDYINSTANCEUID", "STUDY INSTANCE UID"})
#: Statuses whose report carries results (HL7 table 0123 P, F, C): no text, no report.
_STATUSES_WITH_TEXT = frozenset(
    {ReportStatus.PRELIMINARY, ReportStatus.FINAL, ReportStatus.CORRECTED}
)
#: ED-4 encodings whose ED-5 data is readable text as sent (table 0299 A; "ASCII" in use).
_TEXT_ENCODINGS = frozenset({"", "A", "ASCII"})


def _observation_text(obx: Segment) -> list[str]:
    """The report lines of one OBX: OBX-5 of a text type, or of an ED carrying text."""
    value_type = _text(obx.get(2)).upper()
    if value_type in _TEXT_TYPES:
        return [_text(r.get(1)) for r in obx.repetitions(5)]
    if value_type == "ED":
        return [
            _text(r.get(5))
            for r in obx.repetitions(5)
            if _text(r.get(4)).upper() in _TEXT_ENCODINGS
            and (_text(r.get(2)).upper() == "TEXT" or _text(r.get(3)).lower().startswith("text/"))
        ]
    return []


def oru(message: Message, field_map: FieldMap, zone: tzinfo) -> list[cmd.Command]:
    """ORU^R01: one report version per OBR (its OBX lines are the text), IHE RAD-28 style.

    Accession number: the field map's chain, read in the OBR and the ORC before it (by
    default OBR-18 as in the order, else the filler order number ORC-3, OBR-3); Study
    Instance UID: ZDS-1, or an OBX whose OBX-3 is 113014 (DCM); status OBR-25; interpreter
    OBR-32; observation time OBR-7.
    """
    pid = message.segment("PID")
    patient = patient_of(pid).primary if pid is not None and _text(pid.get(3)) else None
    commands: list[cmd.Command] = []
    zds_uid = _text(message.get("ZDS-1.1"))
    groups: list[list[Segment]] = []
    orders: list[tuple[Segment, ...]] = []  # each OBR with the ORC just before it, if any
    orc: tuple[Segment, ...] = ()
    for segment in message.segments:
        if segment.name == "ORC":
            orc = (segment,)
        elif segment.name == "OBR":
            groups.append([segment])
            orders.append((*orc, segment))
            orc = ()
        elif groups and segment.name in ("OBX", "NTE", "ZDS"):
            groups[-1].append(segment)
    if not groups:
        raise MissingIdentifier("ORU^R01 needs an OBR segment", location="OBR")
    for n, ((obr, *rest), order) in enumerate(zip(groups, orders, strict=True), start=1):
        where = f"OBR[{n}]"
        lines: list[str] = []
        study_uid = zds_uid
        for seg in rest:
            if seg.name == "ZDS":
                study_uid = _text(seg.get(1)) or study_uid
            elif seg.name == "OBX":
                code = (_text(seg.get(3, 1)) or _text(seg.get(3, 2))).upper()
                if code in _STUDY_UID_CODES or _text(seg.get(3, 2)).upper() in _STUDY_UID_CODES:
                    study_uid = _text(seg.get(5)) or study_uid
                else:
                    lines.extend(_observation_text(seg))
            elif seg.name == "NTE":
                lines.extend(_text(r.get(1)) for r in seg.repetitions(3))
        status_code = _text(obr.get(25))
        if not status_code:
            raise MissingIdentifier(f"{where}-25 (result status) is required", location="OBR-25")
        text = "\n".join(lines).strip("\n")
        status = status_from_code(status_code)
        if not text.strip() and status in _STATUSES_WITH_TEXT:
            raise RequiredFieldMissing(
                f"{where} (result status {status_code}) has no observation text: no OBX-5 of a "
                "text type (TX, FT, ST, CE, CWE, or ED with text) and no NTE; a report needs "
                "its text",
                location="OBX-5" if any(seg.name == "OBX" for seg in rest) else "OBX",
            )
        interpreter = " ".join(
            part for part in (_text(obr.get(32, 1, 2)), _text(obr.get(32, 1, 3))) if part
        ) or _text(obr.get(32, 1, 1))
        commands.append(
            cmd.ReceiveReport(
                Report(
                    accession_number=first_accession(OrderScope(order, ()), field_map.oru),
                    status=status,
                    text=text,
                    patient=patient,
                    study_instance_uid=study_uid,
                    radiologist=interpreter,
                    observed_at=parse_timestamp(obr.get(7), "OBR-7", zone),
                    report_id=_text(obr.get(3)),
                )
            )
        )
    return commands


__all__ = ["oru"]
