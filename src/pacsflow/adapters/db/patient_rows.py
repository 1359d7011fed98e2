"""Patient rows as records, many at once: the worklist loads all its patients in one go."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import sqlalchemy as sa

from pacsflow.adapters.db import tables as t
from pacsflow.adapters.db.statements import chunks as _chunks
from pacsflow.domain.patients import (
    Demographics,
    Issuer,
    Patient,
    PatientId,
    PatientIdentifier,
    PersonName,
)


def holders(
    conn: sa.Connection, identifiers: Sequence[PatientIdentifier]
) -> dict[PatientIdentifier, int]:
    """The patient row holding each identifier, by the rule of one lookup (issuer optional
    when unambiguous); identifiers no patient holds are left out."""
    ids = t.patient_identifiers.c
    rows_by_value: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for chunk in _chunks(sorted({i.value for i in identifiers})):
        for value, issuer, patient_pk in conn.execute(
            sa.select(ids.value, ids.issuer, ids.patient_pk)
            .where(ids.value.in_(chunk))
            .order_by(ids.pk)
        ):
            rows_by_value[value].append((int(patient_pk), issuer))
    found: dict[PatientIdentifier, int] = {}
    for identifier in identifiers:
        rows = rows_by_value.get(identifier.value, [])
        if identifier.issuer:
            pks = [pk for pk, issuer in rows if issuer in (identifier.issuer, "")]
            if pks:
                found[identifier] = pks[0]
        elif len({pk for pk, _ in rows}) == 1:
            found[identifier] = rows[0][0]
    return found


def load_patients(conn: sa.Connection, pks: Iterable[int]) -> dict[int, Patient]:
    """These patients by row: their own identifiers first, then those of linked ones (A24)."""
    wanted = sorted(set(pks))
    if not wanted:
        return {}
    groups = _link_groups(conn, wanted)
    everyone = sorted({pk for group in groups.values() for pk in group})
    c = t.patient_identifiers.c
    ids: dict[int, list[PatientIdentifier]] = defaultdict(list)
    for chunk in _chunks(everyone):
        for value, issuer, patient_pk in conn.execute(
            sa.select(c.value, c.issuer, c.patient_pk)
            .where(c.patient_pk.in_(chunk))
            .order_by(c.patient_pk, c.position, c.pk)
        ):
            ids[int(patient_pk)].append(PatientIdentifier(PatientId(value), Issuer(issuer)))
    patients: dict[int, Patient] = {}
    for chunk in _chunks(wanted):
        for p in conn.execute(sa.select(t.patients).where(t.patients.c.pk.in_(chunk))):
            pk = int(p.pk)
            own = ids[pk]
            linked = [i for other in sorted(groups[pk] - {pk}) for i in ids[other]]
            patients[pk] = Patient(
                identifiers=(*own, *linked),
                demographics=Demographics(
                    name=PersonName(
                        family=p.family_name,
                        given=p.given_name,
                        middle=p.middle_name,
                        prefix=p.name_prefix,
                        suffix=p.name_suffix,
                    ),
                    birth_date=p.birth_date,
                    sex=p.sex,
                ),
            )
    return patients


def _link_groups(conn: sa.Connection, pks: Sequence[int]) -> Mapping[int, set[int]]:
    """Each patient with every patient linked to it, directly or through others (A24)."""
    links = t.patient_links.c
    edges: dict[int, set[int]] = defaultdict(set)
    seen, frontier = set(pks), set(pks)
    while frontier:
        pairs: list[tuple[int, int]] = []
        for chunk in _chunks(sorted(frontier)):
            pairs += (
                (int(a), int(b))
                for a, b in conn.execute(
                    sa.select(links.patient_pk, links.linked_pk).where(
                        sa.or_(links.patient_pk.in_(chunk), links.linked_pk.in_(chunk))
                    )
                )
            )
        for a, b in pairs:
            edges[a].add(b)
            edges[b].add(a)
        frontier = {p for pair in pairs for p in pair} - seen
        seen |= frontier
    groups: dict[int, set[int]] = {}
    for pk in pks:
        group, todo = {pk}, [pk]
        while todo:
            for other in edges[todo.pop()] - group:
                group.add(other)
                todo.append(other)
        groups[pk] = group
    return groups


__all__ = ["holders", "load_patients"]
