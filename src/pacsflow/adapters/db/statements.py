"""Statement helpers the SQL repositories share: IN lists in chunks."""

from __future__ import annotations

from collections.abc import Sequence

#: Bound parameters per IN (...) list: well under every backend's limit.
CHUNK = 500


def chunks(values: Sequence[str]) -> list[Sequence[str]]:
    """The values in slices of at most CHUNK, one IN (...) list each."""
    return [values[n : n + CHUNK] for n in range(0, len(values), CHUNK)]


__all__ = ["CHUNK", "chunks"]
