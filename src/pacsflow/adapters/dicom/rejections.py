"""IOCM rejection notes on the wire: a Key Object Selection Document read as a Rejection.

IHE RAD TF-3 (IOCM, RAD-66): the note is a Key Object Selection Document whose title, the
Concept Name Code Sequence (0040,A043), is a rejection code of PS3.16 CID 7010; its Current
Requested Procedure Evidence Sequence (0040,A375) lists the rejected instances, study ->
Referenced Series Sequence (0008,1115) -> Referenced SOP Sequence (0008,1199). A Key Object
Selection with any other title ("Of Interest", ...) is an ordinary clinical object.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset

from pacsflow.adapters.dicom.datasets import Header
from pacsflow.domain.errors import InvalidInput
from pacsflow.domain.rejections import RejectedInstance, Rejection, reason_for
from pacsflow.domain.uids import Uid, is_valid_uid

#: Key Object Selection Document Storage (PS3.4 B.5).
KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"

_EVIDENCE = "CurrentRequestedProcedureEvidenceSequence"
_NOTE_TAGS = ("SOPClassUID", "SOPInstanceUID", "ConceptNameCodeSequence", _EVIDENCE)


def read_rejection(header: Header, path: Path | BinaryIO) -> Rejection | None:
    """The rejection a stored file carries, when it is an IOCM rejection note (else None).

    Only Key Object Selection Documents are read again, for the two sequences the header
    leaves out.
    """
    if str(header.get("SOPClassUID", "")).strip() != KEY_OBJECT_SELECTION:
        return None
    return rejection_of(dcmread(path, stop_before_pixels=True, specific_tags=list(_NOTE_TAGS)))


def rejection_of(ds: Dataset) -> Rejection | None:
    """The rejection a Key Object Selection Document states, or None for another title.

    Raises InvalidInput for a rejection note that names no instance or a malformed UID:
    it cannot be applied as sent.
    """
    if str(ds.get("SOPClassUID", "")).strip() != KEY_OBJECT_SELECTION:
        return None
    titles = ds.get("ConceptNameCodeSequence") or []
    if len(titles) != 1:
        return None
    title = titles[0]
    reason = reason_for(
        str(title.get("CodeValue", "") or ""), str(title.get("CodingSchemeDesignator", "") or "")
    )
    if reason is None:
        return None
    rejected: dict[str, RejectedInstance] = {}
    for study in ds.get(_EVIDENCE) or []:
        study_uid = _uid(study, "StudyInstanceUID")
        for series in study.get("ReferencedSeriesSequence") or []:
            series_uid = _uid(series, "SeriesInstanceUID")
            for sop in series.get("ReferencedSOPSequence") or []:
                sop_uid = _uid(sop, "ReferencedSOPInstanceUID")
                rejected.setdefault(
                    sop_uid,
                    RejectedInstance(
                        study_instance_uid=study_uid,
                        series_instance_uid=series_uid,
                        sop_instance_uid=sop_uid,
                        sop_class_uid=Uid(str(sop.get("ReferencedSOPClassUID", "") or "").strip()),
                    ),
                )
    if not rejected:
        raise InvalidInput(
            f"rejection note ({reason.value}) references no instance", location=_EVIDENCE
        )
    return Rejection(reason, _uid(ds, "SOPInstanceUID"), tuple(rejected.values()))


def _uid(ds: Dataset, keyword: str) -> Uid:
    value = str(ds.get(keyword, "") or "").strip()
    if not is_valid_uid(value):
        raise InvalidInput(
            f"rejection note: {keyword} {value!r} is not a valid UID", location=keyword
        )
    return Uid(value)


__all__ = ["KEY_OBJECT_SELECTION", "read_rejection", "rejection_of"]
