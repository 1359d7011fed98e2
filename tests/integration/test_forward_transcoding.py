"""Forwarding compressed instances: the stored syntax when the peer takes it, else decoded.

A pynetdicom storage SCP in the test stands for the peer (one that takes only uncompressed
syntaxes, one that takes everything); a last test routes a JPEG study to Orthanc configured
to accept only explicit and implicit VR little endian.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
)
from pynetdicom import AE, AllStoragePresentationContexts, evt

from pacsflow.adapters.dicom.sender import DicomSender
from pacsflow.adapters.dicom.server import STORAGE_TRANSFER_SYNTAXES
from pacsflow.app import Pacsflow
from pacsflow.config import DicomPeer
from pacsflow.domain.audit import ActiveParticipant
from pacsflow.domain.studies import InstanceRecord
from pacsflow.domain.uids import Uid, new_uid
from tests.conftest import make_settings, requires_dcmtk, sample
from tests.peers.orthanc import OrthancPeer, orthanc_unavailable
from tests.scheduling import send_scheduled

UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]

#: Compressed pydicom samples the sender must decode when the peer wants them uncompressed.
DECODABLE = [
    "JPEG2000.dcm",  # JPEG 2000, lossy (irreversible wavelet), marked "01"
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR_FULL, marked "01"
    "MR_small_RLE.dcm",  # RLE lossless
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless SV1, RGB
]


@dataclass
class Peer:
    """A storage SCP on loopback keeping each data set it receives, with its raw encoding."""

    port: int
    received: list[Dataset] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)


def _start_peer(syntaxes: Sequence[str]) -> Iterator[Peer]:
    ae = AE(ae_title="PEER")
    for cx in AllStoragePresentationContexts:
        assert cx.abstract_syntax is not None
        ae.add_supported_context(cx.abstract_syntax, list(syntaxes))
    peer: list[Peer] = []
    lock = threading.Lock()

    def on_store(event: evt.Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        with lock:
            peer[0].received.append(ds)
            peer[0].raw.append(event.encoded_dataset(include_meta=False))
        return 0x0000

    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    assert server is not None
    peer.append(Peer(int(server.server_address[1])))
    yield peer[0]
    server.shutdown()


@pytest.fixture
def uncompressed_peer() -> Iterator[Peer]:
    """A peer that accepts only explicit and implicit VR little endian."""
    yield from _start_peer(UNCOMPRESSED)


@pytest.fixture
def implicit_peer() -> Iterator[Peer]:
    """A peer that accepts only implicit VR little endian."""
    yield from _start_peer([ImplicitVRLittleEndian])


@pytest.fixture
def any_peer() -> Iterator[Peer]:
    """A peer that accepts every syntax pacsflow stores in (compressed ones first)."""
    yield from _start_peer(STORAGE_TRANSFER_SYNTAXES)


def record(path: Path) -> InstanceRecord:
    """The instance record of a file, as the index would keep it (the blob key is its path)."""
    ds = dcmread(path, stop_before_pixels=True)
    return InstanceRecord(
        study_instance_uid=Uid(ds.StudyInstanceUID),
        series_instance_uid=Uid(ds.SeriesInstanceUID),
        sop_instance_uid=Uid(ds.SOPInstanceUID),
        sop_class_uid=Uid(ds.SOPClassUID),
        transfer_syntax_uid=Uid(ds.file_meta.TransferSyntaxUID),
        blob_key=str(path),
        size=path.stat().st_size,
    )


def send(peer: Peer, *paths: Path) -> dict[Uid, str]:
    sender = DicomSender(
        "PACSFLOW", lambda name: ("127.0.0.1", peer.port), lambda inst: Path(inst.blob_key)
    )
    return dict(sender.send("PEER", [record(p) for p in paths]))


def copied(name: str, tmp: Path, change: Callable[[Dataset], None] | None = None) -> Path:
    """A copy of a pydicom sample with its own SOP Instance UID (some samples share one)."""
    ds = dcmread(sample(name))
    uid = UID(new_uid())
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    if change is not None:
        change(ds)
    out = tmp / f"{new_uid()}.dcm"
    ds.save_as(out, enforce_file_format=True)
    return out


def decodes(path: Path) -> bool:
    """Whether pydicom, with the decoders installed here, can decode the file's pixel data."""
    try:
        dcmread(path).decompress(generate_instance_uid=False)
    except RuntimeError:
        return False
    return True


def test_compressed_instances_go_decoded_to_a_peer_that_takes_only_uncompressed(
    uncompressed_peer: Peer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = [copied(name, tmp_path) for name in DECODABLE]
    with caplog.at_level(logging.INFO, logger="pacsflow.adapters.dicom.sender"):
        results = send(uncompressed_peer, *paths)
    assert set(results.values()) == {""}, results
    received = {str(ds.SOPInstanceUID): ds for ds in uncompressed_peer.received}
    for path in paths:
        original = dcmread(path)
        got = received[str(original.SOPInstanceUID)]  # the SOP Instance UID is kept
        assert got.file_meta.TransferSyntaxUID in UNCOMPRESSED, path.name
        assert not got["PixelData"].is_undefined_length
        assert np.array_equal(got.pixel_array, original.pixel_array), path.name
        assert got.get("LossyImageCompression") == original.get("LossyImageCompression")
        assert got.PatientID == original.PatientID
    jpeg = received[str(dcmread(paths[1]).SOPInstanceUID)]
    assert (jpeg.LossyImageCompression, jpeg.LossyImageCompressionMethod) == ("01", "ISO_10918_1")
    transcoded = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(transcoded) == len(paths)
    assert "from JPEG Baseline (Process 1) to Explicit VR Little Endian for PEER" in "\n".join(
        transcoded
    )


#: Big endian samples: 16-bit MR, 32-bit RT dose (swapped per sample), 8-bit RGB.
BIG_ENDIAN = ["MR_small_bigendian.dcm", "rtdose_expb.dcm", "SC_rgb_small_odd_big_endian.dcm"]


def test_big_endian_instances_reach_a_little_endian_peer_losslessly(
    uncompressed_peer: Peer, tmp_path: Path
) -> None:
    with pydicom_config.disable_value_validation():  # an RT sample's UID has a leading zero
        paths = [copied(name, tmp_path) for name in BIG_ENDIAN]
        results = send(uncompressed_peer, *paths)
        assert set(results.values()) == {""}, results
        received = {str(ds.SOPInstanceUID): ds for ds in uncompressed_peer.received}
        for path in paths:
            original = dcmread(path)
            got = received[str(original.SOPInstanceUID)]
            assert got.file_meta.TransferSyntaxUID in UNCOMPRESSED, path.name
            assert np.array_equal(got.pixel_array, original.pixel_array), path.name
            assert got.Rows == original.Rows


def test_a_peer_that_takes_the_stored_syntax_gets_the_stored_bytes(
    any_peer: Peer, tmp_path: Path
) -> None:
    paths = [copied(name, tmp_path) for name in [*DECODABLE, "JPEG-lossy.dcm"]]
    results = send(any_peer, *paths)
    assert set(results.values()) == {""}, results
    by_uid = {
        str(ds.SOPInstanceUID): (ds, raw)
        for ds, raw in zip(any_peer.received, any_peer.raw, strict=True)
    }
    for path in paths:
        original = dcmread(path)
        got, raw = by_uid[str(original.SOPInstanceUID)]
        assert got.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert got.PixelData == original.PixelData, path.name  # still encapsulated, unchanged
        assert path.read_bytes().endswith(raw), path.name  # the file's data set, byte for byte


def test_a_peer_that_takes_only_implicit_vr_gets_implicit_vr(implicit_peer: Peer) -> None:
    path = sample("SC_rgb_jpeg_dcmtk.dcm")
    assert send(implicit_peer, path) == {Uid(dcmread(path).SOPInstanceUID): ""}
    [got] = implicit_peer.received
    assert got.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert np.array_equal(got.pixel_array, dcmread(path).pixel_array)
    assert got.PhotometricInterpretation == "RGB"


def test_an_uncompressed_instance_is_re_encoded_for_a_peer_that_takes_only_implicit_vr(
    implicit_peer: Peer, tmp_path: Path
) -> None:
    def utf8(ds: Dataset) -> None:
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName = "Dvořák^Antonín"

    path = copied("CT_small.dcm", tmp_path, utf8)  # explicit VR little endian
    assert send(implicit_peer, path) == {Uid(dcmread(path).SOPInstanceUID): ""}
    [got] = implicit_peer.received
    original = dcmread(path)
    assert got.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert got.PatientName == "Dvořák^Antonín"
    assert got.SliceLocation == original.SliceLocation
    assert np.array_equal(got.pixel_array, original.pixel_array)


def test_a_lossy_original_that_does_not_say_so_arrives_marked_lossy(
    uncompressed_peer: Peer, tmp_path: Path
) -> None:
    def unmark(ds: Dataset) -> None:
        for keyword in ("LossyImageCompression", "LossyImageCompressionMethod"):
            if keyword in ds:
                delattr(ds, keyword)

    jpeg = copied("SC_rgb_jpeg_dcmtk.dcm", tmp_path, unmark)
    j2k = copied("JPEG2000.dcm", tmp_path, unmark)
    results = send(uncompressed_peer, jpeg, j2k)
    assert set(results.values()) == {""}, results
    marks = sorted(
        (ds.LossyImageCompression, ds.LossyImageCompressionMethod)
        for ds in uncompressed_peer.received
    )
    assert marks == [("01", "ISO_10918_1"), ("01", "ISO_15444_1")]


def test_a_reversible_jpeg_2000_is_not_marked_lossy(
    uncompressed_peer: Peer, tmp_path: Path
) -> None:
    def relabel(ds: Dataset) -> None:  # JPEG 2000 (.91) may be reversible too
        ds.file_meta.TransferSyntaxUID = JPEG2000

    path = copied("MR_small_jp2klossless.dcm", tmp_path, relabel)
    assert set(send(uncompressed_peer, path).values()) == {""}
    [got] = uncompressed_peer.received
    assert "LossyImageCompression" not in got
    assert np.array_equal(got.pixel_array, dcmread(sample("MR_small_jp2klossless.dcm")).pixel_array)


def test_an_instance_that_cannot_be_decoded_is_refused_with_the_reason(
    uncompressed_peer: Peer, tmp_path: Path
) -> None:
    def corrupt(ds: Dataset) -> None:
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 64])

    broken = copied("JPEG2000.dcm", tmp_path, corrupt)
    broken_uid = Uid(dcmread(broken).SOPInstanceUID)
    lossy12 = copied("JPEG-lossy.dcm", tmp_path)  # 12-bit JPEG extended: GDCM cannot decode it
    lossy12_uid = Uid(dcmread(lossy12).SOPInstanceUID)
    good = copied("MR_small_RLE.dcm", tmp_path)
    results = send(uncompressed_peer, broken, lossy12, good)
    assert results[Uid(dcmread(good).SOPInstanceUID)] == ""  # the others still go
    assert results[broken_uid].startswith(
        "cannot decode its JPEG 2000 Image Compression pixel data to send it uncompressed: "
    ), results
    if decodes(lossy12):
        assert results[lossy12_uid] == ""
    else:
        assert results[lossy12_uid].startswith("cannot decode its JPEG Extended"), results
        assert "12-bit" in results[lossy12_uid]
    assert {str(ds.SOPInstanceUID) for ds in uncompressed_peer.received} <= {
        str(dcmread(good).SOPInstanceUID),
        str(lossy12_uid),
    }


def test_an_instance_too_large_to_decode_is_refused(
    uncompressed_peer: Peer, tmp_path: Path
) -> None:
    def huge(ds: Dataset) -> None:  # a header that claims 64k x 64k x 2 bytes x 200 frames
        ds.Rows = ds.Columns = 65535
        ds.NumberOfFrames = 200

    path = copied("JPEG2000.dcm", tmp_path, huge)
    [reason] = send(uncompressed_peer, path).values()
    assert "exceeds the transcoding limit" in reason
    assert uncompressed_peer.received == []


def test_a_study_in_a_compressed_syntax_is_sent_in_it_when_the_peer_takes_both(
    any_peer: Peer,
) -> None:
    baseline = sample("SC_rgb_jpeg_dcmtk.dcm")
    extended = sample("JPEG-lossy.dcm")
    plain = sample("CT_small.dcm")
    assert set(send(any_peer, baseline, extended, plain).values()) == {""}
    syntaxes = sorted(str(ds.file_meta.TransferSyntaxUID) for ds in any_peer.received)
    assert syntaxes == sorted([JPEGBaseline8Bit, JPEGExtended12Bit, ExplicitVRLittleEndian])


ROUTE_SC = """
rules:
  - name: sc-to-orthanc
    when: {Modality: OT}
    send_to: [ORTHANC]
"""


@pytest.mark.orthanc
@pytest.mark.dcmtk
@requires_dcmtk
def test_a_jpeg_study_is_routed_to_an_orthanc_that_takes_only_uncompressed(
    tmp_path: Path,
) -> None:
    reason = orthanc_unavailable()
    if reason is not None:
        pytest.skip(reason)
    only_uncompressed = {"AcceptedTransferSyntaxes": list(UNCOMPRESSED)}
    with OrthancPeer(tmp_path / "orthanc", extra_config=only_uncompressed) as orthanc:
        settings = make_settings(
            tmp_path,
            peers=[DicomPeer(ae_title="ORTHANC", host="127.0.0.1", port=orthanc.dicom_port)],
            job_poll_seconds=0.05,
        )
        node = Pacsflow(settings)
        node.start()
        try:
            node.routing.save(ROUTE_SC, ActiveParticipant("ops", is_requestor=True), activate=True)
            sop_uid, _ = send_scheduled(node, tmp_path, "SC_rgb_jpeg_dcmtk.dcm", "jpeg")
            deadline = time.monotonic() + 20
            while sop_uid not in orthanc.instances() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sop_uid in orthanc.instances(), node.jobs.list()
            [orthanc_id] = orthanc.rest_post(
                "/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": sop_uid}}
            )
            syntax = orthanc.rest_get(f"/instances/{orthanc_id}/metadata?expand")
            assert syntax["TransferSyntax"] in UNCOMPRESSED
            assert syntax["TransferSyntax"] != JPEGBaseline8Bit
            file = httpx.get(f"{orthanc.url}/instances/{orthanc_id}/file", trust_env=False)
            stored = dcmread(BytesIO(file.content))
            assert stored.LossyImageCompression == "01"
            assert stored.PhotometricInterpretation == "RGB"
            sent = dcmread(sample("SC_rgb_jpeg_dcmtk.dcm"))
            assert np.array_equal(stored.pixel_array, sent.pixel_array)
        finally:
            node.stop()


def test_a_forwarded_object_carries_the_index_identity_not_the_files(
    any_peer: Peer, tmp_path: Path
) -> None:
    """After an A08 (or a merge, a correction, a split) the index knows better than the file."""
    from datetime import date

    from pacsflow.domain.patients import (
        Demographics,
        Issuer,
        Patient,
        PatientId,
        PatientIdentifier,
        PersonName,
    )
    from pacsflow.domain.studies import StudyRecord, StudyState
    from pacsflow.workflow.queries import StudyView
    from tests import factories as f

    path = copied("CT_small.dcm", tmp_path)
    inst = record(path)
    ds = dcmread(path)
    renamed = Patient(
        identifiers=(PatientIdentifier(PatientId("NEW-1"), Issuer("HOSP")),),
        demographics=Demographics(PersonName("Updated", "Name"), date(1970, 1, 2), "O"),
    )
    moved = Uid(new_uid())
    view = StudyView(
        StudyRecord(
            study_instance_uid=moved,
            state=StudyState.PUBLISHED,
            received=f.received(),
            patient=renamed.primary,
            accession_number="ACC-NEW",
        ),
        renamed,
    )
    sender = DicomSender("PACSFLOW", lambda _ae: ("127.0.0.1", any_peer.port), lambda _i: path)
    coercing = DicomSender(
        "PACSFLOW", lambda _ae: ("127.0.0.1", any_peer.port), lambda _i: path, lambda _u: view
    )
    assert sender.send("PEER", [inst]) == {inst.sop_instance_uid: ""}
    assert coercing.send("PEER", [inst]) == {inst.sop_instance_uid: ""}
    as_stored, coerced = any_peer.received
    assert str(as_stored.PatientName) == str(ds.PatientName)
    assert (str(coerced.PatientName), coerced.PatientID, coerced.IssuerOfPatientID) == (
        "Updated^Name",
        "NEW-1",
        "HOSP",
    )
    assert (coerced.AccessionNumber, coerced.StudyInstanceUID) == ("ACC-NEW", moved)
    assert coerced.PixelData == ds.PixelData
