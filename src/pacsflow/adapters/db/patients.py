"""Patients, their identifiers, merges and links in SQL (the identity rail)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pacsflow.adapters.db import tables as t
from pacsflow.adapters.db.patient_rows import holders, load_patients
from pacsflow.domain.patients import (
    Issuer,
    Patient,
    PatientId,
    PatientIdentifier,
)


class SqlPatientRepository:
    """Patients and their identifiers in SQL."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def _pk(self, identifier: PatientIdentifier) -> int | None:
        ids = t.patient_identifiers
        if identifier.issuer:
            row = self._c.execute(
                sa.select(ids.c.patient_pk).where(
                    ids.c.value == identifier.value,
                    ids.c.issuer.in_([identifier.issuer, ""]),
                )
            ).first()
            return int(row[0]) if row else None
        rows = self._c.execute(
            sa.select(ids.c.patient_pk).where(ids.c.value == identifier.value).distinct().limit(2)
        ).all()
        return int(rows[0][0]) if len(rows) == 1 else None

    def find(self, identifier: PatientIdentifier) -> Patient | None:
        """The patient holding this identifier (issuer optional when unambiguous)."""
        pk = self._pk(identifier)
        return None if pk is None else self._load(pk)

    def is_alias(self, identifier: PatientIdentifier) -> bool:
        """True when the identifier was merged or changed away (see the port)."""
        ids = t.patient_identifiers.c
        rows = self._c.execute(
            sa.select(ids.issuer, ids.position).where(ids.value == identifier.value)
        ).all()
        if identifier.issuer:
            rows = [r for r in rows if r.issuer in (identifier.issuer, "")]
        return bool(rows) and all(r.position >= _ALIAS_POSITION for r in rows)

    def find_many(
        self, identifiers: Iterable[PatientIdentifier]
    ) -> dict[PatientIdentifier, Patient]:
        """The patients holding these identifiers, in a fixed number of statements (see port)."""
        pks = holders(self._c, list(dict.fromkeys(identifiers)))
        patients = load_patients(self._c, pks.values())
        return {identifier: patients[pk] for identifier, pk in pks.items()}

    def _load(self, pk: int) -> Patient:
        return load_patients(self._c, [pk])[pk]

    def save(self, patient: Patient, at: datetime) -> None:
        """Insert or update a patient, found by any of its identifiers."""
        pk = None
        for identifier in patient.identifiers:
            pk = self._pk(identifier)
            if pk is not None:
                break
        d = patient.demographics
        values: dict[str, Any] = {
            "family_name": d.name.family,
            "given_name": d.name.given,
            "middle_name": d.name.middle,
            "name_prefix": d.name.prefix,
            "name_suffix": d.name.suffix,
            "birth_date": d.birth_date,
            "sex": d.sex,
            "updated_at": at,
        }
        if pk is None:
            pk = int(
                self._c.execute(
                    sa.insert(t.patients).values(created_at=at, **values).returning(t.patients.c.pk)
                ).scalar_one()
            )
        else:
            self._c.execute(sa.update(t.patients).where(t.patients.c.pk == pk).values(**values))
        ids = t.patient_identifiers
        for position, identifier in enumerate(patient.identifiers):
            row = self._c.execute(
                sa.select(ids.c.pk, ids.c.patient_pk, ids.c.position).where(
                    ids.c.value == identifier.value, ids.c.issuer == identifier.issuer
                )
            ).first()
            if row is None:
                self._c.execute(
                    sa.insert(ids).values(
                        patient_pk=pk,
                        value=identifier.value,
                        issuer=identifier.issuer,
                        position=position,
                    )
                )
            elif row.patient_pk == pk and row.position < _ALIAS_POSITION:
                # An identifier merged or changed away stays an alias when named again (a late
                # registration of a merged patient must not make its old ID find studies).
                self._c.execute(sa.update(ids).where(ids.c.pk == row.pk).values(position=position))

    def _record_merge(
        self,
        survivor: PatientIdentifier,
        merged: PatientIdentifier,
        at: datetime,
        kind: str = "merge",
    ) -> None:
        """Record that `merged` now stands for `survivor` (who, when, merge or change)."""
        self._c.execute(
            sa.insert(t.patient_merges).values(
                survivor_id=survivor.value,
                survivor_issuer=survivor.issuer,
                merged_id=merged.value,
                merged_issuer=merged.issuer,
                at=at,
                kind=kind,
            )
        )

    def merge(self, merged: PatientIdentifier, survivor: PatientIdentifier, at: datetime) -> bool:
        """Fold the patient holding `merged` into the survivor (see the port)."""
        survivor_pk = self._pk(survivor)
        if survivor_pk is None:
            raise ValueError("the survivor must be registered before a merge")
        merged_pk = self._pk(merged)
        if merged_pk == survivor_pk:
            return False  # already merged (a repeated A40, or a chain seen before)
        ids = t.patient_identifiers
        self._record_merge(survivor, merged, at)
        if merged_pk is None:
            # Not known yet: keep the identifier as an alias, so its images find the survivor.
            self._c.execute(
                sa.insert(ids).values(
                    patient_pk=survivor_pk,
                    value=merged.value,
                    issuer=merged.issuer,
                    position=_ALIAS_POSITION,
                )
            )
            return True
        # What the survivor's studies carry: its own primary, even when the A40 named it by
        # an alias (a chain: the PID of a later merge may carry an identifier merged before).
        target = self._primary(survivor_pk)
        old = self._c.execute(
            sa.select(ids.c.value, ids.c.issuer).where(ids.c.patient_pk == merged_pk)
        ).all()
        self._c.execute(
            sa.update(ids)
            .where(ids.c.patient_pk == merged_pk)
            .values(patient_pk=survivor_pk, position=_ALIAS_POSITION)
        )
        for value, issuer in old:
            for table in (t.orders, t.studies):
                self._c.execute(
                    sa.update(table)
                    .where(table.c.patient_id == value, table.c.patient_issuer == issuer)
                    .values(patient_id=target.value, patient_issuer=target.issuer)
                )
        self._move_links(merged_pk, survivor_pk)
        self._c.execute(sa.delete(t.patients).where(t.patients.c.pk == merged_pk))
        return True

    def link(self, patient: PatientIdentifier, linked: PatientIdentifier, at: datetime) -> bool:
        """Link two registered patients as one person (see the port)."""
        first, second = self._pk(patient), self._pk(linked)
        if first is None or second is None:
            raise ValueError("both patients must be registered before a link")
        if first == second or self._link_between(first, second) is not None:
            return False  # one patient already (merged), or a repeated A24
        self._c.execute(
            sa.insert(t.patient_links).values(patient_pk=first, linked_pk=second, at=at)
        )
        return True

    def unlink(self, patient: PatientIdentifier, unlinked: PatientIdentifier) -> bool:
        """Remove the direct link between two patients (see the port)."""
        first, second = self._pk(patient), self._pk(unlinked)
        if first is None or second is None or first == second:
            return False
        link_pk = self._link_between(first, second)
        if link_pk is None:
            return False
        self._c.execute(sa.delete(t.patient_links).where(t.patient_links.c.pk == link_pk))
        return True

    def change_identifier(
        self, incorrect: PatientIdentifier, correct: PatientIdentifier, at: datetime
    ) -> bool:
        """Replace an identifier on its patient (see the port)."""
        ids = t.patient_identifiers
        old = self._row(incorrect)
        holder = self._pk(correct)
        if old is None:
            if holder is None:
                return False
            self._c.execute(
                sa.insert(ids).values(
                    patient_pk=holder,
                    value=incorrect.value,
                    issuer=incorrect.issuer,
                    position=_ALIAS_POSITION,
                )
            )
        else:
            if holder is not None:
                if holder != old.patient_pk:
                    raise ValueError("the correct identifier already belongs to another patient")
                back = self._row(correct)
                if back is None or back.position < _ALIAS_POSITION:
                    return False  # changed before (a repeated A47)
                if old.position >= _ALIAS_POSITION:
                    return False  # both retired: nothing to replace
                # Changed back (an A47 undoing an earlier one): the alias becomes the identifier
                # again, in the place of the one it had been changed to.
                self._c.execute(sa.delete(ids).where(ids.c.pk == back.pk))
            self._replace(old, correct)
        self._record_merge(correct, incorrect, at, kind="change")
        return True

    def _replace(self, old: _IdentifierRow, correct: PatientIdentifier) -> None:
        """Put the correct identifier where the incorrect one is; what carried it follows."""
        ids = t.patient_identifiers
        if old.position < _ALIAS_POSITION:
            # In place: the correct identifier takes the incorrect one's rank (a wrong
            # primary is replaced by a correct primary), the incorrect one becomes an alias.
            self._c.execute(
                sa.update(ids)
                .where(ids.c.pk == old.pk)
                .values(value=correct.value, issuer=correct.issuer)
            )
            self._c.execute(
                sa.insert(ids).values(
                    patient_pk=old.patient_pk,
                    value=old.value,
                    issuer=old.issuer,
                    position=_ALIAS_POSITION,
                )
            )
        else:  # already an alias (merged away): its patient gains the correct identifier
            last = self._c.execute(
                sa.select(sa.func.max(ids.c.position)).where(
                    ids.c.patient_pk == old.patient_pk, ids.c.position < _ALIAS_POSITION
                )
            ).scalar()
            self._c.execute(
                sa.insert(ids).values(
                    patient_pk=old.patient_pk,
                    value=correct.value,
                    issuer=correct.issuer,
                    position=(last if last is not None else -1) + 1,
                )
            )
        for table in (t.orders, t.studies):
            self._c.execute(
                sa.update(table)
                .where(
                    table.c.patient_id == old.value,
                    table.c.patient_issuer.in_([old.issuer, ""]),
                )
                .values(patient_id=correct.value, patient_issuer=correct.issuer)
            )

    def _row(self, identifier: PatientIdentifier) -> _IdentifierRow | None:
        """The identifier's own row, by the same issuer rules as _pk."""
        ids = t.patient_identifiers
        rows = self._c.execute(
            sa.select(ids.c.pk, ids.c.patient_pk, ids.c.value, ids.c.issuer, ids.c.position)
            .where(ids.c.value == identifier.value)
            .order_by(ids.c.pk)
        ).all()
        if identifier.issuer:
            exact = [r for r in rows if r.issuer == identifier.issuer]
            rows = exact or [r for r in rows if not r.issuer]
        elif len({r.patient_pk for r in rows}) != 1:
            return None
        if not rows:
            return None
        pk, patient_pk, value, issuer, position = rows[0]
        return _IdentifierRow(int(pk), int(patient_pk), value, issuer, int(position))

    def _primary(self, pk: int) -> PatientIdentifier:
        ids = t.patient_identifiers
        value, issuer = self._c.execute(
            sa.select(ids.c.value, ids.c.issuer)
            .where(ids.c.patient_pk == pk)
            .order_by(ids.c.position, ids.c.pk)
            .limit(1)
        ).one()
        return PatientIdentifier(PatientId(value), Issuer(issuer))

    def _link_between(self, a: int, b: int) -> int | None:
        links = t.patient_links.c
        return self._c.execute(
            sa.select(links.pk).where(
                sa.or_(
                    sa.and_(links.patient_pk == a, links.linked_pk == b),
                    sa.and_(links.patient_pk == b, links.linked_pk == a),
                )
            )
        ).scalar()

    def _move_links(self, merged_pk: int, survivor_pk: int) -> None:
        """The merged patient's links become the survivor's (one link per pair, none to itself)."""
        links = t.patient_links.c
        rows = self._c.execute(
            sa.select(links.pk, links.patient_pk, links.linked_pk).where(
                sa.or_(links.patient_pk == merged_pk, links.linked_pk == merged_pk)
            )
        ).all()
        for pk, first, second in rows:
            other = second if first == merged_pk else first
            if other == survivor_pk or self._link_between(survivor_pk, other) is not None:
                self._c.execute(sa.delete(t.patient_links).where(links.pk == pk))
                continue
            self._c.execute(
                sa.update(t.patient_links)
                .where(links.pk == pk)
                .values(
                    patient_pk=survivor_pk if first == merged_pk else first,
                    linked_pk=survivor_pk if second == merged_pk else second,
                )
            )


@dataclass(frozen=True, slots=True)
class _IdentifierRow:
    """One stored patient identifier."""

    pk: int
    patient_pk: int
    value: str
    issuer: str
    position: int


def _linked_to(conn: sa.Connection, pk: int) -> list[int]:
    """The patient and every patient linked to it, directly or through others (A24)."""
    links = t.patient_links.c
    found, frontier = [pk], {pk}
    while frontier:
        pairs = conn.execute(
            sa.select(links.patient_pk, links.linked_pk).where(
                sa.or_(links.patient_pk.in_(frontier), links.linked_pk.in_(frontier))
            )
        ).all()
        frontier = {int(p) for pair in pairs for p in pair} - set(found)
        found += sorted(frontier)
    return found


def identity_keys(conn: sa.Connection, identifier: PatientIdentifier) -> list[tuple[str, str]]:
    """(value, issuer) of every identifier of the patient holding `identifier` and its links.

    Empty when the identifier is unknown, ambiguous without an issuer, or an alias (merged or
    changed away): such an identifier selects only what literally carries it.
    """
    ids = t.patient_identifiers.c
    rows = conn.execute(
        sa.select(ids.patient_pk, ids.issuer).where(
            ids.value == identifier.value, ids.position < _ALIAS_POSITION
        )
    ).all()
    if identifier.issuer:
        rows = [r for r in rows if r.issuer in (identifier.issuer, "")]
    holders = {int(r.patient_pk) for r in rows}
    if len(holders) != 1:
        return []
    group = _linked_to(conn, holders.pop())
    return [
        (str(v), str(i))
        for v, i in conn.execute(
            sa.select(ids.value, ids.issuer).where(ids.patient_pk.in_(group))
        ).all()
    ]


#: Identifiers merged in sort after the survivor's own (the primary stays first).
_ALIAS_POSITION = 1000


__all__ = ["SqlPatientRepository", "identity_keys"]
