"""What the storage service accepts at association negotiation: SOP classes, transfer syntaxes.

Store-as-received: an object is kept in the transfer syntax it arrived in and never decoded on
the way in, so every transfer syntax pydicom knows is accepted (and Deflated Image Frame
Compression, newer than pydicom 3.0); only transcoding on the way out needs a
decoder, and it refuses with the reason when there is none. Likewise every storage SOP class
pydicom knows is accepted, the retired ones included (PS3.4 B.5: old archives are full of the
retired Ultrasound Image Storage, 1.2.840.10008.5.1.4.1.1.6).
"""

from __future__ import annotations

from typing import Final

from pydicom._uid_dict import UID_dictionary
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom.presentation import AllStoragePresentationContexts

#: Deflated Image Frame Compression (PS3.5 A.4.11, 2024): encapsulated, explicit VR little
#: endian data set; pydicom 3.0 knows it only once pynetdicom has added it to its dictionary.
DEFLATED_IMAGE_FRAME_COMPRESSION: Final = "1.2.840.10008.1.2.8.1"

#: Not accepted: RFC 2557 MIME and XML encodings (a whole data set in another format, never
#: used over DIMSE), and Papyrus 3 Implicit VR Little Endian (retired in 1998; implicit VR
#: under a UID the receive path would read as explicit VR).
_NOT_DIMSE: Final = frozenset(
    {"1.2.840.10008.1.2.6.1", "1.2.840.10008.1.2.6.2", "1.2.840.10008.1.20"}
)

#: The uncompressed syntaxes, accepted last: a modality that offers its compressed original
#: next to an uncompressed fallback keeps the original.
_UNCOMPRESSED: Final = (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
)

_PREFERRED_COMPRESSED: Final = (
    JPEG2000Lossless,
    JPEG2000,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    HTJ2K,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEGLosslessSV1,
    JPEGLossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    RLELossless,
)


def _known_transfer_syntaxes() -> list[str]:
    """Every transfer syntax pydicom's dictionary names, retired ones included."""
    return [
        uid
        for uid, (_name, kind, *_rest) in UID_dictionary.items()
        if kind == "Transfer Syntax" and uid not in _NOT_DIMSE
    ]


def _storage_transfer_syntaxes() -> list[str]:
    head = [str(ts) for ts in _PREFERRED_COMPRESSED]
    tail = [str(ts) for ts in _UNCOMPRESSED]
    known = dict.fromkeys([*_known_transfer_syntaxes(), DEFLATED_IMAGE_FRAME_COMPRESSION])
    rest = [ts for ts in known if ts not in head and ts not in tail]
    return [*head, *rest, *tail]


#: Transfer syntaxes accepted for storage, most preferred first. pynetdicom accepts the first
#: of these that the requestor proposes, so compressed syntaxes come first (stored as
#: received, never transcoded on the way in).
STORAGE_TRANSFER_SYNTAXES: Final[list[str]] = _storage_transfer_syntaxes()


#: Storage classes left out: non-patient objects (PS3.4 GG, T, U, HH, II, KK) carry no Study
#: Instance UID, so the index could only refuse every one of them.
_NOT_INDEXABLE: Final = (
    "Storage Commitment",
    "Media Storage Directory",
    "Hanging Protocol",
    "Color Palette",
    "Implant",
    "Procedure Protocol",
    "Protocol Approval",
    "Inventory",
)


def _storage_sop_classes() -> list[str]:
    """pynetdicom's storage SOP classes, then every other storage class pydicom names."""
    classes = [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts]
    known = set(classes)
    for uid, (name, kind, *_rest) in UID_dictionary.items():
        if (
            kind == "SOP Class"
            and "Storage" in name
            and not any(word in name for word in _NOT_INDEXABLE)
            and uid not in known
        ):
            classes.append(uid)
    return classes


#: The SOP classes accepted by the Storage service (and offered for C-GET role reversal).
STORAGE_SOP_CLASSES: Final[tuple[str, ...]] = tuple(_storage_sop_classes())

__all__ = [
    "DEFLATED_IMAGE_FRAME_COMPRESSION",
    "STORAGE_SOP_CLASSES",
    "STORAGE_TRANSFER_SYNTAXES",
]
