"""Objects whose sequences nest deep (orthanc-tests' 2026-05-06-Deeply-Nested-Sequence.dcm).

pydicom writes the object's top level; the nested Content Sequence is appended as bytes,
since pydicom writes (and reads) nesting recursively and would exhaust Python's stack long
before 100,000 levels. Writing 100,000 levels takes a few milliseconds (3.6 MB).
"""

from __future__ import annotations

import struct
from io import BytesIO
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pacsflow.domain.uids import new_uid

_UNDEFINED = 0xFFFFFFFF
_CONTENT_SEQUENCE = (0x0040, 0xA730)
_ITEM_END = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
_SEQUENCE_END = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


def nested_sequence(depth: int, *, defined_length: bool, implicit: bool = False) -> bytes:
    """A Content Sequence (0040,A730) whose one item holds the next, `depth` levels deep."""
    if implicit:
        innermost = struct.pack("<HHL", 0x0040, 0xA040, 4) + b"TEXT"
        header = 8
    else:
        innermost = struct.pack("<HH2sH", 0x0040, 0xA040, b"CS", 4) + b"TEXT"
        header = 12

    def sequence(length: int) -> bytes:
        if implicit:
            return struct.pack("<HHL", *_CONTENT_SEQUENCE, length)
        return struct.pack("<HH2s2xL", *_CONTENT_SEQUENCE, b"SQ", length)

    def item(length: int) -> bytes:
        return struct.pack("<HHL", 0xFFFE, 0xE000, length)

    if not defined_length:
        opening = sequence(_UNDEFINED) + item(_UNDEFINED)
        return opening * depth + innermost + (_ITEM_END + _SEQUENCE_END) * depth
    # The value of the sequence at level k (0 outermost) holds one item: the next sequence.
    parts = []
    for k in range(depth):
        value = 8 + len(innermost) + (8 + header) * (depth - 1 - k)
        parts.append(sequence(value) + item(value - 8))
    return b"".join(parts) + innermost


def nested_object(
    path: Path,
    depth: int,
    *,
    defined_length: bool = False,
    implicit: bool = False,
    patient_id: str = "DEEP1",
    patient_name: str = "Deep^Nesting",
    accession: str = "",
    study_uid: str | None = None,
) -> Dataset:
    """Write a Comprehensive SR whose content nests `depth` levels deep; its top level."""
    ds = Dataset()
    ds.SOPClassUID = UID(COMPREHENSIVE_SR)
    ds.SOPInstanceUID = UID(new_uid())
    ds.StudyInstanceUID = UID(study_uid or new_uid())
    ds.SeriesInstanceUID = UID(new_uid())
    ds.Modality = "SR"
    ds.PatientID = patient_id
    if not patient_name.isascii():
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = patient_name
    ds.AccessionNumber = accession
    ds.ValueType = "CONTAINER"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    # Every top-level tag above sorts before (0040,A730): appending keeps tags ascending.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        out.getvalue() + nested_sequence(depth, defined_length=defined_length, implicit=implicit)
    )
    return ds
