"""fastpath.header.read_identifying must agree with pydicom whenever it answers at all."""

from __future__ import annotations

import warnings
from io import BytesIO
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.data import get_charset_files, get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom.dsutils import create_file_meta

from pacsflow.adapters.dicom.datasets import arrived_instance, dicom_date, read_header
from pacsflow.adapters.dicom.fastpath.header import read_identifying
from pacsflow.adapters.dicom.fastpath.wire import encode_file_meta

TS = str(ExplicitVRLittleEndian)


def both(path: Path) -> tuple[object, object] | None:
    """(fast, pydicom) arrived instances, or None when pydicom itself cannot read the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            slow = arrived_instance(read_header(path), TS, "AE")
        except Exception:  # noqa: BLE001 - files pydicom cannot read are not compared
            return None
    fast = read_identifying(path)
    return (None if fast is None else arrived_instance(fast, TS, "AE")), slow


def test_every_pydicom_sample_reads_the_same_or_falls_back() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = [Path(f) for f in get_testdata_files("*.dcm") + get_charset_files("*.dcm")]
    fast_read = 0
    for path in files:
        pair = both(path)
        if pair is None or pair[0] is None:
            continue
        fast_read += 1
        assert pair[0] == pair[1], path.name
    assert fast_read >= 50  # most plain samples do take the fast reader


@pytest.mark.parametrize(
    ("name", "fast"),
    [
        ("CT_small.dcm", True),  # explicit VR little endian
        ("MR_small_implicit.dcm", True),
        ("MR_small_bigendian.dcm", False),  # pydicom's
        ("image_dfl.dcm", False),  # deflated: pydicom's bounded inflate
        ("chrH31.dcm", False),  # ISO 2022 Japanese
        ("chrFren.dcm", True),  # ISO_IR 100
    ],
)
def test_which_files_take_the_fast_reader(name: str, fast: bool) -> None:
    [path] = [Path(f) for f in get_testdata_files(name) or get_charset_files(name)]
    pair = both(path)
    assert pair is not None
    assert (pair[0] is not None) is fast
    if fast:
        assert pair[0] == pair[1]


_TEXT = st.text(
    alphabet=st.characters(codec="latin-1", exclude_characters="\\\x00\r\n\x0c\x1b"), max_size=12
)

# A name component: '^' and '=' inside one would make more components or groups than drawn,
# which pydicom warns about (more than five components).
_NAME_PART = st.text(
    alphabet=st.characters(codec="latin-1", exclude_characters="\\\x00\r\n\x0c\x1b^="),
    max_size=12,
)


@st.composite
def headers(draw: st.DrawFn) -> tuple[Dataset, str]:
    with warnings.catch_warnings():  # invalid values (a 7-digit date) on purpose
        warnings.simplefilter("ignore")
        return _header(draw)


def _header(draw: st.DrawFn) -> tuple[Dataset, str]:
    ds = Dataset()
    charset = draw(st.sampled_from(["", "ISO_IR 100", "ISO_IR 192", "ISO_IR 6"]))
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.3." + str(draw(st.integers(1, 10**9)))
    ds.StudyInstanceUID = "1.2.4"
    ds.SeriesInstanceUID = "1.2.5"
    for keyword in ("PatientID", "AccessionNumber", "StudyDescription", "SeriesDescription"):
        if draw(st.booleans()):
            setattr(ds, keyword, draw(_TEXT))
    if draw(st.booleans()):
        ds.PatientName = "^".join(draw(st.lists(_NAME_PART, min_size=1, max_size=5)))
    if draw(st.booleans()):
        ds.StudyDate = draw(st.sampled_from(["20240131", "", "2024013", "19991231 "]))
    if draw(st.booleans()):
        ds.SeriesNumber = draw(st.sampled_from(["1", " 12", "007", ""]))
    if draw(st.booleans()):  # a sequence before the wanted attributes
        item = Dataset()
        item.CodeValue = draw(_TEXT)
        inner = Dataset()
        inner.CodeMeaning = draw(_TEXT)
        item.ConceptNameCodeSequence = Sequence([inner])
        ds.ProcedureCodeSequence = Sequence([item] * draw(st.integers(0, 3)))
    syntax = draw(
        st.sampled_from([ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian])
    )
    return ds, syntax


def write(ds: Dataset, syntax: str, undefined_lengths: bool) -> bytes:
    out = BytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    meta = FileMetaDataset(
        create_file_meta(
            sop_class_uid=UID(ds.SOPClassUID),
            sop_instance_uid=UID(ds.SOPInstanceUID),
            transfer_syntax=UID(syntax),
        )
    )
    write_file_meta_info(out, meta)  # type: ignore[arg-type]
    body = DicomBytesIO()
    body.is_little_endian = syntax != ExplicitVRBigEndian
    body.is_implicit_VR = syntax == ImplicitVRLittleEndian
    for seq in (e for e in ds if e.VR == "SQ"):
        seq.is_undefined_length = undefined_lengths
        for item in seq.value:
            item.is_undefined_length_sequence_item = undefined_lengths
    write_dataset(body, ds)
    return out.getvalue() + body.getvalue()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(header=headers(), undefined=st.booleans())
def test_generated_headers_read_the_same_or_fall_back(
    tmp_path: Path, header: tuple[Dataset, str], undefined: bool
) -> None:
    ds, syntax = header
    path = tmp_path / "h.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path.write_bytes(write(ds, syntax, undefined))
        dcmread(path)  # a file pydicom reads
    pair = both(path)
    assert pair is not None
    fast, slow = pair
    if syntax == ExplicitVRBigEndian:
        assert fast is None
    if fast is not None:
        assert fast == slow


def test_a_header_cut_short_falls_back(tmp_path: Path) -> None:
    [source] = get_testdata_files("CT_small.dcm")
    path = tmp_path / "cut.dcm"
    data = Path(source).read_bytes()
    for cut in (395, 397, 1000):  # inside a value, inside an element header, further on
        path.write_bytes(data[:cut])
        assert read_identifying(path) is None, cut
    path.write_bytes(b"not dicom at all")
    assert read_identifying(path) is None


@pytest.mark.parametrize(
    "syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, "1.2.840.10008.1.2.4.50"]
)
@pytest.mark.parametrize("instance", ["1.2.3.4", "1.2.3.45"])  # even and odd lengths
def test_file_meta_is_what_pydicom_writes(syntax: str, instance: str) -> None:
    out = BytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    meta = create_file_meta(
        sop_class_uid=UID(CTImageStorage),
        sop_instance_uid=UID(instance),
        transfer_syntax=UID(syntax),
    )
    write_file_meta_info(out, meta)  # type: ignore[arg-type]
    assert encode_file_meta(CTImageStorage, instance, syntax) == out.getvalue()


def _strptime_date(value: str) -> object:
    from datetime import datetime

    value = value.strip()
    try:
        return datetime.strptime(value, "%Y%m%d").date() if len(value) == 8 else None
    except ValueError:
        return None


@given(st.text(alphabet="0123456789 +-.²a", max_size=10) | st.dates().map(lambda d: f"{d:%Y%m%d}"))
def test_dicom_date_accepts_what_strptime_accepts(value: str) -> None:
    assert dicom_date(value) == _strptime_date(value)
