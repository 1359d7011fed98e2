"""Statement helpers the SQL repositories share: the upsert, IN lists in chunks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa

#: Bound parameters per IN (...) list: well under every backend's limit.
CHUNK = 500

_T = TypeVar("_T")


def chunks(values: Sequence[_T]) -> list[Sequence[_T]]:
    """The values in slices of at most CHUNK, one IN (...) list each."""
    return [values[n : n + CHUNK] for n in range(0, len(values), CHUNK)]


def upsert(
    conn: sa.Connection,
    table: sa.Table,
    key: Mapping[str, Any],
    update: Mapping[str, Any],
    insert: Mapping[str, Any],
) -> None:
    """Update the row with this key; when there is none, insert the key with `insert`.

    The update goes first: the row is there in the common case (an order changed again, a
    step set, an alert repeated).
    """
    where = [table.c[name] == value for name, value in key.items()]
    if conn.execute(sa.update(table).where(*where).values(**update)).rowcount == 0:
        conn.execute(sa.insert(table).values(**key, **insert))


__all__ = ["CHUNK", "chunks", "upsert"]
