"""Reading an arriving instance's header: the same values as pydicom, deflated in bounded memory."""

from __future__ import annotations

import contextlib
import io
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import DeflatedExplicitVRLittleEndian

from pacsflow.adapters.dicom.datasets import read_header
from pacsflow.domain.errors import MalformedMessage
from tests.unit.test_dicom_completeness import MODALITY, deflate_bomb, explicit, part10

IDENTIFYING = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PatientID",
    "PatientName",
    "AccessionNumber",
    "StudyDate",
    "Modality",
    "InstanceNumber",
)
#: What reading a header may cost at most, whatever the data set inflates to.
MAX_PEAK_MIB = 64


def _bytes(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom does not ship {name}"
    with open(str(path), "rb") as fp:
        return fp.read()


def test_a_deflated_file_yields_the_values_of_a_full_read() -> None:
    raw = _bytes("image_dfl.dcm")
    full = dcmread(io.BytesIO(raw))
    header = read_header(io.BytesIO(raw))
    assert {k: header.get(k) for k in IDENTIFYING} == {k: full.get(k) for k in IDENTIFYING}
    assert header.SOPInstanceUID  # the sample has identifiers to compare
    assert header.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert "PixelData" not in header


@pytest.mark.parametrize(
    "name", ["image_dfl.dcm", "CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm"]
)
def test_the_header_is_what_pydicom_reads_before_the_pixels(name: str) -> None:
    raw = _bytes(name)
    header = read_header(io.BytesIO(raw))
    tags = list(header.keys())
    assert header == dcmread(io.BytesIO(raw), stop_before_pixels=True, specific_tags=tags)
    assert header.original_encoding == dcmread(io.BytesIO(raw)).original_encoding


@dataclass
class Peak:
    """The most memory allocated at once while a block ran."""

    mib: float = 0.0


@contextlib.contextmanager
def peak_memory() -> Iterator[Peak]:
    """Trace allocations (zlib's output is bytes objects, so inflating is seen)."""
    peak = Peak()
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.mib = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()


SOP_INSTANCE = explicit(0x0008, 0x0018, b"UI", b"1.2.3.4\x00")
PATIENT_ID = explicit(0x0010, 0x0020, b"LO", b"BOMB")
STUDY = explicit(0x0020, 0x000D, b"UI", b"1.2.3.5\x00")
HEAD = SOP_INSTANCE + MODALITY + PATIENT_ID


def test_a_deflate_bomb_in_the_pixel_data_yields_its_header_in_bounded_memory() -> None:
    raw = deflate_bomb(HEAD + STUDY, 600)
    with peak_memory() as peak:
        header = read_header(io.BytesIO(raw))
    assert (header.SOPInstanceUID, header.PatientID, header.StudyInstanceUID) == (
        "1.2.3.4",
        "BOMB",
        "1.2.3.5",
    )
    assert peak.mib < MAX_PEAK_MIB


def test_a_deflate_bomb_before_the_last_identifying_element_is_refused() -> None:
    """600 MiB of zeros in a private value, the Study Instance UID after it."""
    raw = deflate_bomb(HEAD, 600, tag=0x00091010, tail=STUDY)
    with (
        peak_memory() as peak,
        pytest.raises(MalformedMessage, match="deflated header larger than 16 MiB"),
    ):
        read_header(io.BytesIO(raw))
    assert peak.mib < MAX_PEAK_MIB


def test_a_large_value_before_the_last_identifying_element_is_read_past() -> None:
    raw = deflate_bomb(HEAD, 8, tag=0x00091010, tail=STUDY)
    assert read_header(io.BytesIO(raw)).StudyInstanceUID == "1.2.3.5"


def test_a_corrupt_deflate_stream_is_malformed() -> None:
    with pytest.raises(MalformedMessage, match="deflated data set is corrupt"):
        read_header(io.BytesIO(part10(b"\xff" * 64, DeflatedExplicitVRLittleEndian)))
