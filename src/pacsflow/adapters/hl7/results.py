"""Results out over MLLP: ORU^R01 for reports, ORM^O01 (SC) for "images available".

ORU^R01: PID, OBR (OBR-3 report id, OBR-4 procedure, OBR-7 observed, OBR-18 accession,
OBR-25 result status, OBR-32 interpreter), OBX 1 with the Study Instance UID (113014^Study
Instance UID^DCM, as a reference), then one TX OBX per report line. Images available:
ORM^O01 with ORC-1 SC and ORC-5 CM, OBR-18 accession and ZDS-1 Study Instance UID (IHE).
The subscriber's acknowledgement decides: AA/CA delivered; AE/AR/CE/CR refused (the reason
from MSA-3 or ERR is kept); no answer, a closed connection or garbage -> try again later.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pacsflow.adapters.hl7.ack import new_control_id
from pacsflow.adapters.hl7.building import (
    FieldValue,
    Repeated,
    encode_message,
    encode_msh,
    encode_segment,
)
from pacsflow.adapters.hl7.codec import parse
from pacsflow.adapters.hl7.mllp import MllpClient
from pacsflow.domain.errors import PacsflowError, PermanentError, TransientError
from pacsflow.domain.reports import STATUS_CODES
from pacsflow.workflow.results import EVENT_REPORT, ResultMessage

log = logging.getLogger(__name__)

_ACCEPTED = frozenset({"AA", "CA"})


@dataclass(frozen=True, slots=True)
class Hl7Subscriber:
    """Where and how one subscriber takes HL7 results."""

    name: str
    host: str
    port: int
    version: str = "2.5.1"
    receiving_application: str = ""
    receiving_facility: str = ""
    timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = None


def _ts(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000") if moment else ""


class MllpResultSender:
    """Sends result messages to subscribers over MLLP and reads their ACKs."""

    def __init__(
        self,
        subscribers: Mapping[str, Hl7Subscriber],
        *,
        app_name: str = "PACSFLOW",
        facility: str = "PACSFLOW",
        clock: Callable[[], datetime],
    ) -> None:
        self._subscribers = dict(subscribers)
        self._app = app_name
        self._facility = facility
        self._clock = clock

    def encode(self, subscriber: Hl7Subscriber, message: ResultMessage, control_id: str) -> bytes:
        """The HL7 message for one delivery."""
        is_report = message.event == EVENT_REPORT
        structure = ("ORU", "R01", "ORU_R01") if is_report else ("ORM", "O01", "ORM_O01")
        msh = encode_msh(
            [
                self._app,
                self._facility,
                subscriber.receiving_application,
                subscriber.receiving_facility,
                _ts(self._clock()),
                "",
                structure,
                control_id,
                "P",
                subscriber.version,
                "",
                "",
                "AL",
                "NE",
                "",
                "UNICODE UTF-8",
            ]
        )
        segments = [msh, encode_segment("PID", self._pid(message))]
        study = message.study
        order = message.order
        procedure: FieldValue = ""
        if order is not None and order.procedure_code is not None:
            code = order.procedure_code
            procedure = (code.value, code.meaning, code.scheme)
        elif study.study_description:
            procedure = ("", study.study_description)
        if is_report:
            report = message.report
            assert report is not None, "a report delivery carries its report"
            obr: list[FieldValue] = [""] * 32
            obr[0] = "1"
            obr[1] = order.placer_order_number if order else ""
            obr[2] = report.report_id or (order.filler_order_number if order else "")
            obr[3] = procedure
            obr[6] = _ts(report.observed_at)
            obr[17] = study.accession_number
            obr[24] = STATUS_CODES.get(report.status, "F")
            obr[31] = (("", report.radiologist),)  # CNN: no ID, the name as family name
            segments.append(encode_segment("OBR", obr))
            segments.append(
                encode_segment(
                    "OBX",
                    [
                        "1",
                        "ST",
                        ("113014", "Study Instance UID", "DCM"),
                        "",
                        study.study_instance_uid,
                        "",
                        "",
                        "",
                        "",
                        "",
                        STATUS_CODES.get(report.status, "F"),
                    ],
                )
            )
            for n, line in enumerate(report.text.split("\n") or [""], start=2):
                segments.append(
                    encode_segment(
                        "OBX",
                        [
                            str(n),
                            "TX",
                            ("GDT", "Report text"),
                            "",
                            line,
                            "",
                            "",
                            "",
                            "",
                            "",
                            STATUS_CODES.get(report.status, "F"),
                        ],
                    )
                )
        else:
            placer = order.placer_order_number if order else ""
            filler = order.filler_order_number if order else ""
            segments.append(encode_segment("ORC", ["SC", placer, filler, "", "CM"]))
            obr = [""] * 18
            obr[0] = "1"
            obr[1] = placer
            obr[2] = filler
            obr[3] = procedure
            obr[17] = study.accession_number
            segments.append(encode_segment("OBR", obr))
            segments.append(encode_segment("ZDS", [(study.study_instance_uid, self._app)]))
        return encode_message(segments, "UNICODE UTF-8")

    def _pid(self, message: ResultMessage) -> list[FieldValue]:
        pid: list[FieldValue] = [""] * 8
        pid[0] = "1"
        patient = message.patient
        identifier = patient.primary if patient else message.study.patient
        if patient is not None:
            pid[2] = Repeated(tuple((i.value, "", "", i.issuer) for i in patient.identifiers))
            name = patient.demographics.name
            pid[4] = (name.family, name.given, name.middle, name.suffix, name.prefix)
            birth = patient.demographics.birth_date
            pid[6] = birth.strftime("%Y%m%d") if birth else ""
            pid[7] = patient.demographics.sex
        elif identifier is not None:
            pid[2] = (identifier.value, "", "", identifier.issuer)
        return pid

    def send(self, subscriber: str, message: ResultMessage) -> str:
        """Send; the ACK code when accepted (PermanentError when refused)."""
        target = self._subscribers.get(subscriber)
        if target is None:
            raise PermanentError(f"{subscriber} is not a configured result subscriber")
        control_id = f"PF{message.delivery_id}-{new_control_id()[:8]}"
        raw = self.encode(target, message, control_id)
        with MllpClient(
            target.host, target.port, target.timeout, ssl_context=target.ssl_context
        ) as client:
            reply = client.send(raw)
        try:
            ack = parse(reply)
        except PacsflowError as exc:
            raise TransientError(f"{subscriber} answered something that is not HL7: {exc}") from exc
        code = ack.get("MSA-1").strip().upper()
        if code in _ACCEPTED:
            return code
        reason = ack.get("MSA-3") or ack.get("ERR-8") or ack.get("ERR-1")
        if code in ("AE", "AR", "CE", "CR"):
            raise PermanentError(f"{subscriber} answered {code}: {reason or 'no reason given'}")
        raise TransientError(f"{subscriber} answered {code or 'without MSA-1'}")


__all__ = ["Hl7Subscriber", "MllpResultSender"]
