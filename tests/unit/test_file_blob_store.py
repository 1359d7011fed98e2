"""The file blob store when the file system refuses writes: nothing is left behind."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pacsflow.adapters.blobs import FileBlobStore
from pacsflow.domain.errors import StorageFull, TransientError

KEY = "1.2.3/1.2.3.4.abc.dcm"


def _files(root: Path) -> list[Path]:
    """Every file under root, staging included."""
    return sorted(p for p in root.rglob("*") if p.is_file())


def _no_space(*_: Any) -> Any:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _across_file_systems(monkeypatch: pytest.MonkeyPatch, source: Path) -> None:
    """Make renaming source fail like a rename to another file system does (EXDEV)."""
    real: Callable[..., None] = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(src) == source:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    path = tmp_path / "spool" / "rx-1.dcm"
    path.parent.mkdir()
    path.write_bytes(b"DICM" * 1000)
    return path


@pytest.mark.parametrize("failing", ["write", "fsync"])
def test_put_bytes_that_runs_out_of_space_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    store = FileBlobStore(tmp_path / "objects")
    monkeypatch.setattr(os, failing, _no_space)
    with pytest.raises(StorageFull, match="No space left"):
        store.put_bytes(KEY, b"DICM" * 1000)
    monkeypatch.undo()
    assert _files(store.root) == []
    assert not store.exists(KEY)


def test_put_file_that_runs_out_of_space_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spool: Path
) -> None:
    store = FileBlobStore(tmp_path / "objects")
    monkeypatch.setattr(os, "fsync", _no_space)  # after the rename into place
    with pytest.raises(StorageFull):
        store.put_file(KEY, spool)
    monkeypatch.undo()
    assert _files(store.root) == []


def test_copy_from_another_file_system_that_runs_out_of_space_leaves_no_part_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spool: Path
) -> None:
    store = FileBlobStore(tmp_path / "objects")
    _across_file_systems(monkeypatch, spool)
    copies: list[Path] = []

    def copy_until_full(src: Any, dst: Any) -> None:  # a part is written, then no space
        copies.append(Path(dst))
        Path(dst).write_bytes(b"DICM")
        _no_space()

    monkeypatch.setattr("shutil.copyfile", copy_until_full)
    with pytest.raises(StorageFull):
        store.put_file(KEY, spool)
    monkeypatch.undo()
    assert [p.parent for p in copies] == [store.staging]
    assert _files(store.root) == []
    assert spool.exists()  # not taken: the receiver removes it with its refusal


def test_copy_from_another_file_system_removes_the_spool_file_once_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spool: Path
) -> None:
    store = FileBlobStore(tmp_path / "objects")
    _across_file_systems(monkeypatch, spool)
    assert store.put_file(KEY, spool) == 4000
    assert not spool.exists()
    assert _files(store.root) == [store.root / KEY]
    assert (store.root / KEY).read_bytes() == b"DICM" * 1000


def test_other_write_errors_stay_transient_and_leave_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileBlobStore(tmp_path / "objects")

    def io_error(*_: Any) -> Any:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "write", io_error)
    with pytest.raises(TransientError) as caught:
        store.put_bytes(KEY, b"DICM")
    monkeypatch.undo()
    assert not isinstance(caught.value, StorageFull)
    assert _files(store.root) == []
