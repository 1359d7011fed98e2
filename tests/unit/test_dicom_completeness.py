"""The completeness walk over a received data set: whole files pass, files cut short fail."""

from __future__ import annotations

import io
import random
import struct
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import data_element_generator, read_dataset, read_preamble
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from pacsflow.adapters.dicom.completeness import MAX_NESTING, check_complete
from pacsflow.domain.errors import MalformedMessage
from tests.nesting import nested_object


@dataclass(frozen=True, slots=True)
class Sample:
    """A pydicom test file and where pydicom sees its top-level elements end."""

    raw: bytes
    transfer_syntax: str
    #: offsets of the data set's start and of the end of each top-level element
    boundaries: tuple[int, ...]


#: file -> transfer syntax: each encoding, encapsulated pixel data, nested undefined lengths
WHOLE = {
    "CT_small.dcm": ExplicitVRLittleEndian,
    "MR_small_implicit.dcm": ImplicitVRLittleEndian,
    "MR_small_bigendian.dcm": ExplicitVRBigEndian,
    "JPEG2000.dcm": "1.2.840.10008.1.2.4.91",  # fragments, sequences of undefined length
    "SC_rgb_jpeg_dcmtk.dcm": JPEGBaseline8Bit,
    "nested_priv_SQ.dcm": ImplicitVRLittleEndian,  # undefined-length items inside each other
    "reportsi.dcm": ExplicitVRLittleEndian,  # an SR tree nested five deep
    "UN_sequence.dcm": "1.2.840.10008.1.2.4.70",  # UN of undefined length: implicit items
    "badVR.dcm": ExplicitVRLittleEndian,  # VRs pydicom reads as implicit or 2-byte
}


def _bytes(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom does not ship {name}"
    with open(str(path), "rb") as fp:
        return fp.read()


def _meta_end(fp: io.BytesIO) -> int:
    """Where pydicom sees the data set start: after the preamble and the group 0002 elements."""
    read_preamble(fp, force=False)
    read_dataset(fp, False, True, stop_when=lambda tag, _vr, _length: tag.group != 2)
    return fp.tell()


@cache
def sample(name: str) -> Sample:
    raw = _bytes(name)
    ts = WHOLE[name]
    fp = io.BytesIO(raw)
    bounds = [_meta_end(fp)]
    is_implicit, is_little = ts == ImplicitVRLittleEndian, ts != ExplicitVRBigEndian
    for _ in data_element_generator(fp, is_implicit, is_little):
        bounds.append(fp.tell())
    assert bounds[-1] == len(raw)
    return Sample(raw, ts, tuple(bounds))


def check(raw: bytes, transfer_syntax: str) -> None:
    check_complete(io.BytesIO(raw), transfer_syntax)


@pytest.mark.parametrize("name", sorted(WHOLE))
def test_a_whole_file_passes(name: str) -> None:
    s = sample(name)
    check(s.raw, s.transfer_syntax)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("MR_truncated.dcm", r"\(7FE0,0010\) declares 8192 bytes but only 8130 remain"),
        ("rtplan_truncated.dcm", r"\(300A,00B0\) declares 976 bytes but only 711 remain"),
    ],
)
def test_pydicoms_truncated_samples_fail(name: str, reason: str) -> None:
    ts = ExplicitVRLittleEndian if name.startswith("MR") else ImplicitVRLittleEndian
    with pytest.raises(MalformedMessage, match=reason):
        check(_bytes(name), ts)


names = st.sampled_from(sorted(WHOLE))


@given(name=names, data=st.data())
def test_a_cut_inside_any_top_level_element_fails(name: str, data: st.DataObject) -> None:
    s = sample(name)
    index = data.draw(st.integers(0, len(s.boundaries) - 2), label="element")
    start, end = s.boundaries[index], s.boundaries[index + 1]
    cut = data.draw(st.integers(start + 1, end - 1), label="cut")
    with pytest.raises(MalformedMessage):
        check(s.raw[:cut], s.transfer_syntax)


@given(name=names, data=st.data())
def test_a_cut_inside_the_last_element_fails(name: str, data: st.DataObject) -> None:
    s = sample(name)
    cut = data.draw(st.integers(s.boundaries[-2] + 1, s.boundaries[-1] - 1), label="cut")
    with pytest.raises(MalformedMessage):
        check(s.raw[:cut], s.transfer_syntax)


@given(name=names, data=st.data())
def test_a_cut_at_an_element_boundary_is_a_shorter_whole_data_set(
    name: str, data: st.DataObject
) -> None:
    s = sample(name)
    cut = data.draw(st.sampled_from(s.boundaries), label="cut")
    check(s.raw[:cut], s.transfer_syntax)


@pytest.mark.parametrize(
    "name",
    [
        "nested_priv_SQ.dcm",
        "UN_sequence.dcm",
        "JPEG2000.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "reportsi.dcm",
    ],
)
def test_every_cut_fails_unless_at_a_top_level_boundary(name: str) -> None:
    """Items and fragments inside an undefined length too: their ends are no place to stop."""
    s = sample(name)
    boundaries = set(s.boundaries)
    wrong = []
    for cut in range(s.boundaries[0], len(s.raw)):
        try:
            check(s.raw[:cut], s.transfer_syntax)
        except MalformedMessage:
            if cut in boundaries:
                wrong.append(cut)
        else:
            if cut not in boundaries:
                wrong.append(cut)
    assert wrong == []


@pytest.mark.parametrize("padding", [2, 4, 6, 8, 64])
def test_trailing_zero_padding_passes(padding: int) -> None:
    s = sample("MR_small_bigendian.dcm")
    check(s.raw + bytes(padding), s.transfer_syntax)


@pytest.mark.parametrize(
    "transfer_syntax", [ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]
)
def test_a_long_run_of_zeros_is_zero_length_elements(transfer_syntax: str) -> None:
    """As pydicom reads them: whole 8-byte headers, then a real element, then a cut tail."""
    zeros = bytes(3 * 65536 + 8)
    data_set = MODALITY + zeros + MODALITY
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        data_set = deflater.compress(data_set) + deflater.flush()
    check(part10(data_set, transfer_syntax), transfer_syntax)
    with pytest.raises(MalformedMessage, match="inside an element header"):
        check(part10(MODALITY + zeros + b"\x00"), ExplicitVRLittleEndian)


def test_a_single_trailing_byte_fails_even_a_zero() -> None:
    """In big endian, 00 is also the first byte of a cut (0008,xxxx) tag."""
    s = sample("MR_small_bigendian.dcm")
    with pytest.raises(MalformedMessage, match="inside an element header"):
        check(s.raw + b"\x00", s.transfer_syntax)


# -- deflated ---------------------------------------------------------------------------------


def test_a_deflated_file_passes_whole_and_fails_cut_anywhere_in_its_stream() -> None:
    raw = _bytes("image_dfl.dcm")
    start = _meta_end(io.BytesIO(raw))
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflater.decompress(raw[start:])
    stream_end = len(raw) - len(inflater.unused_data)
    check(raw, DeflatedExplicitVRLittleEndian)
    for cut in range(start, stream_end, 7):
        with pytest.raises(MalformedMessage):
            check(raw[:cut], DeflatedExplicitVRLittleEndian)


def test_a_corrupt_deflate_stream_fails() -> None:
    with pytest.raises(MalformedMessage, match="deflated data set is corrupt"):
        check(part10(b"\xff" * 64, DeflatedExplicitVRLittleEndian), DeflatedExplicitVRLittleEndian)


# -- crafted data sets --------------------------------------------------------------------------


def part10(
    data_set: bytes,
    transfer_syntax: str = ExplicitVRLittleEndian,
    *,
    sop_instance_uid: str = "1.2.3.4",
) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    out = DicomBytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, meta)
    return out.getvalue() + data_set


def explicit(group: int, element: int, vr: bytes, value: bytes, length: int | None = None) -> bytes:
    size = len(value) if length is None else length
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2s2xL", group, element, vr, size) + value
    return struct.pack("<HH2sH", group, element, vr, size) + value


def item(value: bytes, length: int | None = None) -> bytes:
    return struct.pack("<HHL", 0xFFFE, 0xE000, len(value) if length is None else length) + value


def _deflate(data: bytes, mode: int = zlib.Z_SYNC_FLUSH) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return deflater.compress(data) + deflater.flush(mode)


PIXEL_DATA = 0x7FE00010


def deflate_bomb(
    head: bytes,
    zeros_mib: int,
    *,
    tag: int = PIXEL_DATA,
    tail: bytes = b"",
    sop_instance_uid: str = "1.2.3.4",
) -> bytes:
    """A deflated Part 10 file: head, an OB value of zeros_mib MiB of zeros at tag, tail.

    One MiB of zeros is deflated once and its blocks repeated (a sync flush ends them on a byte
    boundary and they refer to nothing before them): 600 MiB take 0.6 MB and milliseconds.
    """
    value = explicit(tag >> 16, tag & 0xFFFF, b"OB", b"", zeros_mib << 20)
    stream = (
        _deflate(head + value)
        + _deflate(bytes(1 << 20)) * zeros_mib
        + _deflate(tail, zlib.Z_FINISH)
    )
    return part10(stream, DeflatedExplicitVRLittleEndian, sop_instance_uid=sop_instance_uid)


UNDEFINED = 0xFFFFFFFF
ITEM_END = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
SEQUENCE_END = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
MODALITY = explicit(0x0008, 0x0060, b"CS", b"OT")


def test_a_fragment_of_undefined_length_fails() -> None:
    pixels = explicit(0x7FE0, 0x0010, b"OB", b"", UNDEFINED) + item(b"", UNDEFINED)
    with pytest.raises(MalformedMessage, match=r"fragment of \(7FE0,0010\) has no length"):
        check(part10(MODALITY + pixels + ITEM_END + SEQUENCE_END), JPEGBaseline8Bit)


def test_a_data_element_where_an_item_belongs_fails() -> None:
    sequence = explicit(0x0040, 0x0275, b"SQ", b"", UNDEFINED) + MODALITY + SEQUENCE_END
    with pytest.raises(MalformedMessage, match=r"\(0008,0060\) inside \(0040,0275\)"):
        check(part10(sequence), ExplicitVRLittleEndian)


def test_a_stray_delimiter_at_the_top_level_fails() -> None:
    with pytest.raises(MalformedMessage, match=r"\(FFFE,E00D\) where a data element belongs"):
        check(part10(ITEM_END + MODALITY), ExplicitVRLittleEndian)


def test_an_item_closed_by_a_sequence_delimiter_fails() -> None:
    sequence = explicit(0x0040, 0x0275, b"SQ", b"", UNDEFINED) + item(MODALITY, UNDEFINED)
    with pytest.raises(MalformedMessage, match=r"\(FFFE,E0DD\) where a data element belongs"):
        check(part10(sequence + SEQUENCE_END), ExplicitVRLittleEndian)


def test_a_sequence_of_defined_length_items_inside_one_of_undefined_length_passes() -> None:
    inner = explicit(0x0040, 0x0008, b"SQ", item(MODALITY))
    sequence = explicit(0x0040, 0x0275, b"SQ", b"", UNDEFINED) + item(inner, UNDEFINED)
    check(part10(MODALITY + sequence + ITEM_END + SEQUENCE_END), ExplicitVRLittleEndian)


def test_an_unclosed_item_says_whose_it_is() -> None:
    sequence = explicit(0x0040, 0x0275, b"SQ", b"", UNDEFINED) + item(MODALITY, UNDEFINED)
    with pytest.raises(MalformedMessage, match=r"ends in an item of \(0040,0275\)"):
        check(part10(sequence), ExplicitVRLittleEndian)


def test_a_file_without_the_part_10_prefix_fails() -> None:
    with pytest.raises(MalformedMessage, match="not a DICOM Part 10 file"):
        check(b"\x00" * 128 + MODALITY, ExplicitVRLittleEndian)


class CountingReads(io.BytesIO):
    """A file that counts the bytes read from it."""

    bytes_read = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_values_are_skipped_not_read(transfer_syntax: str) -> None:
    pixels = 8 * 1024 * 1024
    if transfer_syntax == ImplicitVRLittleEndian:
        header = struct.pack("<HHL", 0x7FE0, 0x0010, pixels)
    else:
        header = explicit(0x7FE0, 0x0010, b"OW", b"", pixels)
    fp = CountingReads(part10(MODALITY + header + bytes(pixels)))
    check_complete(fp, transfer_syntax)
    assert fp.bytes_read < 64 * 1024


# -- deflate bombs ------------------------------------------------------------------------------


def test_a_deflate_bomb_is_refused_once_past_the_grace_without_reading_it_all() -> None:
    """600 MiB of zeros in 0.6 MB: refused after 64 MiB inflated (0.1 s, not 1.3 s)."""
    fp = CountingReads(deflate_bomb(MODALITY, 600))
    with pytest.raises(MalformedMessage, match="inflates over 100:1"):
        check_complete(fp, DeflatedExplicitVRLittleEndian)
    assert fp.bytes_read < 256 * 1024  # of 0.6 MB


def test_any_ratio_passes_within_the_grace() -> None:
    """A blank frame deflates about 1000:1; 16 MiB of it is no bomb."""
    check(deflate_bomb(MODALITY, 16), DeflatedExplicitVRLittleEndian)


def test_past_the_grace_a_ratio_under_100_to_1_passes() -> None:
    """1 MiB that does not deflate, then 72 MiB of zeros: 73 MiB from 1.07 MB, about 68:1."""
    noise = random.Random(0).randbytes(1 << 20)
    head = MODALITY + explicit(0x0009, 0x1010, b"OB", noise)
    check(deflate_bomb(head, 72), DeflatedExplicitVRLittleEndian)


# -- nesting ------------------------------------------------------------------------------------

NESTINGS = [
    pytest.param(False, False, id="undefined-explicit"),
    pytest.param(True, False, id="defined-explicit"),
    pytest.param(False, True, id="undefined-implicit"),
    pytest.param(True, True, id="defined-implicit"),
]


def _syntax(implicit: bool) -> str:
    return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


@pytest.mark.parametrize(("defined_length", "implicit"), NESTINGS)
def test_nesting_at_the_limit_passes_and_pydicom_reads_coerces_and_writes_it(
    tmp_path: Path, defined_length: bool, implicit: bool
) -> None:
    """What passes is what retrieval handles: read whole, decoded (coercion), written back."""
    path = tmp_path / "deep.dcm"
    nested_object(path, MAX_NESTING, defined_length=defined_length, implicit=implicit)
    check_complete(path, _syntax(implicit))
    ds = dcmread(path)
    ds.decode()
    ds.save_as(io.BytesIO())
    assert sum(e.VR == "SQ" for e in ds.iterall()) == MAX_NESTING


@pytest.mark.parametrize(("defined_length", "implicit"), NESTINGS)
@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 100_000])
def test_nesting_past_the_limit_fails_with_the_reason(
    tmp_path: Path, defined_length: bool, implicit: bool, depth: int
) -> None:
    path = tmp_path / "deep.dcm"
    nested_object(path, depth, defined_length=defined_length, implicit=implicit)
    with pytest.raises(MalformedMessage, match=r"nested deeper than 100 levels \(at \(0040,A730\)"):
        check_complete(path, _syntax(implicit))


def test_deep_nesting_fails_in_a_deflated_data_set_too(tmp_path: Path) -> None:
    path = tmp_path / "deep.dcm"
    nested_object(path, MAX_NESTING + 1, defined_length=True)
    raw = path.read_bytes()
    start = _meta_end(io.BytesIO(raw))
    deflated = part10(_deflate(raw[start:], zlib.Z_FINISH), DeflatedExplicitVRLittleEndian)
    with pytest.raises(MalformedMessage, match="nested deeper than 100 levels"):
        check(deflated, DeflatedExplicitVRLittleEndian)


def test_a_long_sequence_of_defined_length_is_walked_to_its_exact_end() -> None:
    """Entered (long enough to hide deep nesting): it must hold items up to its length."""
    items = item(MODALITY) * 200  # 2,400 bytes: long enough to be entered at the top level
    whole = explicit(0x0040, 0x0275, b"SQ", items)
    check(part10(whole + MODALITY), ExplicitVRLittleEndian)
    short = explicit(0x0040, 0x0275, b"SQ", items, len(items) - 4)
    with pytest.raises(MalformedMessage):
        check(part10(short + MODALITY), ExplicitVRLittleEndian)
