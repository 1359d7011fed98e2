"""Dataset <-> domain: what an arriving instance says, what a worklist item or index row is."""

from __future__ import annotations

import io
import sys
import zlib
from collections.abc import Mapping
from datetime import date, timedelta, tzinfo
from pathlib import Path
from typing import BinaryIO, Final

from pydicom import dcmread
from pydicom.datadict import keyword_dict
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filereader import read_dataset, read_preamble
from pydicom.tag import BaseTag, Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian
from pydicom.valuerep import PersonName as DicomPersonName

from pacsflow.domain.calendar import day_span, day_start, local_time
from pacsflow.domain.errors import MalformedMessage
from pacsflow.domain.matching import ReceivedIdentity
from pacsflow.domain.orders import Order, WorklistFilter
from pacsflow.domain.patients import (
    Demographics,
    Issuer,
    Patient,
    PatientId,
    PatientIdentifier,
    PersonName,
)
from pacsflow.domain.studies import ArrivedInstance, InstanceRecord, StudyRecord
from pacsflow.domain.uids import Uid
from pacsflow.workflow.queries import StudyView, WorklistItem

UTF8 = "ISO_IR 192"

#: The attributes an arriving instance is indexed by (read_header reads only these).
HEADER_KEYWORDS = (
    "SpecificCharacterSet",
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PatientID",
    "IssuerOfPatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "StudyID",
    "ReferringPhysicianName",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "BodyPartExamined",
    "InstanceNumber",
    "SeriesDate",
    "SeriesTime",
)


def is_dicom_keyword(name: str) -> bool:
    """True when name is a keyword of the DICOM data dictionary (e.g. BodyPartExamined)."""
    return name in keyword_dict


#: How much of a deflated data set is inflated at most to reach its identifying attributes.
#: They sit in its first few KiB; 16 MiB leaves room for large private values before them and
#: bounds what a deflate bomb can make one header read hold.
_MAX_INFLATED_HEADER: Final = 16 * 1024 * 1024
#: How much deflated data one read takes in, and how much one inflate step gives out at most.
_INFLATE_CHUNK: Final = 65536


def read_header(source: Path | BinaryIO) -> Dataset:
    """The identifying attributes of a Part 10 file, without reading pixel data.

    pydicom inflates a Deflated Explicit VR Little Endian data set (PS3.5 A.5) whole in memory,
    so that one is inflated here only as far as its identifying attributes reach, at most
    16 MiB (else MalformedMessage); elements are in ascending tag order (PS3.5 7.1), so the
    read stops at the first element past the last one wanted.
    """
    if isinstance(source, Path):
        with source.open("rb") as fp:
            return _read_header(fp)
    return _read_header(source)


def _read_header(fp: BinaryIO) -> Dataset:
    tags = [Tag(keyword) for keyword in HEADER_KEYWORDS]
    preamble = read_preamble(fp, force=False)
    file_meta = FileMetaDataset(read_dataset(fp, False, True, stop_when=_past_file_meta))
    if file_meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        fp.seek(0)
        return dcmread(fp, stop_before_pixels=True, specific_tags=list(tags))
    last = max(int(tag) for tag in tags)

    def past_header(tag: BaseTag, vr: str | None, length: int) -> bool:
        return int(tag) > last

    data_set = read_dataset(
        _InflatedPrefix(fp),
        is_implicit_VR=False,
        is_little_endian=True,
        stop_when=past_header,
        specific_tags=list(tags),
    )
    header = FileDataset(fp, data_set, preamble, file_meta, False, True)
    header.set_original_encoding(False, True, data_set.original_character_set)
    return header


def _past_file_meta(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag.group != 0x0002


class _InflatedPrefix(io.BytesIO):
    """A deflated data set, inflated only as far as it is read or sought (at most 16 MiB)."""

    def __init__(self, deflated: BinaryIO) -> None:
        super().__init__()
        self._deflated = deflated
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._size = 0

    def read(self, size: int | None = -1, /) -> bytes:
        at = self.tell()
        self._inflate_to(sys.maxsize if size is None or size < 0 else at + size)
        return super().read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        if whence == io.SEEK_END:
            self._inflate_to(sys.maxsize)
        else:
            self._inflate_to(offset + (self.tell() if whence == io.SEEK_CUR else 0))
        return super().seek(offset, whence)

    def _inflate_to(self, end: int) -> None:
        """Inflate until end bytes are held or the stream ends; refuse to hold too much."""
        while self._size < end and not self._inflater.eof:
            if self._size >= _MAX_INFLATED_HEADER:
                limit = _MAX_INFLATED_HEADER >> 20
                raise MalformedMessage(f"deflated header larger than {limit} MiB")
            pending = self._inflater.unconsumed_tail or self._deflated.read(_INFLATE_CHUNK)
            if not pending:
                return
            try:
                more = self._inflater.decompress(pending, _INFLATE_CHUNK)
            except zlib.error as exc:
                raise MalformedMessage(f"deflated data set is corrupt: {exc}") from exc
            at = self.tell()
            super().seek(0, io.SEEK_END)
            self.write(more)
            super().seek(at)
            self._size += len(more)


#: What arrived_instance reads: a pydicom header, or fastpath.header's decoded values.
Header = Dataset | Mapping[str, str]


def _text(ds: Header, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    return str(value).strip()


def dicom_date(value: str) -> date | None:
    """A DA value as a date, or None when empty or malformed."""
    value = value.strip()
    if len(value) != 8 or not (value.isascii() and value.isdigit()):
        return None
    try:  # what strptime("%Y%m%d") accepts, at a tenth of its cost (once per instance)
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return None


def to_person_name(value: object) -> PersonName:
    """A DICOM PN value (alphabetic group) as our name."""
    if not value:
        return PersonName()
    pn = value if isinstance(value, DicomPersonName) else DicomPersonName(str(value))
    return PersonName(
        family=pn.family_name.strip(),
        given=pn.given_name.strip(),
        middle=pn.middle_name.strip(),
        prefix=pn.name_prefix.strip(),
        suffix=pn.name_suffix.strip(),
    )


def from_person_name(name: PersonName) -> str:
    """Our name as a DICOM PN value, trailing empty components dropped."""
    parts = [name.family, name.given, name.middle, name.prefix, name.suffix]
    while parts and not parts[-1]:
        parts.pop()
    return "^".join(parts)


def arrived_instance(ds: Header, transfer_syntax: str, source_ae: str) -> ArrivedInstance:
    """What the index keeps of an arriving instance."""
    identity = ReceivedIdentity(
        patient=PatientIdentifier(
            PatientId(_text(ds, "PatientID")), Issuer(_text(ds, "IssuerOfPatientID"))
        ),
        demographics=Demographics(
            name=to_person_name(ds.get("PatientName")),
            birth_date=dicom_date(_text(ds, "PatientBirthDate")),
            sex=_text(ds, "PatientSex"),
        ),
        accession_number=_text(ds, "AccessionNumber"),
        study_instance_uid=Uid(_text(ds, "StudyInstanceUID")),
    )
    instance = InstanceRecord(
        study_instance_uid=Uid(_text(ds, "StudyInstanceUID")),
        series_instance_uid=Uid(_text(ds, "SeriesInstanceUID")),
        sop_instance_uid=Uid(_text(ds, "SOPInstanceUID")),
        sop_class_uid=Uid(_text(ds, "SOPClassUID")),
        transfer_syntax_uid=Uid(transfer_syntax),
        blob_key="",
        size=0,
        series_number=_text(ds, "SeriesNumber")[:16],
        series_description=_text(ds, "SeriesDescription")[:200],
        modality=_text(ds, "Modality")[:16],
        body_part=_text(ds, "BodyPartExamined")[:64],
        instance_number=_text(ds, "InstanceNumber")[:16],
        series_date=_text(ds, "SeriesDate")[:8],
        series_time=_text(ds, "SeriesTime")[:16],
    )
    return ArrivedInstance(
        identity=identity,
        instance=instance,
        study_date=dicom_date(_text(ds, "StudyDate")),
        study_time=_text(ds, "StudyTime")[:16],
        study_description=_text(ds, "StudyDescription")[:200],
        study_id=_text(ds, "StudyID")[:16],
        referring_physician=_text(ds, "ReferringPhysicianName")[:200],
        source_ae=source_ae[:16],
    )


def _da(value: date | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


def set_patient(ds: Dataset, patient: Patient) -> None:
    """Write the index's identity of a patient into a dataset (coercion on the way out)."""
    d = patient.demographics
    ds.PatientName = from_person_name(d.name)
    ds.PatientID = patient.primary.value
    ds.IssuerOfPatientID = patient.primary.issuer
    ds.PatientBirthDate = _da(d.birth_date)
    ds.PatientSex = d.sex
    others = []
    for identifier in patient.identifiers[1:]:
        item = Dataset()
        item.PatientID = identifier.value
        item.IssuerOfPatientID = identifier.issuer
        others.append(item)
    if others:
        ds.OtherPatientIDsSequence = others


def coerce_identity(ds: Dataset, patient: Patient, accession: str, study_uid: str) -> None:
    """Replace a stored object's identity with the index's before it leaves pacsflow.

    The study too: a series split off to another study leaves with that study's UID.
    When the new identity needs more than ASCII, every text value is decoded first and the
    whole data set is declared UTF-8, so values in the old character set are re-encoded too.
    """
    probe = Dataset()
    set_patient(probe, patient)
    if not is_ascii_dataset(probe) and ds.get("SpecificCharacterSet") != UTF8:
        ds.decode()
        ds.SpecificCharacterSet = UTF8
    set_patient(ds, patient)
    ds.AccessionNumber = accession
    ds.StudyInstanceUID = study_uid


def _exact(ds: Dataset, keyword: str) -> str:
    """A single value without wildcards (usable as an exact SQL filter), else ''."""
    value = ds.get(keyword)
    if value is None or isinstance(value, list | tuple) or not str(value).strip():
        return ""
    text = str(value).strip()
    return "" if any(c in text for c in "*?\\") else text


def worklist_filter(query: Dataset, zone: tzinfo) -> WorklistFilter:
    """What of an MWL query the store can pre-filter on; the full matching still follows.

    A ScheduledProcedureStepStartDate (or range) names days of the site: from the start of
    the first to the end of the last in its time zone.
    """
    sps_items = query.get("ScheduledProcedureStepSequence") or []
    sps = sps_items[0] if len(sps_items) == 1 else Dataset()
    start_from = start_to = None
    raw = str(sps.get("ScheduledProcedureStepStartDate", "") or "").strip()
    if raw and "\\" not in raw:
        low, _, high = raw.partition("-") if "-" in raw else (raw, "", raw)
        low_date, high_date = dicom_date(low), dicom_date(high)
        if low_date is not None:
            start_from = day_start(low_date, zone)
        if high_date is not None:
            start_to = day_span(high_date, high_date, zone)[1] - timedelta(microseconds=1)
    return WorklistFilter(
        station_ae=_exact(sps, "ScheduledStationAETitle"),
        modality=_exact(sps, "Modality"),
        accession_number=_exact(query, "AccessionNumber"),
        patient_id=_exact(query, "PatientID"),
        start_from=start_from,
        start_to=start_to,
    )


def worklist_dataset(item: WorklistItem, zone: tzinfo) -> Dataset:
    """The full worklist entry of a scheduled order (PS3.4 K.6, IHE RAD-5 return keys); the
    scheduled date and time are the site's (in zone)."""
    order, patient = item.order, item.patient
    ds = Dataset()
    set_patient(ds, patient)
    ds.AccessionNumber = order.accession_number
    ds.ReferringPhysicianName = order.referring_physician
    ds.StudyInstanceUID = order.study_instance_uid
    ds.RequestedProcedureID = order.requested_procedure_id
    ds.RequestedProcedureDescription = order.requested_procedure_description
    ds.RequestedProcedurePriority = order.priority.value
    ds.RequestedProcedureCodeSequence = _code_items(order)
    ds.ReasonForTheRequestedProcedure = order.reason
    ds.PlacerOrderNumberImagingServiceRequest = order.placer_order_number
    ds.FillerOrderNumberImagingServiceRequest = order.filler_order_number
    ds.AdmissionID = ""
    ds.CurrentPatientLocation = ""
    ds.PatientWeight = None
    ds.MedicalAlerts = ""
    ds.PregnancyStatus = None
    sps = Dataset()
    sps.ScheduledStationAETitle = order.scheduled_station_ae
    sps.ScheduledStationName = order.scheduled_station_name
    start = local_time(order.scheduled_start, zone) if order.scheduled_start else None
    sps.ScheduledProcedureStepStartDate = start.strftime("%Y%m%d") if start else ""
    sps.ScheduledProcedureStepStartTime = start.strftime("%H%M%S") if start else ""
    sps.Modality = order.modality
    sps.ScheduledPerformingPhysicianName = ""
    sps.ScheduledProcedureStepDescription = order.requested_procedure_description
    sps.ScheduledProcedureStepID = order.scheduled_procedure_step_id or order.accession_number
    sps.ScheduledProcedureStepStatus = (
        "STARTED" if order.status.value == "in_progress" else "SCHEDULED"
    )
    sps.ScheduledProcedureStepLocation = ""
    sps.ScheduledProtocolCodeSequence = _code_items(order)
    ds.ScheduledProcedureStepSequence = [sps]
    return ds


def _code_items(order: Order) -> list[Dataset]:
    if order.procedure_code is None:
        return []
    item = Dataset()
    item.CodeValue = order.procedure_code.value
    item.CodingSchemeDesignator = order.procedure_code.scheme or "L"
    item.CodeMeaning = order.procedure_code.meaning or order.requested_procedure_description
    return [item]


def is_ascii_dataset(ds: Dataset) -> bool:
    """True when every text value of the dataset (recursively) is plain ASCII."""
    for elem in ds.iterall():
        if elem.VR in ("PN", "LO", "SH", "ST", "LT", "UT", "UC") and elem.value is not None:
            values = elem.value if elem.VM > 1 else [elem.value]
            for value in values:
                if not str(value).isascii():
                    return False
    return True


def with_character_set(ds: Dataset) -> Dataset:
    """Declare UTF-8 (ISO_IR 192) when any text is not ASCII, so names arrive intact."""
    if is_ascii_dataset(ds):
        if "SpecificCharacterSet" in ds:
            del ds.SpecificCharacterSet
    else:
        ds.SpecificCharacterSet = UTF8
    return ds


def patient_level_dataset(patient: Patient, studies: int) -> Dataset:
    """A PATIENT-level C-FIND candidate."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "PATIENT"
    set_patient(ds, patient)
    ds.NumberOfPatientRelatedStudies = studies
    return ds


def study_level_dataset(view: StudyView) -> Dataset:
    """A STUDY-level C-FIND candidate with the index's identity of the patient."""
    study: StudyRecord = view.study
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    if view.patient is not None:
        set_patient(ds, view.patient)
    else:
        rec = study.received
        ds.PatientID = rec.patient.value
        ds.IssuerOfPatientID = rec.patient.issuer
        ds.PatientName = from_person_name(rec.demographics.name)
        ds.PatientBirthDate = _da(rec.demographics.birth_date)
        ds.PatientSex = rec.demographics.sex
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate = _da(study.study_date)
    ds.StudyTime = study.study_time
    ds.AccessionNumber = study.accession_number
    ds.StudyID = study.study_id
    ds.StudyDescription = study.study_description
    ds.ReferringPhysicianName = study.referring_physician
    ds.ModalitiesInStudy = list(study.modalities)
    ds.NumberOfStudyRelatedSeries = study.series_count
    ds.NumberOfStudyRelatedInstances = study.instance_count
    return ds


def series_level_dataset(study: Dataset, inst: InstanceRecord, count: int) -> Dataset:
    """A SERIES-level C-FIND candidate (study and patient keys included)."""
    ds = Dataset()
    ds.update(study)
    ds.QueryRetrieveLevel = "SERIES"
    ds.SeriesInstanceUID = inst.series_instance_uid
    ds.Modality = inst.modality
    ds.SeriesNumber = inst.series_number or None
    ds.SeriesDescription = inst.series_description
    ds.BodyPartExamined = inst.body_part
    ds.SeriesDate = inst.series_date
    ds.SeriesTime = inst.series_time
    ds.NumberOfSeriesRelatedInstances = count
    return ds


def image_level_dataset(series: Dataset, inst: InstanceRecord) -> Dataset:
    """An IMAGE-level C-FIND candidate."""
    ds = Dataset()
    ds.update(series)
    ds.QueryRetrieveLevel = "IMAGE"
    ds.SOPInstanceUID = inst.sop_instance_uid
    ds.SOPClassUID = inst.sop_class_uid
    ds.InstanceNumber = inst.instance_number or None
    return ds


__all__ = [
    "UTF8",
    "arrived_instance",
    "coerce_identity",
    "dicom_date",
    "from_person_name",
    "image_level_dataset",
    "is_ascii_dataset",
    "patient_level_dataset",
    "read_header",
    "series_level_dataset",
    "set_patient",
    "study_level_dataset",
    "to_person_name",
    "with_character_set",
    "worklist_dataset",
    "worklist_filter",
]
