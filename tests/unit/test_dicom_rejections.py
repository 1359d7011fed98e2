"""Reading IOCM rejection notes: Key Object Selection Documents -> domain Rejection."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from pacsflow.adapters.dicom.datasets import read_header
from pacsflow.adapters.dicom.rejections import read_rejection, rejection_of
from pacsflow.domain.errors import InvalidInput
from pacsflow.domain.rejections import RejectedInstance, RejectionReason
from pacsflow.domain.uids import new_uid
from tests.iocm import instance, rejection_note, save


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("113001", RejectionReason.QUALITY),
        ("113037", RejectionReason.PATIENT_SAFETY),
        ("113038", RejectionReason.INCORRECT_WORKLIST_ENTRY),
        ("113039", RejectionReason.RETENTION_EXPIRED),
    ],
)
def test_each_iocm_title_is_read_as_its_reason(code: str, reason: RejectionReason) -> None:
    study = new_uid()
    a, b = instance(study), instance(study)
    note = rejection_note([a, b], code=code)
    rejection = rejection_of(note)
    assert rejection is not None
    assert rejection.reason is reason
    assert rejection.note == note.SOPInstanceUID
    assert rejection.instances == tuple(
        RejectedInstance(i.StudyInstanceUID, i.SeriesInstanceUID, i.SOPInstanceUID, i.SOPClassUID)
        for i in (a, b)
    )


def test_references_across_series_and_studies_are_all_read_once() -> None:
    s1, s2 = new_uid(), new_uid()
    series = new_uid()
    refs = [instance(s1, series), instance(s1, series), instance(s1), instance(s2)]
    note = rejection_note([*refs, refs[0]])  # named twice: rejected once
    rejection = rejection_of(note)
    assert rejection is not None
    assert [i.sop_instance_uid for i in rejection.instances] == [r.SOPInstanceUID for r in refs]
    assert rejection.study_uids == (s1, s2)


@pytest.mark.parametrize(("code", "scheme"), [("113000", "DCM"), ("113001", "99LOCAL")])
def test_other_titles_are_ordinary_key_objects(code: str, scheme: str) -> None:
    note = rejection_note([instance(new_uid())], code=code, scheme=scheme)
    assert rejection_of(note) is None


def test_an_object_that_is_not_a_key_object_selection_is_no_note() -> None:
    note = rejection_note([instance(new_uid())])
    note.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"  # Enhanced SR, same title
    assert rejection_of(note) is None


def test_a_note_without_references_cannot_be_applied() -> None:
    note = rejection_note([instance(new_uid())])
    del note.CurrentRequestedProcedureEvidenceSequence
    with pytest.raises(InvalidInput, match="references no instance"):
        rejection_of(note)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # pydicom warns, lets it pass
def test_a_malformed_referenced_uid_cannot_be_applied() -> None:
    bad = instance(new_uid())
    bad.SOPInstanceUID = "1.2.abc"
    with pytest.raises(InvalidInput) as err:
        rejection_of(rejection_note([bad]))
    assert err.value.location == "ReferencedSOPInstanceUID"


def test_read_rejection_reads_the_sequences_the_header_leaves_out(tmp_path: Path) -> None:
    a = instance(new_uid())
    path = save(rejection_note([a], code="113038"), tmp_path / "kos.dcm")
    header = read_header(path)
    assert "CurrentRequestedProcedureEvidenceSequence" not in header
    rejection = read_rejection(header, path)
    assert rejection is not None
    assert rejection.reason is RejectionReason.INCORRECT_WORKLIST_ENTRY
    assert [i.sop_instance_uid for i in rejection.instances] == [a.SOPInstanceUID]


def test_read_rejection_leaves_other_objects_unread(tmp_path: Path) -> None:
    note = rejection_note([instance(new_uid())])
    path = save(note, tmp_path / "kos.dcm")
    header = dcmread(path)
    header.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    assert read_rejection(header, tmp_path / "missing.dcm") is None  # never opened
