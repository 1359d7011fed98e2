"""DICOM unique identifiers made by pacsflow (PS3.5 9.1, the 2.25 UUID-derived root)."""

from __future__ import annotations

import re
import uuid
from typing import NewType

Uid = NewType("Uid", str)

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def new_uid() -> Uid:
    """A new globally unique UID, derived from a random UUID (PS3.5 B.2)."""
    return Uid(f"2.25.{uuid.uuid4().int}")


def is_valid_uid(value: str) -> bool:
    """True when value is a well-formed UID of at most 64 characters."""
    return 0 < len(value) <= 64 and _UID.match(value) is not None


__all__ = ["Uid", "is_valid_uid", "new_uid"]
