"""Audit events as DICOM audit messages (PS3.15 A.5.1) and RFC 5424 syslog frames.

The XML follows the DICOM schema: EventIdentification, one ActiveParticipant per participant,
AuditSourceIdentification, then one ParticipantObjectIdentification per object. Coded values
carry csd-code, codeSystemName and originalText (all three are required by the schema).
Accession numbers are `Accession` children of the study object, as in the current schema
(older dcm4che releases wrapped them in ParticipantObjectDescription).

The frame is an RFC 5424 message as DICOM A.6 asks: facility 10 (security/authorization),
severity 5 (notice) giving PRI <85>, APP-NAME "pacsflow", MSGID "IHE+RFC-3881", no
structured data, and the XML as a UTF-8 MSG that starts with a BOM.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Final

from pacsflow.domain.audit import AuditEvent, Code, ObjectKind, ParticipantObject

FACILITY_AUTH: Final = 10
SEVERITY_NOTICE: Final = 5
MSGID: Final = "IHE+RFC-3881"
APP_NAME: Final = "pacsflow"
_BOM: Final = b"\xef\xbb\xbf"

#: Application Server Process or Thread (RFC 3881 audit source type 4).
_SOURCE_TYPE: Final = Code("4", "DCM", "Application Server Process or Thread")

# ParticipantObjectTypeCode, ParticipantObjectTypeCodeRole and ParticipantObjectIDTypeCode
# for each kind of object (RFC 3881 5.5, PS3.15 A.5.3).
_OBJECT_CODES: Final[dict[ObjectKind, tuple[str, str, Code]]] = {
    ObjectKind.PATIENT: ("1", "1", Code("2", "RFC-3881", "Patient Number")),
    ObjectKind.STUDY: ("2", "3", Code("110180", "DCM", "Study Instance UID")),
    ObjectKind.QUERY: ("2", "24", Code("110181", "DCM", "SOP Class UID")),
    ObjectKind.USER: ("1", "11", Code("11", "RFC-3881", "User Identifier")),
    ObjectKind.RESOURCE: ("2", "13", Code("12", "RFC-3881", "URI")),
}

#: Study Root Query/Retrieve Information Model - FIND, for queries that name no SOP class.
_STUDY_ROOT_FIND: Final = "1.2.840.10008.5.1.4.1.2.2.1"

# Characters XML 1.0 cannot carry at all, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)


def _coded(parent: ET.Element, tag: str, code: Code) -> ET.Element:
    return ET.SubElement(
        parent,
        tag,
        {
            "csd-code": _text(code.code),
            "codeSystemName": _text(code.system),
            "originalText": _text(code.meaning),
        },
    )


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def network_access_point_type(point: str) -> str:
    """NetworkAccessPointTypeCode: 2 for an IP address, 5 for a URI, 1 for a machine name."""
    try:
        ipaddress.ip_address(point.strip("[]"))
    except ValueError:
        return "5" if "://" in point else "1"
    return "2"


def _object_id(obj: ParticipantObject) -> str:
    if obj.kind is ObjectKind.PATIENT and obj.issuer:
        return f"{obj.id}^^^{obj.issuer}"  # HL7 CX, as IHE ATNA profiles write patient ids
    if obj.kind is ObjectKind.QUERY and not obj.id:
        return _STUDY_ROOT_FIND
    return obj.id


def _object(root: ET.Element, obj: ParticipantObject) -> None:
    type_code, role, id_type = _OBJECT_CODES[obj.kind]
    element = ET.SubElement(
        root,
        "ParticipantObjectIdentification",
        {
            "ParticipantObjectID": _text(_object_id(obj)),
            "ParticipantObjectTypeCode": type_code,
            "ParticipantObjectTypeCodeRole": role,
        },
    )
    _coded(element, "ParticipantObjectIDTypeCode", id_type)
    if obj.kind is ObjectKind.QUERY:
        encoded = base64.b64encode(obj.query.encode("utf-8")).decode("ascii")
        ET.SubElement(element, "ParticipantObjectQuery").text = encoded
        ET.SubElement(
            element,
            "ParticipantObjectDetail",
            {"type": "QueryEncoding", "value": base64.b64encode(b"UTF-8").decode("ascii")},
        )
    elif obj.name:
        ET.SubElement(element, "ParticipantObjectName").text = _text(obj.name)
    for accession in obj.accession_numbers:
        ET.SubElement(element, "Accession", {"Number": _text(accession)})


def audit_message(event: AuditEvent) -> bytes:
    """The event as a DICOM audit message: UTF-8 XML with its declaration."""
    root = ET.Element("AuditMessage")
    identification = ET.SubElement(
        root,
        "EventIdentification",
        {
            "EventActionCode": event.action.value,
            "EventDateTime": _timestamp(event.time),
            "EventOutcomeIndicator": str(int(event.outcome)),
        },
    )
    _coded(identification, "EventID", event.event_id.coded)
    if event.event_type is not None:
        _coded(identification, "EventTypeCode", event.event_type)
    if event.outcome_description:
        description = ET.SubElement(identification, "EventOutcomeDescription")
        description.text = _text(event.outcome_description)
    for p in event.participants:
        attrs = {"UserID": _text(p.user_id), "UserIsRequestor": str(p.is_requestor).lower()}
        if p.alternative_user_id:
            attrs["AlternativeUserID"] = _text(p.alternative_user_id)
        if p.user_name:
            attrs["UserName"] = _text(p.user_name)
        if p.network_access_point:
            attrs["NetworkAccessPointID"] = _text(p.network_access_point)
            attrs["NetworkAccessPointTypeCode"] = network_access_point_type(p.network_access_point)
        participant = ET.SubElement(root, "ActiveParticipant", attrs)
        if p.role is not None:
            _coded(participant, "RoleIDCode", p.role)
    source_attrs = {"AuditSourceID": _text(event.source.id)}
    if event.source.enterprise_site:
        source_attrs["AuditEnterpriseSiteID"] = _text(event.source.enterprise_site)
    source = ET.SubElement(root, "AuditSourceIdentification", source_attrs)
    _coded(source, "AuditSourceTypeCode", _SOURCE_TYPE)
    for obj in event.objects:
        _object(root, obj)
    body: bytes = ET.tostring(root, encoding="utf-8")
    return b'<?xml version="1.0" encoding="UTF-8"?>' + body


_PRINTABLE = re.compile(r"[^\x21-\x7e]")


def _header_field(value: str, limit: int) -> str:
    """A header field as RFC 5424 6.2 allows: printable US-ASCII, bounded, '-' when empty."""
    cleaned = _PRINTABLE.sub("", value)[:limit]
    return cleaned or "-"


def syslog_frame(
    event: AuditEvent,
    *,
    hostname: str,
    procid: str = "-",
    app_name: str = APP_NAME,
) -> bytes:
    """The event as one RFC 5424 syslog message (PRI <85>, MSGID IHE+RFC-3881, BOM + XML)."""
    pri = FACILITY_AUTH * 8 + SEVERITY_NOTICE
    header = " ".join(
        (
            f"<{pri}>1",
            _timestamp(event.time),
            _header_field(hostname, 255),
            _header_field(app_name, 48),
            _header_field(procid, 128),
            MSGID,
            "-",
        )
    )
    return header.encode("ascii") + b" " + _BOM + audit_message(event)


def octet_counted(message: bytes) -> bytes:
    """A syslog message framed for TLS transport by octet counting (RFC 5425 4.3)."""
    return str(len(message)).encode("ascii") + b" " + message


__all__ = [
    "APP_NAME",
    "FACILITY_AUTH",
    "MSGID",
    "SEVERITY_NOTICE",
    "audit_message",
    "network_access_point_type",
    "octet_counted",
    "syslog_frame",
]
