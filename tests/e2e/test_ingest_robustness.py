"""Ingest under pressure: a very large object, and the same study sent concurrently."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.conftest import DCMTK_ENV, requires_dcmtk, restamp
from tests.e2e.conftest import Served

pytestmark = [pytest.mark.dcmtk, requires_dcmtk]


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_200_mb_object_is_stored_with_bounded_memory(served: Served, tmp_path: Path) -> None:
    path, ds = restamp("CT_small.dcm", tmp_path / "big.dcm", patient_id="BIG1")
    frames = 400
    ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = 512, 512
    ds.PixelData = bytes(frames * 512 * 512 * 2)  # 200 MiB
    ds.save_as(path, enforce_file_format=True)
    before = _peak_rss_mib(served.process.pid)
    res = subprocess.run(
        ["storescu", "-aec", "PACSFLOW", "127.0.0.1", str(served.dicom_port), str(path)],
        env=DCMTK_ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    [held] = served.get("/api/studies", include_held="true").json()
    assert held["instance_count"] == 1
    stored = next((served.data_dir / "objects").rglob(f"{ds.SOPInstanceUID}.*.dcm"))
    assert stored.stat().st_size > 200 * 1024 * 1024
    # Streamed to disk: the server's peak memory grows by far less than the object.
    assert _peak_rss_mib(served.process.pid) - before < 64


def test_the_same_instances_sent_concurrently_are_stored_once(
    served: Served, tmp_path: Path
) -> None:
    study_uid = "1.2.826.0.1.3680043.8.498.1"
    files = [
        restamp("CT_small.dcm", tmp_path / f"s{i}.dcm", patient_id="DUP", study_uid=study_uid)[0]
        for i in range(10)
    ]
    senders = [
        subprocess.Popen(
            ["storescu", "-aec", "PACSFLOW", "127.0.0.1", str(served.dicom_port), *map(str, files)],
            env=DCMTK_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(5)
    ]
    for proc in senders:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    [study] = served.get("/api/studies", include_held="true").json()
    assert study["instance_count"] == 10
    stored = list((served.data_dir / "objects").rglob("*.dcm"))
    assert len(stored) == 10
    assert {dcmread(p).SOPInstanceUID for p in stored} == {dcmread(f).SOPInstanceUID for f in files}
