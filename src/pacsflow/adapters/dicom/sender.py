"""Outbound DICOM: stored instances to a peer by C-STORE, storage commitment reports by
N-EVENT-REPORT, and reading the attributes of stored instances.

Transfer syntaxes (an association may propose several presentation contexts for the same
SOP class): per SOP class one context proposes explicit and implicit VR little endian
plus the stored uncompressed syntaxes (pydicom re-encodes uncompressed data sets losslessly),
and each compressed (encapsulated) stored syntax gets a context of its own. A compressed
instance goes in its stored syntax when the peer accepts that context, byte for byte; only
when it refuses it is the pixel data decoded (pydicom with GDCM, or its own RLE decoder) and
sent as explicit or implicit VR little endian. Decoding keeps the SOP Instance UID and never
makes a lossy original look lossless: Lossy Image Compression stays "01", and is set to "01"
when a lossy syntax was the only record of it (PS3.3 C.7.6.1.1.5: once "01", never reset).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
)
from pynetdicom import AE, evt
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
)

from pacsflow.adapters.dicom.byte_order import as_little_endian, is_big_endian
from pacsflow.adapters.dicom.datasets import coerce_identity, read_header, set_patient
from pacsflow.adapters.dicom.status import NO_SUCH_OBJECT_INSTANCE, SUCCESS
from pacsflow.domain.commitment import CommitmentFailure, CommitmentResult, InstanceReference
from pacsflow.domain.errors import PermanentError, TransientError
from pacsflow.domain.studies import InstanceRecord
from pacsflow.domain.uids import Uid
from pacsflow.workflow.queries import StudyView

log = logging.getLogger(__name__)

_UNCOMPRESSED: tuple[str, ...] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
#: Syntaxes pydicom reads and writes without decoding the pixel data.
_REENCODABLE: tuple[str, ...] = (
    *_UNCOMPRESSED,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
)
#: Presentation contexts per association (PS3.8 allows 128).
_MAX_CONTEXTS = 120
_CONNECT_TIMEOUT = 10.0
#: Key of the per-class context with the syntaxes pydicom can re-encode without decoding.
_NATIVE = "native"
#: Largest decoded pixel data pacsflow builds in memory to send one instance uncompressed;
#: the peak while sending is about twice this (the data set, then its encoding).
_MAX_DECODED_BYTES = 1 << 30
#: Syntaxes that are always lossy, with the Lossy Image Compression Method (PS3.3 C.7.6.1.1.5).
_LOSSY_METHOD = {
    JPEGBaseline8Bit: "ISO_10918_1",
    JPEGExtended12Bit: "ISO_10918_1",
    JPEGLSNearLossless: "ISO_14495_1",
}
#: Syntaxes that may be lossy: JPEG 2000 is when its codestream uses the irreversible wavelet.
_J2K_METHOD = {JPEG2000: "ISO_15444_1", HTJ2K: "ISO_15444_15"}


def _nodelay(event: evt.Event) -> None:
    sock = event.assoc.dul.socket
    if sock is not None and sock.socket is not None:
        sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _is_compressed(syntax: str) -> bool:
    """True unless pydicom re-encodes the syntax without decoding pixel data."""
    return syntax not in _REENCODABLE


def _native(stored: str) -> list[str]:
    """The syntaxes of the per-class native context an instance needs, best first."""
    first = [stored] if stored in _REENCODABLE else []
    return [*first, *[ts for ts in _UNCOMPRESSED if ts != stored]]


def _contexts(inst: InstanceRecord) -> list[tuple[str, str]]:
    """The (SOP class, context key) pairs an instance needs: its own syntax, then native."""
    native = (str(inst.sop_class_uid), _NATIVE)
    if _is_compressed(inst.transfer_syntax_uid):
        return [(inst.sop_class_uid, inst.transfer_syntax_uid), native]
    return [native]


def _choices(inst: InstanceRecord) -> list[str]:
    """The syntaxes an instance can be sent in, most preferred first (the stored one)."""
    stored = inst.transfer_syntax_uid
    return [stored, *[ts for ts in _UNCOMPRESSED if ts != stored]]


class DicomSender:
    """Sends instances to configured peers (one association per batch) and commitment
    reports to their requestors."""

    def __init__(
        self,
        ae_title: str,
        address: Callable[[str], tuple[str, int] | None],
        local_path: Callable[[InstanceRecord], Path | None],
        study: Callable[[Uid], StudyView | None] = lambda _uid: None,
    ) -> None:
        self._ae_title = ae_title
        self._address = address
        self._local_path = local_path
        self._study = study

    def send(self, destination: str, instances: Sequence[InstanceRecord]) -> Mapping[Uid, str]:
        """C-STORE each instance; per SOP Instance UID "" when accepted, else the reason."""
        address = self._address(destination)
        if address is None:
            raise PermanentError(f"{destination} is not a configured peer")
        host, port = address
        results: dict[Uid, str] = {}
        pending = list(instances)
        while pending:
            batch, pending = self._fit(pending)
            results.update(self._send_batch(destination, host, port, batch))
        return results

    def report_commitment(self, requestor: str, result: CommitmentResult) -> None:
        """Send a storage commitment result as an N-EVENT-REPORT (PS3.4 J.3.3).

        On a new association to the requestor, where pacsflow takes the SCP role of the
        Storage Commitment Push Model (role selection).
        """
        address = self._address(requestor)
        if address is None:
            raise PermanentError(f"AE {requestor!r} is not a configured peer: no address")
        host, port = address
        report = _commitment_report(result)
        ensure_reachable(host, port, requestor)
        ae = AE(ae_title=self._ae_title)
        ae.add_requested_context(StorageCommitmentPushModel)
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid = UID(StorageCommitmentPushModel)
        role.scu_role = False
        role.scp_role = True
        assoc = ae.associate(
            host,
            port,
            ae_title=requestor,
            ext_neg=[role],
            evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay)],
        )
        if not assoc.is_established:
            raise TransientError(f"cannot associate with {requestor} at {host}:{port}")
        try:
            answer, _ = assoc.send_n_event_report(
                report,
                2 if result.failed else 1,
                StorageCommitmentPushModel,
                StorageCommitmentPushModelInstance,
            )
        finally:
            assoc.release()
        code = int(getattr(answer, "Status", -1)) if answer else -1
        if code != SUCCESS:
            raise TransientError(f"{requestor} answered the report with status {code:#06x}")

    def _fit(
        self, instances: list[InstanceRecord]
    ) -> tuple[list[InstanceRecord], list[InstanceRecord]]:
        """As many instances as fit the presentation contexts of one association."""
        contexts: set[tuple[str, str]] = set()
        for n, inst in enumerate(instances):
            more = contexts.union(_contexts(inst))
            if len(more) > _MAX_CONTEXTS and contexts:
                return instances[:n], instances[n:]
            contexts = more
        return instances, []

    def _send_batch(
        self, destination: str, host: str, port: int, batch: list[InstanceRecord]
    ) -> dict[Uid, str]:
        ensure_reachable(host, port, destination, _CONNECT_TIMEOUT)
        ae = AE(ae_title=self._ae_title)
        ae.acse_timeout = 30
        ae.dimse_timeout = 120
        ae.network_timeout = 120
        wanted: dict[tuple[str, str], list[str]] = {}
        for inst in batch:
            for sop_class, key in _contexts(inst):
                syntaxes = wanted.setdefault((sop_class, key), [] if key == _NATIVE else [key])
                if key == _NATIVE:
                    syntaxes.extend(
                        ts for ts in _native(inst.transfer_syntax_uid) if ts not in syntaxes
                    )
        # A compressed syntax alone in its context: offered with the uncompressed ones, a peer
        # that prefers uncompressed (Orthanc does) would pick those and force a transcoding.
        ae.requested_contexts = [build_context(cls, ts) for (cls, _), ts in wanted.items()]
        assoc = ae.associate(
            host, port, ae_title=destination, evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay)]
        )
        if not assoc.is_established:
            raise TransientError(f"{destination} did not accept an association")
        results: dict[Uid, str] = {}
        views: dict[Uid, StudyView | None] = {}
        try:
            accepted = {
                (str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in assoc.accepted_contexts
            }
            for inst in batch:
                uid = inst.sop_instance_uid
                choices = _choices(inst)
                syntaxes = [ts for ts in choices if (inst.sop_class_uid, ts) in accepted]
                if not syntaxes:
                    results[uid] = (
                        f"{destination} accepts {inst.sop_class_uid} in none of "
                        f"{', '.join(choices)}"
                    )
                    continue
                if inst.study_instance_uid not in views:
                    views[inst.study_instance_uid] = self._study(inst.study_instance_uid)
                view = views[inst.study_instance_uid]
                results[uid] = self._store(assoc, destination, inst, syntaxes[0], view)
                if not assoc.is_established:
                    for rest in batch:
                        results.setdefault(rest.sop_instance_uid, "association lost")
                    break
        finally:
            if assoc.is_established:
                assoc.release()
        return results

    def _store(
        self,
        assoc: object,
        destination: str,
        inst: InstanceRecord,
        syntax: str,
        view: StudyView | None,
    ) -> str:
        path = self._local_path(inst)
        if path is None:
            return "the stored object is not available locally"
        coerce = view is not None and view.patient is not None and _identity_differs(path, view)
        if syntax == inst.transfer_syntax_uid and not coerce:
            # pynetdicom streams a file in its own syntax straight from disk.
            status = assoc.send_c_store(path)  # type: ignore[attr-defined]
        else:
            if _is_compressed(inst.transfer_syntax_uid) and syntax != inst.transfer_syntax_uid:
                log.info(
                    "transcoding a %s instance from %s to %s for %s",
                    UID(inst.sop_class_uid).name,
                    UID(inst.transfer_syntax_uid).name,
                    UID(syntax).name,
                    destination,
                )
                log.debug("transcoding %s", inst.sop_instance_uid)
                ds = _decoded(path, UID(inst.transfer_syntax_uid))
                if isinstance(ds, str):
                    return ds
            else:
                ds = dcmread(path)
            if coerce and view is not None and view.patient is not None:
                # The index's identity (updates, merges, corrections, splits), not the file's.
                coerce_identity(
                    ds, view.patient, view.study.accession_number, view.study.study_instance_uid
                )
            status = assoc.send_c_store(_encoded_as(ds, UID(syntax)))  # type: ignore[attr-defined]
        code = int(getattr(status, "Status", -1)) if status else -1
        if code == 0 or 0xB000 <= code < 0xC000:  # success or warning: stored
            return ""
        return f"C-STORE status {code:#06x}" if code >= 0 else "no C-STORE response"


def ensure_reachable(host: str, port: int, ae_title: str, timeout: float = 5.0) -> None:
    """Raise TransientError unless host:port accepts a TCP connection.

    pynetdicom leaks its socket when a connection is refused; probing first keeps a peer
    that is down from costing a file descriptor per retry.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise TransientError(f"cannot reach {ae_title} at {host}:{port}: {exc}") from exc


def _commitment_report(result: CommitmentResult) -> Dataset:
    """The N-EVENT-REPORT's Event Information: committed and failed references."""
    report = Dataset()
    report.TransactionUID = result.transaction_uid
    committed = [_reference(ref) for ref in result.committed]
    failed = []
    for failure in result.failed:
        item = _reference(failure.reference)
        item.FailureReason = _FAILURE_REASON[failure.reason]
        failed.append(item)
    if committed:
        report.ReferencedSOPSequence = committed
    if failed:
        report.FailedSOPSequence = failed
    return report


def _reference(ref: InstanceReference) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ref.sop_class_uid
    item.ReferencedSOPInstanceUID = ref.sop_instance_uid
    return item


#: Failure Reason (0008,1197) per commitment failure (PS3.4 J.3.3.1.1).
_FAILURE_REASON = {CommitmentFailure.UNKNOWN_INSTANCE: NO_SUCH_OBJECT_INSTANCE}


def _identity_differs(path: Path, view: StudyView) -> bool:
    """True when the file's patient, accession or study differ from the index's.

    A file that already carries the index's identity is sent byte for byte; Other Patient
    IDs (aliases, links) alone do not make a difference.
    """
    assert view.patient is not None
    header = read_header(path)
    wanted = Dataset()
    set_patient(wanted, view.patient)
    wanted.AccessionNumber = view.study.accession_number
    wanted.StudyInstanceUID = view.study.study_instance_uid
    return any(
        str(header.get(keyword, "") or "").strip() != str(wanted.get(keyword, "") or "").strip()
        for keyword in _IDENTITY
    )


_IDENTITY = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyInstanceUID",
)


def _encoded_as(ds: Dataset, syntax: UID) -> Dataset:
    """The data set to send in `syntax`: pynetdicom sends one only in the encoding it was read
    in, so a change of VR mode or byte order goes through pydicom's writer and back."""
    if is_big_endian(ds) and syntax.is_little_endian:
        ds = as_little_endian(ds)  # pydicom's writer does not swap OW/OF/... values
    ds.file_meta.TransferSyntaxUID = syntax
    if ds.original_encoding == (syntax.is_implicit_VR, syntax.is_little_endian):
        return ds
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return dcmread(buffer)


def _decoded(path: Path, stored: UID) -> Dataset | str:
    """The stored object with its pixel data decoded (explicit VR little endian), or why not."""
    try:
        ds = dcmread(path)
        if "PixelData" not in ds:  # nothing encapsulated: pydicom re-encodes the rest
            return ds
        size = _decoded_size(ds)
        if size > _MAX_DECODED_BYTES:
            return (
                f"cannot send uncompressed: {size >> 20} MiB of decoded pixel data exceeds "
                f"the transcoding limit of {_MAX_DECODED_BYTES >> 20} MiB"
            )
        method = _lossy_method(ds, stored)
        ds.decompress(generate_instance_uid=False)
    except Exception as exc:  # noqa: BLE001 - decoders fail in many ways; the reason is kept
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return f"cannot decode its {stored.name} pixel data to send it uncompressed: {reason}"
    if method and ds.get("LossyImageCompression") != "01":
        ds.LossyImageCompression = "01"
        if "LossyImageCompressionMethod" not in ds:
            ds.LossyImageCompressionMethod = method
    return ds


def _decoded_size(ds: Dataset) -> int:
    """Bytes of pixel data once decoded, from the Image Pixel module (PS3.3 C.7.6.3)."""
    frames = int(ds.get("NumberOfFrames") or 1)
    samples = int(ds.get("SamplesPerPixel") or 1)
    bits = int(ds.BitsAllocated)
    return int(ds.Rows) * int(ds.Columns) * samples * frames * ((bits + 7) // 8)


def _lossy_method(ds: Dataset, stored: UID) -> str:
    """The lossy compression method the stored syntax shows, or "" when it shows none."""
    if stored in _LOSSY_METHOD:
        return _LOSSY_METHOD[stored]
    if stored in _J2K_METHOD:
        frames = generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames") or 1))
        first = next(frames, b"")
        return _J2K_METHOD[stored] if _is_irreversible_j2k(first) else ""
    return ""


def _is_irreversible_j2k(codestream: bytes) -> bool:
    """True when a JPEG 2000 codestream uses the 9-7 irreversible wavelet (ISO 15444-1 A.6.1).

    Walks the main header from SIZ to COD; the transform is the last byte of SPcod.
    """
    if codestream[:4] != b"\xff\x4f\xff\x51":
        return False
    offset = 2
    while offset + 4 <= len(codestream):
        marker = codestream[offset : offset + 2]
        if marker == b"\xff\x52":
            return len(codestream) > offset + 13 and codestream[offset + 13] == 0
        if marker == b"\xff\x90":  # SOT: the main header ended without COD
            return False
        offset += 2 + int.from_bytes(codestream[offset + 2 : offset + 4], "big")
    return False


def read_attributes(path: Path) -> dict[str, tuple[str, ...]]:
    """The top-level attributes of a stored file (no pixel data, no sequences) as text."""
    ds = dcmread(path, stop_before_pixels=True)
    return attributes_of(ds)


def attributes_of(ds: Dataset) -> dict[str, tuple[str, ...]]:
    """keyword -> values as text, for routing conditions."""
    out: dict[str, tuple[str, ...]] = {}
    for elem in ds:
        if not elem.keyword or elem.VR in ("SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN"):
            continue
        value = elem.value
        if value is None or value == "":
            continue
        values = value if elem.VM > 1 else [value]
        out[elem.keyword] = tuple(str(v) for v in values)
    return out


__all__ = ["DicomSender", "attributes_of", "ensure_reachable", "read_attributes"]
