"""The fast C-STORE receive path (adapters/dicom/fastpath/) against real and raw peers.

Storage-only associations are served by pacsflow's own receive loop, everything else by
pynetdicom. These tests check that a peer cannot tell the difference: same negotiation, same
stored bytes, same statuses, fragments in any size, and that an association that breaks off
leaves nothing behind and the listener serving.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.dsutils import encode
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from pacsflow.adapters.dicom.fastpath.receiver import FastStore
from pacsflow.app import Pacsflow
from pacsflow.config import DicomPeer
from pacsflow.domain.uids import Uid
from tests.conftest import dcmtk, make_settings, requires_dcmtk, restamp, storescu

pytestmark = pytest.mark.dcmtk


def start(tmp_path: Path, **kw: object) -> Pacsflow:
    node = Pacsflow(make_settings(tmp_path, None, dicom_open=True, **kw))
    node.start()
    return node


@pytest.fixture
def fast_node(tmp_path: Path) -> Iterator[Pacsflow]:
    node = start(tmp_path / "fast")
    yield node
    node.stop()


def stored_file(node: Pacsflow, sop_uid: str) -> Path:
    """The stored file of an instance (studies of unknown patients are held, not queryable)."""
    [path] = (node.settings.data_dir / "objects").glob(f"*/{sop_uid}.*.dcm")
    return path


def sent_elements(ds: Dataset) -> dict[int, object]:
    """What storescu sends of a file: no group lengths, no Data Set Trailing Padding."""
    return {int(e.tag): e.value for e in ds if e.tag.element != 0 and e.tag != 0xFFFCFFFC}


def spooled(node: Pacsflow) -> list[Path]:
    """Received files not yet stored (the spool is the data dir's tmp)."""
    return sorted((node.settings.data_dir / "tmp").glob("rx-*"))


# -- raw peer helpers --------------------------------------------------------------------------


def read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    head = recv_exact(sock, 6)
    return head[0], recv_exact(sock, int.from_bytes(head[2:6], "big"))


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = sock.recv(n - len(data))
        if not more:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += more
    return data


def associate(port: int, *abstract: str) -> tuple[socket.socket, int, bytes]:
    """A raw association proposing each abstract syntax (explicit VR LE) as contexts 1, 3, ..."""
    prim = A_ASSOCIATE()
    prim.application_context_name = UID("1.2.840.10008.3.1.1.1")
    prim.calling_ae_title = "RAWSCU"
    prim.called_ae_title = "PACSFLOW"
    contexts = []
    for i, uid in enumerate(abstract):
        cx = build_context(uid, [ExplicitVRLittleEndian])
        cx.context_id = 2 * i + 1
        contexts.append(cx)
    prim.presentation_context_definition_list = contexts
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 16384
    impl = ImplementationClassUIDNotification()
    impl.implementation_class_uid = UID("1.2.826.0.1.3680043.9.7433.1")
    prim.user_information = [max_length, impl]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(prim)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(pdu.encode())
    kind, body = read_pdu(sock)
    return sock, kind, body


def command(**elements: object) -> bytes:
    """A DIMSE command set, Implicit VR Little Endian with its group length."""
    ds = Dataset()
    ds.CommandGroupLength = 0
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.CommandGroupLength = len(encode(ds, True, True) or b"") - 12
    data = encode(ds, True, True)
    assert data is not None
    return data


def p_data(context_id: int, control: int, data: bytes) -> bytes:
    item = (len(data) + 2).to_bytes(4, "big") + bytes((context_id, control)) + data
    return b"\x04\x00" + len(item).to_bytes(4, "big") + item


def answer(sock: socket.socket) -> Dataset:
    """The command set of the next P-DATA-TF (one PDV, the command's last fragment)."""
    kind, body = read_pdu(sock)
    assert kind == 0x04, f"PDU type {kind:#04x}"
    assert body[5] == 0x03  # a command, last fragment
    return read_dataset(BytesIO(body[6:]), True, True)


def data_set_bytes(ds: Dataset) -> bytes:
    data = encode(ds, False, True)
    assert data is not None
    return data


def ct(tmp_path: Path) -> Dataset:
    _, ds = restamp("CT_small.dcm", tmp_path / "ct.dcm", patient_id="FAST-1")
    return ds


def store_request(ds: Dataset, sop_uid: str | None = None) -> bytes:
    return command(
        AffectedSOPClassUID=CTImageStorage,
        CommandField=0x0001,
        MessageID=7,
        Priority=0,
        CommandDataSetType=0x0000,
        AffectedSOPInstanceUID=sop_uid or ds.SOPInstanceUID,
    )


# -- the tests -------------------------------------------------------------------------------


@requires_dcmtk
def test_storage_associations_take_the_fast_path_and_others_do_not(fast_node: Pacsflow) -> None:
    before = fast_node.dicom.fast_associations
    path, ds = restamp("CT_small.dcm", fast_node.settings.data_dir / "in.dcm", patient_id="F1")
    res = storescu(fast_node.dicom.port, path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert fast_node.dicom.fast_associations == before + 1
    assert fast_node.queries.instance_known(Uid(ds.SOPInstanceUID))
    echo = dcmtk("echoscu", "-aec", "PACSFLOW", "127.0.0.1", fast_node.dicom.port)
    assert echo.returncode == 0
    assert fast_node.dicom.fast_associations == before + 2  # Verification alone: fast too
    find = dcmtk(
        "findscu", "-S", "-aec", "PACSFLOW", "-k", "QueryRetrieveLevel=STUDY",
        "-k", "PatientID=F1", "127.0.0.1", fast_node.dicom.port,
    )  # fmt: skip
    assert find.returncode == 0, find.stdout + find.stderr
    assert fast_node.dicom.fast_associations == before + 2  # C-FIND: pynetdicom


@requires_dcmtk
def test_both_receive_paths_store_the_same_bytes(tmp_path: Path) -> None:
    fast, slow = start(tmp_path / "fast"), start(tmp_path / "slow", dicom_fast_storage=False)
    try:
        for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "rtplan.dcm"):
            path, ds = restamp(name, tmp_path / name, patient_id="SAME")
            for node in (fast, slow):
                res = storescu(node.dicom.port, path)
                assert res.returncode == 0, res.stdout + res.stderr
            uid = str(ds.SOPInstanceUID)
            assert stored_file(fast, uid).read_bytes() == stored_file(slow, uid).read_bytes()
        assert fast.dicom.fast_associations >= 4
        assert slow.dicom.fast_associations == 0
    finally:
        fast.stop()
        slow.stop()


@requires_dcmtk
def test_small_pdus_are_reassembled(tmp_path: Path) -> None:
    node = start(tmp_path, dicom_max_pdu=4096)  # CT_small's 39 KB arrive in ten PDUs
    try:
        path, ds = restamp("CT_small.dcm", tmp_path / "ct.dcm", patient_id="PDU")
        res = storescu(node.dicom.port, path)
        assert res.returncode == 0, res.stdout + res.stderr
        assert node.dicom.fast_associations == 1
        # storescu drops group lengths and trailing padding; everything else arrives intact
        assert sent_elements(dcmread(stored_file(node, ds.SOPInstanceUID))) == (
            sent_elements(dcmread(path))
        )
    finally:
        node.stop()


def test_commands_and_data_sets_in_fragments(fast_node: Pacsflow, tmp_path: Path) -> None:
    sock, kind, _ = associate(fast_node.dicom.port, str(Verification), CTImageStorage)
    with sock:
        assert kind == 0x02  # A-ASSOCIATE-AC
        echo = command(
            AffectedSOPClassUID=Verification, CommandField=0x0030, MessageID=1,
            CommandDataSetType=0x0101,
        )  # fmt: skip
        sock.sendall(p_data(1, 0x01, echo[:10]) + p_data(1, 0x03, echo[10:]))
        rsp = answer(sock)
        assert (rsp.CommandField, rsp.MessageIDBeingRespondedTo, rsp.Status) == (0x8030, 1, 0)
        ds = ct(tmp_path)
        data = data_set_bytes(ds)
        request = store_request(ds)
        third = len(data) // 3
        sock.sendall(
            p_data(3, 0x01, request[:20])
            + p_data(3, 0x03, request[20:])
            + p_data(3, 0x00, data[:third])
            + p_data(3, 0x00, data[third : 2 * third])
            + p_data(3, 0x02, data[2 * third :])
        )
        rsp = answer(sock)
        assert (rsp.CommandField, rsp.MessageIDBeingRespondedTo, rsp.Status) == (0x8001, 7, 0)
        assert rsp.AffectedSOPInstanceUID == ds.SOPInstanceUID
        sock.sendall(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00")  # A-RELEASE-RQ
        assert read_pdu(sock)[0] == 0x06  # A-RELEASE-RP
    assert fast_node.queries.instance_known(Uid(ds.SOPInstanceUID))


def test_a_refused_object_gets_a_failure_status_with_the_reason(
    fast_node: Pacsflow, tmp_path: Path
) -> None:
    sock, kind, _ = associate(fast_node.dicom.port, CTImageStorage)
    with sock:
        assert kind == 0x02
        ds = ct(tmp_path)
        other_uid = "1.2.826.0.1.3680043.9.7433.99.1"
        sock.sendall(
            p_data(1, 0x03, store_request(ds, other_uid)) + p_data(1, 0x02, data_set_bytes(ds))
        )
        rsp = answer(sock)
        assert rsp.Status == 0xA900
        assert "differs" in rsp.ErrorComment
        assert rsp.AffectedSOPInstanceUID == other_uid
    assert not fast_node.queries.instance_known(Uid(ds.SOPInstanceUID))


def big_ct(tmp_path: Path) -> Dataset:
    """A CT of 1024 x 1024 x 16 bit: 2 MiB, more than the fast path keeps in memory."""
    ds = ct(tmp_path)
    ds.Rows = ds.Columns = 1024
    ds.PixelData = bytes(2 * 1024 * 1024)
    return ds


@pytest.mark.parametrize("ending", ["abort", "disconnect", "garbage"])
@pytest.mark.parametrize("size", ["small", "spooled"])
def test_an_association_broken_off_mid_data_set_leaves_nothing(
    fast_node: Pacsflow, tmp_path: Path, ending: str, size: str
) -> None:
    sock, kind, _ = associate(fast_node.dicom.port, CTImageStorage)
    ds = ct(tmp_path) if size == "small" else big_ct(tmp_path)
    data = data_set_bytes(ds)
    sent = 1000 if size == "small" else 1_500_000  # the big one is spooled to a file by now
    with sock:
        assert kind == 0x02
        sock.sendall(p_data(1, 0x03, store_request(ds)))
        for start in range(0, sent, 16000):  # PDUs within our 16 KiB proposal
            sock.sendall(p_data(1, 0x00, data[start : min(start + 16000, sent)]))
        if ending == "abort":
            sock.sendall(b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00")
        elif ending == "garbage":
            sock.sendall(b"\x04\x00\x00\x00\x00\x09" + b"\xff" * 9)  # a PDV longer than its PDU
            kind, _ = read_pdu(sock)
            assert kind == 0x07  # we abort
    deadline = time.monotonic() + 5
    while spooled(fast_node) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spooled(fast_node) == []
    assert not fast_node.queries.instance_known(Uid(ds.SOPInstanceUID))
    path, _ = restamp("CT_small.dcm", tmp_path / "again.dcm", patient_id="FAST-2")
    res = storescu(fast_node.dicom.port, path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_association_limit_counts_fast_associations(tmp_path: Path) -> None:
    node = start(tmp_path, dicom_max_associations=1)
    try:
        first, kind, _ = associate(node.dicom.port, CTImageStorage)
        with first:
            assert kind == 0x02
            second, kind, body = associate(node.dicom.port, CTImageStorage)
            with second:
                assert kind == 0x03  # A-ASSOCIATE-RJ
                assert tuple(body[1:4]) == (0x02, 0x03, 0x02)  # transient, local limit
    finally:
        node.stop()


def test_stop_ends_open_fast_associations(tmp_path: Path) -> None:
    node = start(tmp_path)
    sock, kind, _ = associate(node.dicom.port, CTImageStorage)
    with sock:
        assert kind == 0x02
        started = time.monotonic()
        node.stop()
        assert time.monotonic() - started < 5
        sock.settimeout(5)
        assert read_pdu(sock)[0] == 0x07  # A-ABORT


def test_strict_titles_reject_on_the_fast_path_too(tmp_path: Path) -> None:
    peer = DicomPeer(ae_title="MODALITY", host="127.0.0.1", port=9)
    node = Pacsflow(make_settings(tmp_path, peers=[peer], dicom_strict=True))
    node.start()
    try:
        sock, kind, body = associate(node.dicom.port, CTImageStorage)
        sock.close()
        assert kind == 0x03
        assert tuple(body[1:4]) == (0x01, 0x01, 0x03)  # permanent, calling AE not recognised
    finally:
        node.stop()


def store_with_pynetdicom(node: Pacsflow, *datasets: Dataset) -> list[int]:
    """C-STORE each data set on one pynetdicom association; the statuses."""
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", node.dicom.port, ae_title="PACSFLOW")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


def test_a_large_object_is_spooled_and_stored_whole(fast_node: Pacsflow, tmp_path: Path) -> None:
    ds = big_ct(tmp_path)
    assert store_with_pynetdicom(fast_node, ds) == [0]
    stored = dcmread(stored_file(fast_node, ds.SOPInstanceUID))
    assert stored.PixelData == ds.PixelData
    assert spooled(fast_node) == []


def test_pynetdicom_scu_stores_through_the_fast_path(fast_node: Pacsflow, tmp_path: Path) -> None:
    ds = ct(tmp_path)
    assert store_with_pynetdicom(fast_node, ds, ds) == [0, 0]  # the duplicate: stored once
    assert fast_node.dicom.fast_associations == 1


@pytest.mark.parametrize(
    "data",
    [
        b"\x01\x00\x00\x00\x00\x00",  # an A-ASSOCIATE-RQ of length 0
        b"\x01\x00\x00\x00\x00\x08" + b"\xff" * 8,  # one that does not decode
        b"\x09\x00\x00\x00\x00\x00",  # not an A-ASSOCIATE-RQ
    ],
)
def test_what_the_fast_path_cannot_decode_is_left_unread_for_pynetdicom(data: bytes) -> None:
    ours, peer = socket.socketpair()
    with ours, peer:
        peer.sendall(data)
        fast = FastStore(AE(ae_title="PACSFLOW"), lambda caller, obj: 0, lambda caller: None)
        assert not fast.serve(ours, ("127.0.0.1", 1))
        ours.settimeout(1)
        assert ours.recv(len(data) + 10) == data  # untouched: pynetdicom reads it all
