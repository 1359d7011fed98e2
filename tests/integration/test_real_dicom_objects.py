"""Real DICOM objects in and back out: pydicom's and pynetdicom's test files (issue 11, part 5).

Each is sent with DCMTK storescu in its own transfer syntax and fetched back with getscu; what
DCMTK cannot send (100,000 nested levels crash it; it does not know HTJ2K) goes through a
pynetdicom peer that streams the file's data set as it is.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pynetdicom.tests
import pytest
from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    HTJ2K,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
)
from pynetdicom import AE, _config, build_role, evt
from pynetdicom.dsutils import split_dataset
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from pacsflow.adapters.dicom.negotiation import DEFLATED_IMAGE_FRAME_COMPRESSION
from pacsflow.app import Pacsflow
from pacsflow.domain.matching import ExceptionReason
from pacsflow.domain.studies import StudyFilter
from pacsflow.domain.uids import Uid, new_uid
from tests.conftest import (
    Receiver,
    dcmtk,
    move_study,
    requires_dcmtk,
    restamp,
    sample,
    storescu,
)
from tests.nesting import nested_object
from tests.scheduling import scheduled

pytestmark = [pytest.mark.dcmtk, requires_dcmtk]

PYNETDICOM_FILES = Path(pynetdicom.tests.__file__).parent / "dicom_files"


@pytest.fixture(autouse=True)
def _send_files_as_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make pynetdicom send a file's data set bytes as they are (no parse, no re-encode)."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)


def _read(path: Path, **kw: object) -> Dataset:
    """pydicom's leniency warnings about sample files are not what is checked here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(path, **kw)  # type: ignore[arg-type]


def send_file(node: Pacsflow, path: Path, *, with_query: bool = False) -> Dataset:
    """C-STORE a file's data set as it is; the response (Status, Error Comment).

    with_query adds a C-FIND context, so that pynetdicom serves the association, not the
    fast storage path.
    """
    meta, _ = split_dataset(path)
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
    if with_query:
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", node.dicom.port, ae_title="PACSFLOW")
    assert assoc.is_established, f"{meta.TransferSyntaxUID} refused at negotiation"
    try:
        rsp = assoc.send_c_store(path)
        assert "Status" in rsp, "no C-STORE response"
        return rsp
    finally:
        assoc.release()


def getscu(node: Pacsflow, out: Path, study_uid: str, *flags: str) -> list[Dataset]:
    out.mkdir(parents=True)
    res = dcmtk(
        "getscu",
        "-S",
        "+B",  # write each object as it came over the wire
        *flags,
        "-aec",
        "PACSFLOW",
        "-od",
        out,
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={study_uid}",
        "127.0.0.1",
        node.dicom.port,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return [_read(p) for p in sorted(out.iterdir())]


def _depth(ds: Dataset) -> int:
    """How deep the Content Sequence nests (walked without recursion)."""
    depth, items = 0, ds.get("ContentSequence")
    while items:
        depth += 1
        items = items[0].get("ContentSequence")
    return depth


# -- deeply nested sequences ---------------------------------------------------------------


@pytest.mark.parametrize("defined_length", [False, True])
def test_a_deeply_nested_sequence_is_refused_at_ingest_with_the_reason(
    node: Pacsflow, tmp_path: Path, defined_length: bool
) -> None:
    """orthanc-tests' 2026-05-06-Deeply-Nested-Sequence.dcm: acknowledged, then every C-GET
    failed 0xC411 (RecursionError). Now refused, and nothing is stored."""
    path = tmp_path / "deep.dcm"
    ds = nested_object(path, 100_000, defined_length=defined_length)
    rsp = send_file(node, path)
    assert rsp.Status == 0xC000
    assert "nested deeper than 100 levels" in rsp.ErrorComment
    assert node.queries.instances(sop_uids=[ds.SOPInstanceUID], is_published_only=False) == []


def test_nesting_at_the_limit_is_stored_and_comes_back_to_getscu(
    node: Pacsflow, tmp_path: Path
) -> None:
    """The deepest object accepted is retrievable, its identity coerced (a UTF-8 name makes
    the coercion decode every value of the data set)."""
    patient, order = scheduled(node)
    path = tmp_path / "deep.dcm"
    sent = nested_object(
        path,
        100,
        patient_id=str(patient.primary.value),
        patient_name="Dvořák^Antonín",
        accession=str(order.accession_number),
        study_uid=str(order.study_instance_uid),
    )
    res = storescu(node.dicom.port, path)
    assert res.returncode == 0, res.stdout + res.stderr
    [got] = getscu(node, tmp_path / "got", str(order.study_instance_uid))
    assert got.SOPInstanceUID == sent.SOPInstanceUID
    assert got.PatientName == "Dvořák^Antonín"
    assert _depth(got) == 100


# -- every shipped file, in its own transfer syntax ------------------------------------------

#: Shipped files left out of the round trip: cut short (refused, tested in
#: test_hostile_dicom), or files DCMTK cannot parse to send (implicit VR inside explicit).
_NOT_ROUND_TRIP = {"MR_truncated.dcm", "rtplan_truncated.dcm", "badVR.dcm", "SC_rgb_jpeg.dcm"}
#: The getscu flag that makes it accept (prefer) each syntax; explicit VR LE needs none.
_PREFER = {
    "1.2.840.10008.1.2.5": "+xr",
    "1.2.840.10008.1.2.4.90": "+xv",
    "1.2.840.10008.1.2.4.91": "+xw",
    "1.2.840.10008.1.2.4.50": "+xy",
    "1.2.840.10008.1.2.4.51": "+xx",
    "1.2.840.10008.1.2.4.70": "+xs",
    "1.2.840.10008.1.2.4.80": "+xt",
    "1.2.840.10008.1.2.4.81": "+xu",
    "1.2.840.10008.1.2.1.99": "+xd",
    ExplicitVRBigEndian: "+xb",
}


_LITTLE_ENDIAN = {str(ExplicitVRLittleEndian), "1.2.840.10008.1.2"}


def shipped_files() -> dict[str, list[Path]]:
    """pydicom's and pynetdicom's test files that a modality could send, by transfer syntax."""
    groups: dict[str, list[Path]] = {}
    pydicom_files = sample("CT_small.dcm").parent
    for path in sorted([*pydicom_files.glob("*.dcm"), *PYNETDICOM_FILES.glob("*.dcm")]):
        if path.name in _NOT_ROUND_TRIP:
            continue
        try:
            ds = _read(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - no File Meta Information: not sendable as it is
            continue
        syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
        keys = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
        if syntax and all(ds.get(k) for k in keys):
            groups.setdefault(syntax, []).append(path)
    return groups


def test_every_shipped_file_is_stored_as_received_and_comes_back_to_getscu(
    node: Pacsflow, tmp_path: Path
) -> None:
    """One published study per transfer syntax: storescu in it, getscu preferring it."""
    groups = shipped_files()
    assert sum(len(paths) for paths in groups.values()) >= 60
    for syntax, paths in groups.items():
        patient, order = scheduled(node)
        sent = {}
        for n, src in enumerate(paths):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, ds = restamp(
                    src,
                    tmp_path / syntax / f"{n}.dcm",
                    patient_id=str(patient.primary.value),
                    accession=str(order.accession_number),
                    study_uid=str(order.study_instance_uid),
                    name_pn="Dvořák^Antonín",
                    issuer="HOSP",
                    birth="19700102",
                    sex="M",
                )
            sent[str(ds.SOPInstanceUID)] = (src, ds)
        files = sorted((tmp_path / syntax).iterdir())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if syntax == ExplicitVRBigEndian:  # else storescu proposes little endian first
                args = ("storescu", "-R", "-xb", "-aec", "PACSFLOW", "127.0.0.1")
                res = dcmtk(*args, node.dicom.port, *files)
            else:
                res = storescu(node.dicom.port, *files, required=True)
        assert res.returncode == 0, f"{syntax}: {res.stdout + res.stderr}"
        for uid, (src, _) in sent.items():
            [inst] = node.queries.instances(sop_uids=[Uid(uid)])
            assert inst.transfer_syntax_uid == syntax, f"{src.name} stored transcoded"
        prefer = [_PREFER[syntax]] if syntax in _PREFER else []
        with pydicom_config.disable_value_validation():
            got = getscu(node, tmp_path / f"got-{syntax}", str(order.study_instance_uid), *prefer)
        assert sorted(str(ds.SOPInstanceUID) for ds in got) == sorted(sent), syntax
        for ds in got:
            src, original = sent[str(ds.SOPInstanceUID)]
            if syntax != ExplicitVRBigEndian:  # big endian comes back little endian (below)
                # getscu writes what it receives uncompressed as explicit VR little endian
                came = str(ds.file_meta.TransferSyntaxUID)
                assert came == syntax or {came, syntax} <= _LITTLE_ENDIAN, src.name
                assert ds.get("PixelData") == original.get("PixelData"), src.name
            assert ds.PatientID == patient.primary.value


# -- Explicit VR Big Endian ------------------------------------------------------------------

BIG_ENDIAN = [
    sample("MR_small_bigendian.dcm"),
    sample("MR_small_expb.dcm"),
    sample("SC_rgb_small_odd_big_endian.dcm"),
    sample("liver_expb_1frame.dcm"),
    sample("rtdose_expb.dcm"),  # 32 bits allocated: swapped per sample
    sample("rtdose_expb_1frame.dcm"),
    sample("ExplVR_BigEnd.dcm"),
    PYNETDICOM_FILES / "MRImageStorage_ExplicitVRBigEndian.dcm",
]
#: What coercion or pydicom's writer changes: identity from the index, group lengths dropped.
_NOT_COMPARED = {"PatientID", "PatientName", "IssuerOfPatientID", "PatientBirthDate"}
_NOT_COMPARED |= {"PatientSex", "AccessionNumber", "StudyInstanceUID", "PixelData"}
_NOT_COMPARED |= {"SpecificCharacterSet", "DataSetTrailingPadding"}  # storescu drops it


def _store_big_endian(node: Pacsflow, tmp_path: Path) -> tuple[str, list[Dataset]]:
    """Every big endian sample as one published study, stored big endian (storescu -xb)."""
    patient, order = scheduled(node)
    sent = []
    for n, src in enumerate(BIG_ENDIAN):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path, ds = restamp(
                src,
                tmp_path / "in" / f"{n}.dcm",
                patient_id=str(patient.primary.value),
                accession=str(order.accession_number),
                study_uid=str(order.study_instance_uid),
                name_pn="Dvořák^Antonín",
                issuer="HOSP",
                birth="19700102",
                sex="M",
            )
        res = dcmtk("storescu", "-R", "-xb", "-aec", "PACSFLOW", "127.0.0.1", node.dicom.port, path)
        assert res.returncode == 0, f"{src.name}: {res.stdout + res.stderr}"
        [inst] = node.queries.instances(sop_uids=[Uid(ds.SOPInstanceUID)])
        assert inst.transfer_syntax_uid == str(ExplicitVRBigEndian), src.name
        sent.append(ds)
    return str(order.study_instance_uid), sent


def _same_content(got: Dataset, sent: Dataset) -> None:
    with pydicom_config.disable_value_validation():  # a sample's UID has a leading zero
        _compare(got, sent)


def _compare(got: Dataset, sent: Dataset) -> None:
    name = str(sent.SOPInstanceUID)
    for elem in sent:
        if elem.keyword in _NOT_COMPARED or elem.tag.element == 0:
            continue
        assert elem.tag in got, f"{name}: {elem.keyword or elem.tag} lost"
        assert got[elem.tag].value == elem.value, f"{name}: {elem.keyword or elem.tag}"
    if "PixelData" in sent:
        assert np.array_equal(got.pixel_array, sent.pixel_array), f"{name}: pixels differ"


def test_big_endian_objects_come_back_to_getscu_preferring_big_endian(
    node: Pacsflow, tmp_path: Path
) -> None:
    """getscu +xb proposes big endian first; pacsflow accepts little endian for the class and
    sends the big endian objects re-encoded, losslessly (was: 0xA702 for 21 of 21)."""
    study_uid, sent = _store_big_endian(node, tmp_path)
    with pydicom_config.disable_value_validation():  # a sample's UID has a leading zero
        fetched = getscu(node, tmp_path / "got", study_uid, "+xb")
    got = {str(ds.SOPInstanceUID): ds for ds in fetched}
    assert sorted(got) == sorted(str(ds.SOPInstanceUID) for ds in sent)
    for ds in sent:
        back = got[str(ds.SOPInstanceUID)]
        assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        _same_content(back, ds)


def test_big_endian_objects_reach_a_c_move_destination(
    node: Pacsflow, receiver: Receiver, tmp_path: Path
) -> None:
    study_uid, sent = _store_big_endian(node, tmp_path)
    with pydicom_config.disable_value_validation():  # a sample's UID has a leading zero
        received = move_study(node.dicom.port, study_uid, receiver)
    got = {str(ds.SOPInstanceUID): ds for ds in received}
    assert sorted(got) == sorted(str(ds.SOPInstanceUID) for ds in sent)
    for ds in sent:
        _same_content(got[str(ds.SOPInstanceUID)], ds)


def test_a_peer_that_accepts_only_big_endian_gets_the_stored_bytes(
    node: Pacsflow, tmp_path: Path
) -> None:
    study_uid, sent = _store_big_endian(node, tmp_path)
    received: list[Dataset] = []

    def on_store(event: evt.Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        received.append(ds)
        return 0x0000

    ae = AE(ae_title="GETSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    classes = sorted({str(ds.SOPClassUID) for ds in sent})
    for sop_class in classes:
        ae.add_requested_context(sop_class, [ExplicitVRBigEndian])
    assoc = ae.associate(
        "127.0.0.1",
        node.dicom.port,
        ae_title="PACSFLOW",
        ext_neg=[build_role(sop_class, scp_role=True) for sop_class in classes],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    try:
        with pydicom_config.disable_value_validation():  # a sample's UID has a leading zero
            answers = list(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet))
    finally:
        assoc.release()
    final = answers[-1][0]
    assert final.Status == 0x0000
    assert len(received) == len(sent)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sent}
    for ds in received:
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian
        _same_content(ds, by_uid[str(ds.SOPInstanceUID)])


# -- Patient ID is Type 2 ----------------------------------------------------------------------

#: Valid shipped files whose Patient ID is empty or absent, in every syntax they come in.
WITHOUT_PATIENT_ID = [
    sample("SC_jpeg_no_color_transform.dcm"),  # JPEG baseline
    sample("SC_jpeg_no_color_transform_2.dcm"),
    sample("SC_rgb_jpeg_app14_dcmd.dcm"),
    sample("SC_rgb_jpeg_dcmd.dcm"),  # implicit VR little endian
    sample("GDCMJ2K_TextGBR.dcm"),  # JPEG 2000 lossless, Patient ID absent
    sample("image_dfl.dcm"),  # deflated
    sample("ExplVR_BigEnd.dcm"),  # big endian, Patient ID absent
    sample("reportsi.dcm"),
    sample("reportsi_with_empty_number_tags.dcm"),
    sample("test-SR.dcm"),
    PYNETDICOM_FILES / "SCImageStorage_Deflated.dcm",
]


def test_valid_objects_without_patient_id_are_stored_and_held(node: Pacsflow) -> None:
    for path in WITHOUT_PATIENT_ID:
        ds = _read(path, stop_before_pixels=True)
        assert not ds.get("PatientID"), path.name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = storescu(node.dicom.port, path)
        assert res.returncode == 0, f"{path.name}: {res.stdout + res.stderr}"
        found = node.queries.instances(sop_uids=[Uid(ds.SOPInstanceUID)], is_published_only=False)
        assert len(found) == 1, f"{path.name} not stored"
    assert node.queries.studies(StudyFilter()) == []  # held: invisible until reconciled
    held = node.queries.exceptions()
    assert {e.reason for e in held} == {ExceptionReason.MISSING_PATIENT_ID}
    assert len(held) == len({str(_read(p).StudyInstanceUID) for p in WITHOUT_PATIENT_ID})


def test_objects_that_cannot_be_indexed_are_refused(node: Pacsflow) -> None:
    for name in ("JPEGLSNearLossless_08.dcm", "SC_rgb_jls_lossy_line.dcm"):  # no Study UID
        rsp = send_file(node, sample(name))
        assert rsp.Status == 0xC000, name
        assert "StudyInstanceUID is required" in rsp.ErrorComment


# -- negotiation: every transfer syntax pydicom knows, retired storage classes -------------


def _relabelled(src: Path, out: Path, *, syntax: str = "", sop_class: str = "") -> Dataset:
    """A copy with fresh UIDs, declared in another transfer syntax or SOP class (stored as
    received, never decoded: the pixel data need not be valid in the new syntax)."""
    ds = _read(src)
    ds.SOPInstanceUID = UID(new_uid())
    ds.StudyInstanceUID = UID(new_uid())
    ds.SeriesInstanceUID = UID(new_uid())
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if sop_class:
        ds.SOPClassUID = UID(sop_class)
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if syntax:
        ds.file_meta.TransferSyntaxUID = UID(syntax)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(out, enforce_file_format=False)
    return ds


NEW_SYNTAXES = [HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K, DEFLATED_IMAGE_FRAME_COMPRESSION]


@pytest.mark.parametrize("with_query", [False, True], ids=["fast-path", "pynetdicom"])
@pytest.mark.parametrize("syntax", NEW_SYNTAXES)
def test_htj2k_and_deflated_image_frames_are_stored_as_received(
    node: Pacsflow, tmp_path: Path, syntax: str, with_query: bool
) -> None:
    path = tmp_path / "in.dcm"
    ds = _relabelled(sample("JPEG2000.dcm"), path, syntax=syntax)
    rsp = send_file(node, path, with_query=with_query)
    assert rsp.Status == 0x0000, rsp.get("ErrorComment")
    [inst] = node.queries.instances(sop_uids=[Uid(ds.SOPInstanceUID)], is_published_only=False)
    assert inst.transfer_syntax_uid == syntax
    stored = node.queries.local_file(inst)
    assert stored is not None
    assert split_dataset(stored)[0].TransferSyntaxUID == syntax


def test_retired_ultrasound_image_storage_is_accepted_from_storescu(
    node: Pacsflow, tmp_path: Path
) -> None:
    path = tmp_path / "us.dcm"
    ds = _relabelled(sample("examples_ybr_color.dcm"), path, sop_class="1.2.840.10008.5.1.4.1.1.6")
    # -R: propose the file's own SOP class (DCMTK's default list leaves out retired ones)
    res = dcmtk("storescu", "-R", "-xy", "-aec", "PACSFLOW", "127.0.0.1", node.dicom.port, path)
    assert res.returncode == 0, res.stdout + res.stderr
    [inst] = node.queries.instances(sop_uids=[Uid(ds.SOPInstanceUID)], is_published_only=False)
    assert inst.sop_class_uid == "1.2.840.10008.5.1.4.1.1.6"
