"""Orthanc as a test peer: it stores, survives a restart, answers C-FIND and C-MOVE."""

from __future__ import annotations

import time

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from tests.conftest import Receiver, requires_dcmtk, sample, storescu
from tests.peers.orthanc import OrthancPeer

pytestmark = pytest.mark.orthanc

CT = "CT_small.dcm"


@pytest.mark.dcmtk
@requires_dcmtk
def test_storescu_instance_shows_in_orthanc_rest_api(orthanc: OrthancPeer) -> None:
    result = storescu(orthanc.dicom_port, sample(CT), ae_title=orthanc.aet)

    assert result.returncode == 0, result.stderr
    ds = dcmread(sample(CT), stop_before_pixels=True)
    assert orthanc.instances() == [ds.SOPInstanceUID]
    assert orthanc.study_uids() == [ds.StudyInstanceUID]


def test_orthanc_keeps_instances_across_restart(orthanc: OrthancPeer) -> None:
    orthanc.upload(sample(CT))
    ports = (orthanc.http_port, orthanc.dicom_port)

    orthanc.restart()

    assert (orthanc.http_port, orthanc.dicom_port) == ports
    assert orthanc.count_instances() == 1
    assert orthanc.instances() == [dcmread(sample(CT)).SOPInstanceUID]
    ae = AE(ae_title="PACSFLOW")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", orthanc.dicom_port, ae_title=orthanc.aet)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_orthanc_answers_c_find_and_moves_study_to_receiver(
    orthanc: OrthancPeer, receiver: Receiver
) -> None:
    orthanc.upload(sample(CT))
    orthanc.add_modality("PACSFLOW", "PACSFLOW", "127.0.0.1", 9)
    orthanc.add_modality(receiver.ae_title, receiver.ae_title, "127.0.0.1", receiver.port)
    ct = dcmread(sample(CT), stop_before_pixels=True)
    ae = AE(ae_title="PACSFLOW")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = ct.PatientID
    query.StudyInstanceUID = ""
    query.NumberOfStudyRelatedInstances = ""

    assoc = ae.associate("127.0.0.1", orthanc.dicom_port, ae_title=orthanc.aet)
    assert assoc.is_established
    try:
        found = [
            identifier
            for status, identifier in assoc.send_c_find(
                query, StudyRootQueryRetrieveInformationModelFind
            )
            if status.Status in (0xFF00, 0xFF01) and identifier is not None
        ]
        move = Dataset()
        move.QueryRetrieveLevel = "STUDY"
        move.StudyInstanceUID = ct.StudyInstanceUID
        statuses = [
            status.Status
            for status, _ in assoc.send_c_move(
                move, receiver.ae_title, StudyRootQueryRetrieveInformationModelMove
            )
        ]
    finally:
        assoc.release()

    assert [(d.StudyInstanceUID, int(d.NumberOfStudyRelatedInstances)) for d in found] == [
        (ct.StudyInstanceUID, 1)
    ]
    assert statuses[-1] == 0x0000
    deadline = time.monotonic() + 5
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.02)
    with receiver.lock:
        assert [d.SOPInstanceUID for d in receiver.received] == [ct.SOPInstanceUID]
