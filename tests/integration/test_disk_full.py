"""A disk-full episode on a real small file system (tmpfs), through the real DICOM listener.

After it: every refused C-STORE got 0xA700 and the association went on, the blob store holds
exactly the acknowledged objects (no leftovers, no staging or spool debris), every study with
an acknowledged object has its audit record and no refused one has, and the operator sees a
storage_full alert counting every refusal. Run on both receive paths (the fast path and
pynetdicom), for objects kept in memory and objects spooled to a file, with the data
directory on the small file system and with only the blob store there (storage_url on
another file system).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from pacsflow.adapters.db.audit import SqlAuditLog
from pacsflow.app import Pacsflow
from pacsflow.domain.audit import EventId, ObjectKind
from pacsflow.domain.audit_chain import from_canonical
from pacsflow.domain.uids import Uid
from pacsflow.workflow.storage_alarm import STORAGE_FULL
from tests.conftest import make_settings, restamp

MIB = 1 << 20
OUT_OF_RESOURCES = 0xA700
#: More than the fast path keeps in memory (1 MiB): spooled to a file while it arrives.
LARGE_ROWS, LARGE_COLUMNS = 1024, 768


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 12 MiB file system, unmounted afterwards."""
    path = tmp_path / "small"
    _mount_tmpfs(path, "12m")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=True)


def _objects(tmp_path: Path, count: int, *, large: bool) -> list[Path]:
    """CT objects, each of its own study, kept in memory (small) or spooled (large)."""
    paths = []
    for i in range(count):
        kind = "large" if large else "small"
        path, ds = restamp("CT_small.dcm", tmp_path / "src" / f"{kind}{i}.dcm", patient_id="DF1")
        if large:
            ds.Rows, ds.Columns = LARGE_ROWS, LARGE_COLUMNS
            ds.PixelData = os.urandom(LARGE_ROWS * LARGE_COLUMNS * 2)
            ds.save_as(path, enforce_file_format=True)
            assert path.stat().st_size > MIB + MIB // 4
        paths.append(path)
    return paths


def _associate(node: Pacsflow) -> Association:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.dicom.port, ae_title="PACSFLOW")
    assert assoc.is_established
    return assoc


def _send(assoc: Association, path: Path) -> int:
    answer = assoc.send_c_store(path)
    assert answer, "no C-STORE response: the association broke"
    return int(answer.Status)


def _fill(where: Path, leave: int) -> Path:
    """Fill the file system holding where until only about `leave` bytes are free."""
    filler = where / "filler"
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize
    with filler.open("wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def _stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("fast", [True, False], ids=["fast_path", "pynetdicom"])
@pytest.mark.parametrize("layout", ["data_dir", "storage_url"])
def test_disk_full_refuses_with_a700_leaves_nothing_behind_and_keeps_the_audit_trail(
    tmp_path: Path, small_fs: Path, fast: bool, layout: str
) -> None:
    if layout == "data_dir":  # database, spool and objects on the small file system
        settings = make_settings(tmp_path, None, data_dir=small_fs / "data")
    else:  # only the objects there: spooled files are copied across file systems
        settings = make_settings(tmp_path, None, storage_url=small_fs.as_uri())
    settings = settings.model_copy(update={"dicom_open": True, "dicom_fast_storage": fast})
    large = _objects(tmp_path, 4, large=True)
    small = _objects(tmp_path, 40, large=False)
    node = Pacsflow(settings)
    node.start()
    try:
        blob_root = Path(settings.effective_storage_url.removeprefix("file://"))
        filler = _fill(small_fs, leave=4 * MIB)
        statuses: dict[Path, int] = {}
        assoc = _associate(node)
        for path in [*large, *small]:
            statuses[path] = _send(assoc, path)
        # The association went on after every refusal.
        assert assoc.is_established
        assert int(assoc.send_c_echo().Status) == 0
        assoc.release()

        # Space is back: the next object is stored (and the alert, if it could not be
        # written while the disk was full, is recorded now).
        filler.unlink()
        [after] = _objects(tmp_path / "after", 1, large=False)
        assoc = _associate(node)
        statuses[after] = _send(assoc, after)
        assoc.release()
        assert statuses[after] == 0

        refused = [p for p, s in statuses.items() if s != 0]
        acknowledged = [p for p, s in statuses.items() if s == 0]
        assert set(statuses.values()) == {0x0000, OUT_OF_RESOURCES}
        assert any(p in large for p in refused), "no spooled object was refused"
        assert any(p in small for p in refused), "no in-memory object was refused"
        assert any(p in large for p in acknowledged)
        assert any(p in small for p in acknowledged)

        sop = {p: str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in statuses}
        study = {p: str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in statuses}
        # The blob store holds exactly the acknowledged objects, complete; nothing else.
        files = [p for p in _stored_files(blob_root) if ".staging" not in p.parts]
        assert sorted(f.name.split(".dcm")[0].rsplit(".", 1)[0] for f in files) == sorted(
            sop[p] for p in acknowledged
        )
        for f in files:
            assert dcmread(f).SOPInstanceUID in sop.values()
        assert _stored_files(blob_root / ".staging") == []
        assert _stored_files(settings.data_dir / "tmp") == []
        # The index agrees.
        for p in statuses:
            assert node.queries.instance_known(Uid(sop[p])) is (p in acknowledged)

        # Every acknowledged object's study is audited as stored; no refused one is.
        with node.engine.connect() as conn:
            log = SqlAuditLog(conn)
            records = log.records(up_to=log.head().last_id, limit=100_000)
        audited = {
            o.id
            for r in records
            for e in [from_canonical(r.canonical)]
            if e.event_id is EventId.INSTANCES_TRANSFERRED
            for o in e.objects
            if o.kind is ObjectKind.STUDY
        }
        assert {study[p] for p in acknowledged} <= audited
        assert not {study[p] for p in refused} & audited
        assert node.audit.verify().is_intact

        # The operator is alerted, once per refused object.
        [alert] = [a for a in node.routing.alerts() if a.kind == STORAGE_FULL]
        assert alert.peer == "MODALITY"
        assert alert.count == len(refused)
    finally:
        node.stop()
