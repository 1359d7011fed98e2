"""IOCM rejection notes for tests: Key Object Selection Documents built with pydicom."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from pacsflow.domain.uids import new_uid

KOS = "1.2.840.10008.5.1.4.1.1.88.59"

MEANINGS = {
    "113000": "Of Interest",
    "113001": "Rejected for Quality Reasons",
    "113037": "Rejected for Patient Safety Reasons",
    "113038": "Incorrect Modality Worklist Entry",
    "113039": "Data Retention Policy Expired",
}


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def rejection_note(
    rejected: Sequence[Dataset],
    *,
    code: str = "113001",
    scheme: str = "DCM",
    study_uid: str | None = None,
    patient_id: str | None = None,
    accession: str | None = None,
) -> Dataset:
    """A Key Object Selection Document titled `code` that references the rejected instances.

    Filed in the study of the first rejected instance (as IOCM asks) unless told otherwise;
    patient and accession are copied from it too.
    """
    first = rejected[0]
    ds = Dataset()
    ds.SOPClassUID = KOS
    ds.SOPInstanceUID = new_uid()
    ds.StudyInstanceUID = study_uid or first.StudyInstanceUID
    ds.SeriesInstanceUID = new_uid()
    ds.Modality = "KO"
    ds.SeriesNumber = 999
    ds.InstanceNumber = 1
    ds.PatientID = first.PatientID if patient_id is None else patient_id
    ds.PatientName = first.get("PatientName", "")
    ds.PatientBirthDate = first.get("PatientBirthDate", "")
    ds.PatientSex = first.get("PatientSex", "")
    ds.AccessionNumber = first.get("AccessionNumber", "") if accession is None else accession
    ds.StudyDate = first.get("StudyDate", "")
    ds.StudyTime = first.get("StudyTime", "")
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.ContentDate = "20261129"
    ds.ContentTime = "120000"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ConceptNameCodeSequence = [_code(code, scheme, MEANINGS.get(code, "Other"))]
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = "2010"
    ds.ContentTemplateSequence = [template]
    by_study: dict[str, dict[str, list[Dataset]]] = {}
    content = []
    for inst in rejected:
        by_study.setdefault(inst.StudyInstanceUID, {}).setdefault(
            inst.SeriesInstanceUID, []
        ).append(inst)
        ref = Dataset()
        ref.ReferencedSOPClassUID = inst.SOPClassUID
        ref.ReferencedSOPInstanceUID = inst.SOPInstanceUID
        item = Dataset()
        item.RelationshipType = "CONTAINS"
        item.ValueType = "IMAGE"
        item.ReferencedSOPSequence = [ref]
        content.append(item)
    ds.ContentSequence = content
    evidence = []
    for study, series_map in by_study.items():
        study_item = Dataset()
        study_item.StudyInstanceUID = study
        series_items = []
        for series, members in series_map.items():
            series_item = Dataset()
            series_item.SeriesInstanceUID = series
            sops = []
            for inst in members:
                sop = Dataset()
                sop.ReferencedSOPClassUID = inst.SOPClassUID
                sop.ReferencedSOPInstanceUID = inst.SOPInstanceUID
                sops.append(sop)
            series_item.ReferencedSOPSequence = sops
            series_items.append(series_item)
        study_item.ReferencedSeriesSequence = series_items
        evidence.append(study_item)
    ds.CurrentRequestedProcedureEvidenceSequence = evidence
    return ds


def save(ds: Dataset, path: Path) -> Path:
    """Write a data set as a Part 10 file (explicit VR little endian)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def instance(study_uid: str, series_uid: str | None = None, **attrs: str) -> Dataset:
    """The identifying attributes of a CT image a note can reference."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = new_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid or new_uid()
    ds.PatientID = attrs.pop("PatientID", "P1")
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds
