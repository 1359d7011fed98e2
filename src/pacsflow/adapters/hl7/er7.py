"""HL7 v2 ER7 syntax: the delimiters (MSH-1, MSH-2), segment names, escaping (v2.5 ch. 2.7).

Escape sequences are resolved after a message is split on its delimiters, so an escaped
delimiter never splits a value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pacsflow.adapters.hl7.charsets import decode

#: A segment name: three characters, a letter first (v2.5 ch. 2.5.1).
SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_HEX = re.compile(r"^X(?:[0-9A-Fa-f]{2})+$")


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The field separator and encoding characters of a message (MSH-1, MSH-2)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as it is written."""
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation


DEFAULT_DELIMITERS = Delimiters()


def escape(text: str, delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """Escape a value for ER7: delimiters as \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ (\\P\\), control
    characters (CR and LF included, which would end the segment) as \\Xhh\\."""
    d = delimiters
    replacements = {
        d.escape: f"{d.escape}E{d.escape}",
        d.field: f"{d.escape}F{d.escape}",
        d.component: f"{d.escape}S{d.escape}",
        d.subcomponent: f"{d.escape}T{d.escape}",
        d.repetition: f"{d.escape}R{d.escape}",
    }
    if d.truncation:
        replacements[d.truncation] = f"{d.escape}P{d.escape}"
    out: list[str] = []
    for char in text:
        if char in replacements:
            out.append(replacements[char])
        elif char < " " or char == "\x7f":
            out.append(f"{d.escape}X{ord(char):02X}{d.escape}")
        else:
            out.append(char)
    return "".join(out)


def unescape(text: str, delimiters: Delimiters = DEFAULT_DELIMITERS, charset: str = "ascii") -> str:
    """Resolve the escape sequences of one value.

    \\Xhh..\\ is bytes in the message's character set (consecutive ones are decoded
    together, so a multi-byte UTF-8 character may be split across them; bytes the set cannot
    decode are read as the message itself would be: UTF-8, then latin-1); \\.br\\ and
    \\.sp\\ become a newline; other formatting (\\H\\, \\N\\, \\.in\\, ...) is dropped; an
    unknown or unterminated sequence is kept as it was sent.
    """
    esc = delimiters.escape
    if not esc or esc not in text:
        return text
    simple = {
        "F": delimiters.field,
        "S": delimiters.component,
        "T": delimiters.subcomponent,
        "R": delimiters.repetition,
        "E": esc,
        "P": delimiters.truncation,
        "H": "",
        "N": "",
    }
    out: list[str] = []
    pending = bytearray()  # hex bytes waiting to be decoded together

    def flush() -> None:
        if pending:
            out.append(decode(bytes(pending), charset)[0])
            pending.clear()

    pos = 0
    while pos < len(text):
        start = text.find(esc, pos)
        if start < 0:
            flush()
            out.append(text[pos:])
            break
        if start > pos:
            flush()
            out.append(text[pos:start])
        end = text.find(esc, start + 1)
        if end < 0:
            flush()
            out.append(text[start:])
            break
        body = text[start + 1 : end]
        hex_bytes = _hex_bytes(body)
        if hex_bytes is not None:
            pending += hex_bytes
        else:
            flush()
            out.append(_resolve(body, simple, text[start : end + 1]))
        pos = end + 1
    flush()
    return "".join(out)


def _hex_bytes(body: str) -> bytes | None:
    return bytes.fromhex(body[1:]) if _HEX.match(body) else None


def _resolve(body: str, simple: dict[str, str], original: str) -> str:
    if body in simple and (body != "P" or simple["P"]):
        return simple[body]
    if body == ".br" or body.startswith(".sp"):
        return "\n"
    if body[:1] == "." and body[1:3].isalpha():  # .fi .nf .in .ti .sk .ce: layout only
        return ""
    return original


__all__ = ["DEFAULT_DELIMITERS", "SEGMENT_NAME", "Delimiters", "escape", "unescape"]
