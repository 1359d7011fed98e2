"""Explicit VR Big Endian objects re-encoded as Explicit VR Little Endian, losslessly.

A peer that did not accept Big Endian (PS3.5 A.3, retired) still gets the object: pydicom
re-encodes the values it decodes (numbers, text, tags) in the new byte order, but leaves the
bytes of OW, OL, OF, OD and OV values as they are, so those are swapped here word by word
first. Pixel Data with 32 or 64 bits allocated is swapped per sample, as pydicom reads it. A
UN value of unknown VR cannot be swapped (its word size is unknown) and is sent as is.
"""

from __future__ import annotations

from array import array
from io import BytesIO
from typing import Final

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian

#: The word size of each VR whose value pydicom keeps as bytes in the original byte order.
_WORD: Final = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}
#: array type codes by item size (array's "H", "I", "Q" are 2, 4, 8 bytes wide).
_ARRAY_CODE: Final = {2: "H", 4: "I", 8: "Q"}
_PIXEL_DATA: Final = Tag("PixelData")


def is_big_endian(ds: Dataset) -> bool:
    """True when a stored data set is encoded Explicit VR Big Endian."""
    return bool(ds.file_meta.get("TransferSyntaxUID") == ExplicitVRBigEndian)


def as_little_endian(ds: Dataset) -> Dataset:
    """A Big Endian data set re-encoded as Explicit VR Little Endian (a new data set)."""
    _swap_words(ds)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    buffer.seek(0)
    return dcmread(buffer)


def _swap_words(ds: Dataset) -> None:
    bits = int(ds.get("BitsAllocated") or 0)
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_words(item)
            continue
        size = _WORD.get(elem.VR)
        if size is None or not isinstance(elem.value, bytes):
            continue
        if elem.tag == _PIXEL_DATA and elem.VR == "OW" and bits in (32, 64):
            size = bits // 8
        if len(elem.value) % size == 0:
            words = array(_ARRAY_CODE[size], elem.value)
            words.byteswap()
            elem.value = words.tobytes()


__all__ = ["as_little_endian", "is_big_endian"]
