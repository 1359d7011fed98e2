"""SQL implementations of the workflow's repositories."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from pacsflow.adapters.db import tables as t
from pacsflow.adapters.db.timestamps import aware
from pacsflow.domain.exception_queue import ExceptionRecord, HoldReason
from pacsflow.domain.matching import (
    ExceptionReason,
    MatchOutcomeKind,
    MismatchSource,
    ReceivedIdentity,
)
from pacsflow.domain.messages import InboundMessage, JournalEntry, MessageStatus
from pacsflow.domain.orders import (
    AccessionNumber,
    Order,
    OrderStatus,
    Priority,
    ProcedureCode,
    WorklistFilter,
)
from pacsflow.domain.patients import (
    Demographics,
    Issuer,
    Patient,
    PatientId,
    PatientIdentifier,
    PersonName,
)
from pacsflow.domain.procedure_steps import PerformedStep
from pacsflow.domain.reconciliation import ReconciliationAction
from pacsflow.domain.rejections import Rejection, RejectionReason, RejectionRecord
from pacsflow.domain.studies import (
    ArrivalView,
    ArrivedInstance,
    InstanceRecord,
    StudyFilter,
    StudyRecord,
    StudyState,
)
from pacsflow.domain.uids import Uid


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

    def _load(self, pk: int) -> Patient:
        p = self._c.execute(sa.select(t.patients).where(t.patients.c.pk == pk)).one()
        ids = list(
            self._c.execute(
                sa.select(t.patient_identifiers.c.value, t.patient_identifiers.c.issuer)
                .where(t.patient_identifiers.c.patient_pk == pk)
                .order_by(t.patient_identifiers.c.position, t.patient_identifiers.c.pk)
            ).all()
        )
        others = _linked_to(self._c, pk)[1:]
        if others:  # linked patients (A24): one person, their identifiers after its own
            ids += self._c.execute(
                sa.select(t.patient_identifiers.c.value, t.patient_identifiers.c.issuer)
                .where(t.patient_identifiers.c.patient_pk.in_(others))
                .order_by(
                    t.patient_identifiers.c.patient_pk,
                    t.patient_identifiers.c.position,
                    t.patient_identifiers.c.pk,
                )
            ).all()
        return Patient(
            identifiers=tuple(PatientIdentifier(PatientId(v), Issuer(i)) for v, i in ids),
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


def _identity_keys(conn: sa.Connection, identifier: PatientIdentifier) -> list[tuple[str, str]]:
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

_ORDER_FIELDS = (
    "placer_order_number",
    "filler_order_number",
    "requested_procedure_id",
    "requested_procedure_description",
    "modality",
    "scheduled_station_ae",
    "scheduled_station_name",
    "scheduled_procedure_step_id",
    "scheduled_start",
    "referring_physician",
    "reason",
)


class SqlOrderRepository:
    """Orders in SQL."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def _one(self, where: sa.ColumnElement[bool]) -> Order | None:
        row = self._c.execute(sa.select(t.orders).where(where)).first()
        return None if row is None else _order(row)

    def by_accession(self, accession: AccessionNumber) -> Order | None:
        """The order with this accession number."""
        return self._one(t.orders.c.accession_number == accession)

    def by_study_uid(self, study_uid: Uid) -> Order | None:
        """The order that reserved this Study Instance UID."""
        return self._one(t.orders.c.study_instance_uid == study_uid)

    def save(self, order: Order, at: datetime) -> None:
        """Insert or update an order by accession number."""
        code = order.procedure_code or ProcedureCode("")
        values: dict[str, Any] = {f: getattr(order, f) for f in _ORDER_FIELDS}
        values.update(
            patient_id=order.patient.value,
            patient_issuer=order.patient.issuer,
            study_instance_uid=order.study_instance_uid,
            status=order.status.value,
            procedure_code=code.value,
            procedure_code_scheme=code.scheme,
            procedure_code_meaning=code.meaning,
            priority=order.priority.value,
            updated_at=at,
        )
        updated = self._c.execute(
            sa.update(t.orders)
            .where(t.orders.c.accession_number == order.accession_number)
            .values(**values)
        )
        if updated.rowcount == 0:
            self._c.execute(
                sa.insert(t.orders).values(
                    accession_number=order.accession_number, created_at=at, **values
                )
            )

    def on_worklist(self, flt: WorklistFilter | None = None) -> Sequence[Order]:
        """Orders a modality may still pick up (narrowed by the filter when given)."""
        o = t.orders.c
        statuses = [s.value for s in OrderStatus if s.is_on_worklist]
        q = sa.select(t.orders).where(o.status.in_(statuses))
        if flt is not None:
            if flt.station_ae:
                # Several scheduled stations are kept backslash-separated (DICOM multi-value).
                ae = flt.station_ae
                q = q.where(
                    sa.or_(
                        o.scheduled_station_ae == ae,
                        o.scheduled_station_ae.startswith(ae + "\\", autoescape=True),
                        o.scheduled_station_ae.endswith("\\" + ae, autoescape=True),
                        o.scheduled_station_ae.contains("\\" + ae + "\\", autoescape=True),
                    )
                )
            if flt.modality:
                q = q.where(o.modality == flt.modality)
            if flt.accession_number:
                q = q.where(o.accession_number == flt.accession_number)
            if flt.patient_id:
                q = q.where(o.patient_id == flt.patient_id)
            if flt.start_from is not None:
                q = q.where(o.scheduled_start >= flt.start_from)
            if flt.start_to is not None:
                q = q.where(o.scheduled_start <= flt.start_to)
        rows = self._c.execute(q.order_by(o.scheduled_start, o.pk)).all()
        return [_order(r) for r in rows]

    def list(self, *, status: OrderStatus | None = None, limit: int = 100) -> Sequence[Order]:
        """Orders, newest first."""
        q = sa.select(t.orders).order_by(t.orders.c.pk.desc()).limit(limit)
        if status is not None:
            q = q.where(t.orders.c.status == status.value)
        return [_order(r) for r in self._c.execute(q).all()]


def _order(row: sa.Row[Any]) -> Order:
    m = row._mapping
    code = (
        ProcedureCode(m["procedure_code"], m["procedure_code_scheme"], m["procedure_code_meaning"])
        if m["procedure_code"]
        else None
    )
    start = m["scheduled_start"]
    return Order(
        accession_number=AccessionNumber(m["accession_number"]),
        patient=PatientIdentifier(PatientId(m["patient_id"]), Issuer(m["patient_issuer"])),
        study_instance_uid=Uid(m["study_instance_uid"]),
        status=OrderStatus(m["status"]),
        procedure_code=code,
        priority=Priority(m["priority"]),
        **{f: m[f] for f in _ORDER_FIELDS if f != "scheduled_start"},
        scheduled_start=aware(start) if start else None,
    )


class SqlStudyRepository:
    """The study/series/instance index in SQL."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def get(self, study_uid: Uid) -> StudyRecord | None:
        """One study."""
        rows = self._records(t.studies.c.study_instance_uid == study_uid, limit=1)
        return rows[0] if rows else None

    def head(self, study_uid: Uid) -> StudyRecord | None:
        """One study without its counts and modalities (no scan of its instances)."""
        row = self._c.execute(
            sa.select(t.studies).where(t.studies.c.study_instance_uid == study_uid)
        ).first()
        return _study(row, _NO_STATS) if row else None

    def has_visible_instance(self, study_uid: Uid) -> bool:
        """True when the study has an instance that is neither rejected nor a rejection note."""
        q = (
            sa.select(t.instances.c.pk)
            .join(t.series, t.instances.c.series_pk == t.series.c.pk)
            .join(t.studies, t.series.c.study_pk == t.studies.c.pk)
            .where(t.studies.c.study_instance_uid == study_uid, _visible())
            .limit(1)
        )
        return self._c.execute(q).first() is not None

    def has_instance(self, sop_uid: Uid) -> bool:
        """True when the instance is already indexed."""
        q = sa.select(t.instances.c.pk).where(t.instances.c.sop_instance_uid == sop_uid)
        return self._c.execute(q).first() is not None

    def view_arrival(self, sop_uid: Uid, study_uid: Uid) -> ArrivalView:
        """Rejection, duplicate and study of an arriving instance in one look (the ingest path)."""
        row = self._c.execute(_arrival_view(), {"sop_uid": sop_uid, "study_uid": study_uid}).one()
        m = row._mapping
        return ArrivalView(
            # The full record only when there is one: the message refusing the instance.
            rejection=self.rejection(sop_uid) if m["rejection_pk"] is not None else None,
            is_indexed=bool(m["is_indexed"]),
            study=_study(row, _NO_STATS) if m["pk"] is not None else None,
            has_visible_instance=bool(m["has_visible_instance"]),
        )

    def add_instance(self, arrived: ArrivedInstance, at: datetime) -> None:
        """Index an instance, creating its study and series when new."""
        inst = arrived.instance
        ident = arrived.identity
        study_pk = self._c.execute(
            _touch_study(), {"study_uid": inst.study_instance_uid, "touched_at": at}
        ).scalar()
        if study_pk is None:
            name = ident.demographics.name
            study_pk = self._c.execute(
                sa.insert(t.studies)
                .values(
                    study_instance_uid=inst.study_instance_uid,
                    state=StudyState.HELD.value,
                    accession_number=ident.accession_number,
                    received_patient_id=ident.patient.value,
                    received_issuer=ident.patient.issuer,
                    received_family_name=name.family,
                    received_given_name=name.given,
                    received_middle_name=name.middle,
                    received_birth_date=ident.demographics.birth_date,
                    received_sex=ident.demographics.sex,
                    received_accession=ident.accession_number,
                    study_date=arrived.study_date,
                    study_time=arrived.study_time,
                    study_description=arrived.study_description,
                    study_id=arrived.study_id,
                    referring_physician=arrived.referring_physician,
                    source_ae=arrived.source_ae,
                    created_at=at,
                    updated_at=at,
                )
                .returning(t.studies.c.pk)
            ).scalar_one()
        series_pk = self._c.execute(_series_pk(), {"series_uid": inst.series_instance_uid}).scalar()
        if series_pk is None:
            series_pk = self._c.execute(
                sa.insert(t.series)
                .values(
                    study_pk=study_pk,
                    series_instance_uid=inst.series_instance_uid,
                    modality=inst.modality,
                    series_number=inst.series_number,
                    series_description=inst.series_description,
                    body_part=inst.body_part,
                    series_date=inst.series_date,
                    series_time=inst.series_time,
                )
                .returning(t.series.c.pk)
            ).scalar_one()
        self._c.execute(
            _insert_instance(),
            {
                "series_pk": series_pk,
                "sop_instance_uid": inst.sop_instance_uid,
                "sop_class_uid": inst.sop_class_uid,
                "transfer_syntax_uid": inst.transfer_syntax_uid,
                "instance_number": inst.instance_number,
                "blob_key": inst.blob_key,
                "size": inst.size,
                "received_at": at,
                "rejection_note": arrived.rejection.reason.value if arrived.rejection else None,
            },
        )

    def set_match(
        self,
        study_uid: Uid,
        state: StudyState,
        patient: PatientIdentifier | None,
        accession: str,
    ) -> None:
        """Record which patient and order a study belongs to, and whether it is visible."""
        self._c.execute(
            sa.update(t.studies)
            .where(t.studies.c.study_instance_uid == study_uid)
            .values(
                state=state.value,
                patient_id=patient.value if patient else None,
                patient_issuer=patient.issuer if patient else None,
                accession_number=accession,
            )
        )

    def find(self, flt: StudyFilter) -> Sequence[StudyRecord]:
        """Studies passing the filter, newest first."""
        s = t.studies.c
        conds: list[sa.ColumnElement[bool]] = []
        if flt.is_published_only:
            conds.append(s.state == StudyState.PUBLISHED.value)
            conds.append(_has_visible_instance())
        if flt.patient is not None:
            keys = _identity_keys(self._c, flt.patient)
            if keys:
                issuer = sa.func.coalesce(s.patient_issuer, "")
                conds.append(
                    sa.or_(*(sa.and_(s.patient_id == v, issuer.in_([i, ""])) for v, i in keys))
                )
            else:
                conds.append(s.patient_id == flt.patient.value)
                if flt.patient.issuer:
                    conds.append(s.patient_issuer.in_([flt.patient.issuer, ""]))
        if flt.study_instance_uids:
            conds.append(s.study_instance_uid.in_(flt.study_instance_uids))
        if flt.accession_number:
            conds.append(s.accession_number == flt.accession_number)
        if flt.received_from is not None:
            conds.append(s.created_at >= flt.received_from.astimezone(UTC))
        if flt.received_until is not None:
            conds.append(s.created_at < flt.received_until.astimezone(UTC))
        return self._records(sa.and_(sa.true(), *conds), limit=flt.limit)

    def _records(self, where: sa.ColumnElement[bool], limit: int) -> list[StudyRecord]:
        s = t.studies
        rows = self._c.execute(sa.select(s).where(where).order_by(s.c.pk.desc()).limit(limit)).all()
        if not rows:
            return []
        pks = [r.pk for r in rows]
        stats: dict[int, tuple[set[str], list[str], int, int]] = {
            pk: (set(), [], 0, 0) for pk in pks
        }
        se = t.series.c
        agg = self._c.execute(
            sa.select(se.study_pk, se.modality, se.body_part, sa.func.count(t.instances.c.pk))
            .join(t.instances, t.instances.c.series_pk == se.pk)
            .where(se.study_pk.in_(pks), _visible())
            .group_by(se.pk, se.study_pk, se.modality, se.body_part)
        ).all()
        for study_pk, modality, body_part, count in agg:
            mods, parts, n_series, n_inst = stats[study_pk]
            if modality:
                mods.add(modality)
            if body_part and body_part not in parts:
                parts.append(body_part)
            stats[study_pk] = (mods, parts, n_series + 1, n_inst + int(count))
        return [_study(r, stats[r.pk]) for r in rows]

    def instances(
        self,
        *,
        study_uids: Sequence[Uid] = (),
        series_uids: Sequence[Uid] = (),
        sop_uids: Sequence[Uid] = (),
        is_published_only: bool = True,
    ) -> Sequence[InstanceRecord]:
        """Visible instances of the given studies/series (all when none given)."""
        q = _instance_select().where(_visible())
        if is_published_only:
            q = q.where(t.studies.c.state == StudyState.PUBLISHED.value)
        if study_uids:
            q = q.where(t.studies.c.study_instance_uid.in_(study_uids))
        if series_uids:
            q = q.where(t.series.c.series_instance_uid.in_(series_uids))
        if sop_uids:
            q = q.where(t.instances.c.sop_instance_uid.in_(sop_uids))
        return [_instance(r) for r in self._c.execute(q).all()]

    def last_received(self, study_uid: Uid) -> datetime | None:
        """When the study's newest instance arrived."""
        i, se, st = t.instances, t.series, t.studies
        value = self._c.execute(
            sa.select(sa.func.max(i.c.received_at))
            .select_from(i.join(se, i.c.series_pk == se.c.pk).join(st, se.c.study_pk == st.c.pk))
            .where(st.c.study_instance_uid == study_uid)
        ).scalar()
        return aware(value) if value is not None else None

    def instance(self, sop_uid: Uid) -> InstanceRecord | None:
        """One visible instance (None when rejected or a rejection note)."""
        q = _instance_select().where(t.instances.c.sop_instance_uid == sop_uid, _visible())
        row = self._c.execute(q).first()
        return None if row is None else _instance(row)

    def reject(self, rejection: Rejection, at: datetime) -> frozenset[Uid]:
        """Hide the instances a rejection note names, stored or still to come.

        An instance already rejected keeps its first rejection. The studies whose stored
        instances were hidden now.
        """
        r = t.rejections
        wanted = {i.sop_instance_uid: i for i in rejection.instances}
        known: set[str] = set()
        for chunk in _chunks(list(wanted)):
            known.update(
                self._c.execute(
                    sa.select(r.c.sop_instance_uid).where(r.c.sop_instance_uid.in_(chunk))
                )
                .scalars()
                .all()
            )
        new = [uid for uid in wanted if uid not in known]
        if not new:
            return frozenset()
        self._c.execute(
            sa.insert(r),
            [
                {
                    "sop_instance_uid": uid,
                    "sop_class_uid": wanted[uid].sop_class_uid,
                    "series_instance_uid": wanted[uid].series_instance_uid,
                    "study_instance_uid": wanted[uid].study_instance_uid,
                    "reason": rejection.reason.value,
                    "rejected_at": at,
                    "rejected_by": rejection.note,
                }
                for uid in new
            ],
        )
        i, se, st = t.instances, t.series, t.studies
        hidden: set[Uid] = set()
        for chunk in _chunks(new):
            hidden.update(
                Uid(uid)
                for uid in self._c.execute(
                    sa.select(st.c.study_instance_uid)
                    .select_from(
                        i.join(se, i.c.series_pk == se.c.pk).join(st, se.c.study_pk == st.c.pk)
                    )
                    .where(i.c.sop_instance_uid.in_(chunk))
                    .distinct()
                ).scalars()
            )
        return frozenset(hidden)

    def rejection(self, sop_uid: Uid) -> RejectionRecord | None:
        """How an instance was rejected, if it was."""
        r = t.rejections
        row = self._c.execute(sa.select(r).where(r.c.sop_instance_uid == sop_uid)).first()
        if row is None:
            return None
        m = row._mapping
        return RejectionRecord(
            sop_instance_uid=Uid(m["sop_instance_uid"]),
            series_instance_uid=Uid(m["series_instance_uid"]),
            study_instance_uid=Uid(m["study_instance_uid"]),
            reason=RejectionReason(m["reason"]),
            rejected_at=aware(m["rejected_at"]),
            rejected_by=Uid(m["rejected_by"]),
        )

    def series_study(self, series_uid: Uid) -> Uid | None:
        """The study a series is indexed under."""
        se, st = t.series, t.studies
        uid = self._c.execute(
            sa.select(st.c.study_instance_uid)
            .join(se, se.c.study_pk == st.c.pk)
            .where(se.c.series_instance_uid == series_uid)
        ).scalar()
        return None if uid is None else Uid(uid)

    def copy_study(self, source_uid: Uid, new_uid: Uid, at: datetime) -> None:
        """Index a new empty study like the source (see the port)."""
        s = t.studies
        row = self._c.execute(sa.select(s).where(s.c.study_instance_uid == source_uid)).one()
        kept = {
            c.name: row._mapping[c.name]
            for c in s.columns
            if c.name.startswith("received_")
            or c.name
            in (
                "study_date",
                "study_time",
                "study_description",
                "study_id",
                "referring_physician",
                "source_ae",
                "created_at",  # when its images arrived, not when they were split off
            )
        }
        self._c.execute(
            sa.insert(s).values(
                **kept,
                study_instance_uid=new_uid,
                state=StudyState.HELD.value,
                accession_number=row._mapping["accession_number"],
                updated_at=at,
            )
        )

    def move_series(self, series_uid: Uid, target_uid: Uid) -> None:
        """File a series under another study (see the port)."""
        target_pk = self._c.execute(
            sa.select(t.studies.c.pk).where(t.studies.c.study_instance_uid == target_uid)
        ).scalar_one()
        self._c.execute(
            sa.update(t.series)
            .where(t.series.c.series_instance_uid == series_uid)
            .values(study_pk=target_pk)
        )
        self._c.execute(
            sa.update(t.rejections)
            .where(t.rejections.c.series_instance_uid == series_uid)
            .values(study_instance_uid=target_uid)
        )

    def remove_study(self, study_uid: Uid) -> None:
        """Remove a study without series, and its exceptions, from the index."""
        pk = self._c.execute(
            sa.select(t.studies.c.pk).where(t.studies.c.study_instance_uid == study_uid)
        ).scalar_one()
        if self._c.execute(sa.select(t.series.c.pk).where(t.series.c.study_pk == pk)).first():
            raise ValueError(f"study {study_uid} still has series")
        self._c.execute(sa.delete(t.exceptions).where(t.exceptions.c.study_pk == pk))
        self._c.execute(sa.delete(t.studies).where(t.studies.c.pk == pk))


#: Bound parameters per IN (...) list: well under every backend's limit.
_CHUNK = 500


def _chunks(values: Sequence[str]) -> list[Sequence[str]]:
    return [values[n : n + _CHUNK] for n in range(0, len(values), _CHUNK)]


def _visible() -> sa.ColumnElement[bool]:
    """Instances clinical use may see: neither rejected nor an IOCM rejection note."""
    i, r = t.instances, t.rejections
    return sa.and_(
        i.c.rejection_note.is_(None),
        ~sa.exists().where(r.c.sop_instance_uid == i.c.sop_instance_uid),
    )


def _has_visible_instance() -> sa.ColumnElement[bool]:
    """The study (of the enclosing query) has at least one visible instance."""
    i, se = t.instances, t.series
    return sa.exists(
        sa.select(i.c.pk)
        .select_from(i.join(se, i.c.series_pk == se.c.pk))
        .where(se.c.study_pk == t.studies.c.pk, _visible())
    )


# The statements of the ingest path, built once: building a select per call costs more
# than running it.


@functools.cache
def _arrival_view() -> sa.Select[Any]:
    """One row whatever exists: the study's columns (NULL if new), rejection, duplicate."""
    i, r, st = t.instances, t.rejections, t.studies
    sop_uid = sa.bindparam("sop_uid", type_=i.c.sop_instance_uid.type)
    study_uid = sa.bindparam("study_uid", type_=st.c.study_instance_uid.type)
    one = sa.select(sa.literal_column("1").label("one")).subquery("one")
    return sa.select(
        st,
        sa.select(r.c.pk)
        .where(r.c.sop_instance_uid == sop_uid)
        .scalar_subquery()
        .label("rejection_pk"),
        sa.exists().where(i.c.sop_instance_uid == sop_uid).label("is_indexed"),
        _has_visible_instance().label("has_visible_instance"),
    ).select_from(one.outerjoin(st, st.c.study_instance_uid == study_uid))


@functools.cache
def _touch_study() -> sa.Update:
    """Mark a study updated; its pk, or no row when it is not indexed yet."""
    st = t.studies
    return (
        sa.update(st)
        .where(st.c.study_instance_uid == sa.bindparam("study_uid"))
        .values(updated_at=sa.bindparam("touched_at"))
        .returning(st.c.pk)
    )


@functools.cache
def _series_pk() -> sa.Select[Any]:
    se = t.series
    return sa.select(se.c.pk).where(se.c.series_instance_uid == sa.bindparam("series_uid"))


@functools.cache
def _insert_instance() -> sa.Insert:
    return sa.insert(t.instances)


def _instance_select() -> sa.Select[Any]:
    i, se, st = t.instances, t.series, t.studies
    return (
        sa.select(
            st.c.study_instance_uid,
            se.c.series_instance_uid,
            i.c.sop_instance_uid,
            i.c.sop_class_uid,
            i.c.transfer_syntax_uid,
            i.c.blob_key,
            i.c.size,
            se.c.series_number,
            se.c.series_description,
            se.c.modality,
            se.c.body_part,
            i.c.instance_number,
            se.c.series_date,
            se.c.series_time,
        )
        .join(se, i.c.series_pk == se.c.pk)
        .join(st, se.c.study_pk == st.c.pk)
        .order_by(st.c.pk, se.c.pk, i.c.pk)
    )


def _instance(row: sa.Row[Any]) -> InstanceRecord:
    m = row._mapping
    return InstanceRecord(
        study_instance_uid=Uid(m["study_instance_uid"]),
        series_instance_uid=Uid(m["series_instance_uid"]),
        sop_instance_uid=Uid(m["sop_instance_uid"]),
        sop_class_uid=Uid(m["sop_class_uid"]),
        transfer_syntax_uid=Uid(m["transfer_syntax_uid"]),
        blob_key=m["blob_key"],
        size=int(m["size"]),
        series_number=m["series_number"],
        series_description=m["series_description"],
        modality=m["modality"],
        body_part=m["body_part"],
        instance_number=m["instance_number"],
        series_date=m["series_date"],
        series_time=m["series_time"],
    )


def _received(m: Any) -> ReceivedIdentity:
    return ReceivedIdentity(
        patient=PatientIdentifier(
            PatientId(m["received_patient_id"]), Issuer(m["received_issuer"])
        ),
        demographics=Demographics(
            name=PersonName(family=m["received_family_name"], given=m["received_given_name"]),
            birth_date=m["received_birth_date"],
            sex=m["received_sex"],
        ),
        accession_number=m["received_accession"],
        study_instance_uid=Uid(m["study_instance_uid"]),
    )


#: Per study: modalities, body parts (in series order), series and instance counts.
_Stats = tuple[AbstractSet[str], Sequence[str], int, int]
_NO_STATS: _Stats = (frozenset(), (), 0, 0)


def _study(row: sa.Row[Any], stats: _Stats) -> StudyRecord:
    m = row._mapping
    patient = (
        PatientIdentifier(PatientId(m["patient_id"]), Issuer(m["patient_issuer"] or ""))
        if m["patient_id"] is not None
        else None
    )
    mods, parts, n_series, n_inst = stats
    study_date: date | None = m["study_date"]
    return StudyRecord(
        study_instance_uid=Uid(m["study_instance_uid"]),
        state=StudyState(m["state"]),
        received=_received(m),
        patient=patient,
        accession_number=m["accession_number"],
        study_date=study_date,
        study_time=m["study_time"],
        study_description=m["study_description"],
        study_id=m["study_id"],
        referring_physician=m["referring_physician"],
        modalities=tuple(sorted(mods)),
        body_parts=tuple(parts),
        series_count=n_series,
        instance_count=n_inst,
        received_at=aware(m["created_at"]),
        source_ae=m["source_ae"],
    )


class SqlExceptionRepository:
    """The exceptions queue in SQL."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def _select(self) -> sa.Select[Any]:
        e = t.exceptions
        return sa.select(e, t.studies.c.study_instance_uid).join(
            t.studies, e.c.study_pk == t.studies.c.pk
        )

    def open_for(self, study_uid: Uid) -> ExceptionRecord | None:
        """The open exception of a study, if any."""
        row = self._c.execute(
            self._select().where(
                t.studies.c.study_instance_uid == study_uid, t.exceptions.c.resolved_at.is_(None)
            )
        ).first()
        return None if row is None else _exception(row)

    def add(
        self,
        study_uid: Uid,
        reason: ExceptionReason,
        source: MismatchSource,
        detail: str,
        received: ReceivedIdentity,
        candidate_order: AccessionNumber | None,
        at: datetime,
    ) -> int:
        """Open an exception; its id."""
        study_pk = self._c.execute(
            sa.select(t.studies.c.pk).where(t.studies.c.study_instance_uid == study_uid)
        ).scalar_one()
        name = received.demographics.name
        return int(
            self._c.execute(
                sa.insert(t.exceptions)
                .values(
                    study_pk=study_pk,
                    reason=reason.value,
                    source=source.value,
                    detail=detail,
                    candidate_accession=candidate_order,
                    received_patient_id=received.patient.value,
                    received_issuer=received.patient.issuer,
                    received_family_name=name.family,
                    received_given_name=name.given,
                    received_birth_date=received.demographics.birth_date,
                    received_sex=received.demographics.sex,
                    received_accession=received.accession_number,
                    opened_at=at,
                )
                .returning(t.exceptions.c.pk)
            ).scalar_one()
        )

    def open_explained_by(
        self, *, accession: str = "", study_uid: str = "", patient_ids: Sequence[str] = ()
    ) -> Sequence[ExceptionRecord]:
        """Open exceptions whose received accession, study UID or patient ID is one of these."""
        e = t.exceptions
        conds: list[sa.ColumnElement[bool]] = []
        if accession:
            conds.append(e.c.received_accession == accession)
        if study_uid:
            conds.append(t.studies.c.study_instance_uid == study_uid)
        if patient_ids:
            conds.append(e.c.received_patient_id.in_(list(patient_ids)))
        if not conds:
            return []
        rows = self._c.execute(
            self._select()
            .where(e.c.resolved_at.is_(None), sa.or_(*conds))
            .order_by(e.c.opened_at, e.c.pk)
        ).all()
        return [_exception(r) for r in rows]

    def resolve(self, exception_id: int, at: datetime, resolution: str) -> None:
        """Close an exception, saying how it was resolved."""
        self._c.execute(
            sa.update(t.exceptions)
            .where(t.exceptions.c.pk == exception_id)
            .values(resolved_at=at, resolution=resolution)
        )

    def get(self, exception_id: int) -> ExceptionRecord | None:
        """One exception, open or resolved."""
        row = self._c.execute(self._select().where(t.exceptions.c.pk == exception_id)).first()
        return None if row is None else _exception(row)

    def reopen(self, exception_id: int) -> None:
        """Open a resolved exception again (undo)."""
        self._c.execute(
            sa.update(t.exceptions)
            .where(t.exceptions.c.pk == exception_id)
            .values(resolved_at=None, resolution="")
        )

    def set_owner(self, exception_id: int, owner: str) -> None:
        """Name who works an exception (empty: nobody)."""
        self._c.execute(
            sa.update(t.exceptions).where(t.exceptions.c.pk == exception_id).values(owner=owner)
        )

    def rehold(self, exception_id: int, hold: HoldReason) -> None:
        """Say anew why an open exception holds its study."""
        received = hold.received
        name = received.demographics.name
        self._c.execute(
            sa.update(t.exceptions)
            .where(t.exceptions.c.pk == exception_id)
            .values(
                reason=hold.reason.value,
                source=hold.source.value,
                detail=hold.detail,
                candidate_accession=hold.candidate_order,
                received_patient_id=received.patient.value,
                received_issuer=received.patient.issuer,
                received_family_name=name.family,
                received_given_name=name.given,
                received_birth_date=received.demographics.birth_date,
                received_sex=received.demographics.sex,
                received_accession=received.accession_number,
            )
        )

    def list_open(self, limit: int = 500) -> Sequence[ExceptionRecord]:
        """Open exceptions, oldest first."""
        rows = self._c.execute(
            self._select()
            .where(t.exceptions.c.resolved_at.is_(None))
            .order_by(t.exceptions.c.opened_at, t.exceptions.c.pk)
            .limit(limit)
        ).all()
        return [_exception(r) for r in rows]


def _exception(row: sa.Row[Any]) -> ExceptionRecord:
    m = row._mapping
    resolved = m["resolved_at"]
    return ExceptionRecord(
        id=int(m["pk"]),
        study_instance_uid=Uid(m["study_instance_uid"]),
        reason=ExceptionReason(m["reason"]),
        source=MismatchSource(m["source"]),
        detail=m["detail"],
        opened_at=aware(m["opened_at"]),
        received=_received(m),
        candidate_order=AccessionNumber(m["candidate_accession"])
        if m["candidate_accession"]
        else None,
        resolved_at=aware(resolved) if resolved else None,
        resolution=m["resolution"],
        owner=m["owner"],
    )


class SqlReconciliationLog:
    """Reconciliation actions in SQL."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def add(self, action: ReconciliationAction) -> int:
        """Record an action; its id."""
        before = action.before_patient
        return int(
            self._c.execute(
                sa.insert(t.reconciliation_actions)
                .values(
                    exception_pk=action.exception_id,
                    study_instance_uid=action.study_instance_uid,
                    action=action.action,
                    actor=action.actor,
                    at=action.at,
                    detail=action.detail,
                    before_state=action.before_state.value,
                    before_patient_id=before.value if before else None,
                    before_issuer=before.issuer if before else None,
                    before_accession=action.before_accession,
                    before_owner=action.before_owner,
                    before_hold=_hold_json(action.before_hold),
                    opened_exception_pk=action.opened_exception_id,
                    series_instance_uid=action.series_instance_uid,
                    target_study_uid=action.target_study_uid,
                    is_new_target=action.is_new_target,
                )
                .returning(t.reconciliation_actions.c.pk)
            ).scalar_one()
        )

    def get(self, action_id: int) -> ReconciliationAction | None:
        """One action."""
        row = self._c.execute(
            sa.select(t.reconciliation_actions).where(t.reconciliation_actions.c.pk == action_id)
        ).first()
        return None if row is None else _action(row)

    def later(self, action_id: int, study_uids: Sequence[Uid]) -> Sequence[ReconciliationAction]:
        """Actions after this one, not undone, on (or splitting into) any of these studies."""
        a = t.reconciliation_actions.c
        rows = self._c.execute(
            sa.select(t.reconciliation_actions)
            .where(
                a.pk > action_id,
                a.undone_at.is_(None),
                sa.or_(a.study_instance_uid.in_(study_uids), a.target_study_uid.in_(study_uids)),
            )
            .order_by(a.pk)
        ).all()
        return [_action(r) for r in rows]

    def has_actions(self, exception_id: int) -> bool:
        """True when any action was recorded on the exception."""
        a = t.reconciliation_actions.c
        return (
            self._c.execute(sa.select(a.pk).where(a.exception_pk == exception_id).limit(1)).first()
            is not None
        )

    def mark_undone(self, action_id: int, at: datetime) -> None:
        """Record that an action was undone."""
        self._c.execute(
            sa.update(t.reconciliation_actions)
            .where(t.reconciliation_actions.c.pk == action_id)
            .values(undone_at=at)
        )


def _action(row: sa.Row[Any]) -> ReconciliationAction:
    m = row._mapping
    return ReconciliationAction(
        id=int(m["pk"]),
        exception_id=int(m["exception_pk"]) if m["exception_pk"] is not None else None,
        study_instance_uid=Uid(m["study_instance_uid"]),
        action=m["action"],
        actor=m["actor"],
        at=aware(m["at"]),
        detail=m["detail"],
        before_state=StudyState(m["before_state"]),
        before_patient=(
            PatientIdentifier(PatientId(m["before_patient_id"]), Issuer(m["before_issuer"] or ""))
            if m["before_patient_id"] is not None
            else None
        ),
        before_accession=m["before_accession"],
        undone_at=aware(m["undone_at"]) if m["undone_at"] else None,
        before_owner=m["before_owner"],
        before_hold=_hold_from_json(m["before_hold"]),
        opened_exception_id=m["opened_exception_pk"],
        series_instance_uid=Uid(m["series_instance_uid"]) if m["series_instance_uid"] else None,
        target_study_uid=Uid(m["target_study_uid"]) if m["target_study_uid"] else None,
        is_new_target=bool(m["is_new_target"]),
    )


def _hold_json(hold: HoldReason | None) -> str | None:
    """A hold reason as the JSON text kept with an action (None stays NULL)."""
    if hold is None:
        return None
    r = hold.received
    d = r.demographics
    return json.dumps(
        {
            "reason": hold.reason.value,
            "source": hold.source.value,
            "detail": hold.detail,
            "candidate_order": hold.candidate_order,
            "patient_id": r.patient.value,
            "issuer": r.patient.issuer,
            "family_name": d.name.family,
            "given_name": d.name.given,
            "birth_date": d.birth_date.isoformat() if d.birth_date else None,
            "sex": d.sex,
            "accession_number": r.accession_number,
            "study_instance_uid": r.study_instance_uid,
        },
        sort_keys=True,
    )


def _hold_from_json(text: str | None) -> HoldReason | None:
    if not text:
        return None
    v = json.loads(text)
    birth = v["birth_date"]
    return HoldReason(
        reason=ExceptionReason(v["reason"]),
        source=MismatchSource(v["source"]),
        detail=v["detail"],
        received=ReceivedIdentity(
            patient=PatientIdentifier(PatientId(v["patient_id"]), Issuer(v["issuer"])),
            demographics=Demographics(
                name=PersonName(family=v["family_name"], given=v["given_name"]),
                birth_date=date.fromisoformat(birth) if birth else None,
                sex=v["sex"],
            ),
            accession_number=v["accession_number"],
            study_instance_uid=Uid(v["study_instance_uid"]),
        ),
        candidate_order=AccessionNumber(v["candidate_order"]) if v["candidate_order"] else None,
    )


class SqlEventLog:
    """Workflow outcome events in SQL."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def record_match(
        self,
        study_uid: Uid,
        kind: MatchOutcomeKind,
        at: datetime,
        reason: ExceptionReason | None = None,
        source: MismatchSource | None = None,
    ) -> None:
        """Record how a study's matching ended."""
        self._c.execute(
            sa.insert(t.match_events).values(
                study_instance_uid=study_uid,
                kind=kind.value,
                reason=reason.value if reason else None,
                source=source.value if source else None,
                at=at,
            )
        )

    def record_order_event(self, accession: AccessionNumber, event: str, at: datetime) -> None:
        """Record an order lifecycle event."""
        self._c.execute(
            sa.insert(t.order_events).values(accession_number=accession, event=event, at=at)
        )


class SqlMessageJournal:
    """The inbound HL7 message journal in SQL."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def add(
        self, message: InboundMessage, received_at: datetime, *, reuses: int | None = None
    ) -> int:
        """Journal a message as received (`reuses`: the entry whose control id it reuses)."""
        return int(
            self._c.execute(
                sa.insert(t.hl7_messages)
                .values(
                    received_at=received_at,
                    peer=message.peer[:128],
                    sending_application=message.sending_application[:180],
                    sending_facility=message.sending_facility[:180],
                    control_id=message.control_id[:199],
                    message_type=message.message_type[:32],
                    raw=message.raw,
                    status=MessageStatus.RECEIVED.value,
                    digest=message.digest[:64],
                    reuses_pk=reuses,
                )
                .returning(t.hl7_messages.c.pk)
            ).scalar_one()
        )

    def find_answered(self, message: InboundMessage) -> JournalEntry | None:
        """The applied or rejected entry this message repeats (same content), if any."""
        m = t.hl7_messages.c
        row = self._c.execute(
            self._answered(message)
            .where(m.digest.in_([message.digest[:64], ""]))
            .order_by(m.pk)
            .limit(1)
        ).first()
        return None if row is None else _entry(row)

    def find_reused(self, message: InboundMessage) -> JournalEntry | None:
        """The latest applied or rejected entry with this sender and control id."""
        m = t.hl7_messages.c
        row = self._c.execute(self._answered(message).order_by(m.pk.desc()).limit(1)).first()
        return None if row is None else _entry(row)

    @staticmethod
    def _answered(message: InboundMessage) -> sa.Select[Any]:
        m = t.hl7_messages.c
        return sa.select(t.hl7_messages).where(
            m.sending_application == message.sending_application[:180],
            m.sending_facility == message.sending_facility[:180],
            m.control_id == message.control_id[:199],
            m.status.in_([MessageStatus.APPLIED.value, MessageStatus.REJECTED.value]),
        )

    def settle(self, entry_id: int, status: MessageStatus, ack: bytes, error: str = "") -> None:
        """Record how a journaled message was answered."""
        self._c.execute(
            sa.update(t.hl7_messages)
            .where(t.hl7_messages.c.pk == entry_id)
            .values(status=status.value, ack=ack, error=error, settled_at=datetime.now(UTC))
        )

    def get(self, entry_id: int) -> JournalEntry | None:
        """One journal entry."""
        row = self._c.execute(
            sa.select(t.hl7_messages).where(t.hl7_messages.c.pk == entry_id)
        ).first()
        return None if row is None else _entry(row)


def _entry(row: sa.Row[Any]) -> JournalEntry:
    m = row._mapping
    return JournalEntry(
        id=int(m["pk"]),
        received_at=aware(m["received_at"]),
        message=InboundMessage(
            raw=bytes(m["raw"]),
            peer=m["peer"],
            sending_application=m["sending_application"],
            sending_facility=m["sending_facility"],
            control_id=m["control_id"],
            message_type=m["message_type"],
            digest=m["digest"],
        ),
        status=MessageStatus(m["status"]),
        ack=bytes(m["ack"] or b""),
        error=m["error"],
        reuses=m["reuses_pk"],
    )


class SqlProcedureStepRepository:
    """Performed procedure steps in SQL."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def get(self, sop_uid: Uid) -> PerformedStep | None:
        """One performed step."""
        row = self._c.execute(
            sa.select(t.procedure_steps).where(t.procedure_steps.c.sop_instance_uid == sop_uid)
        ).first()
        if row is None:
            return None
        return PerformedStep(
            sop_instance_uid=Uid(row.sop_instance_uid),
            status=row.status,
            accession_number=row.accession_number,
            study_instance_uid=row.study_instance_uid,
            performed_station_ae=row.performed_station_ae,
        )

    def add(self, step: PerformedStep, at: datetime) -> bool:
        """Record a new performed step; False when one with its SOP Instance UID exists."""
        if self.get(step.sop_instance_uid) is not None:
            return False
        try:
            with self._c.begin_nested():  # a concurrent N-CREATE of the same UID loses here
                self._c.execute(
                    sa.insert(t.procedure_steps).values(
                        sop_instance_uid=step.sop_instance_uid,
                        status=step.status,
                        accession_number=step.accession_number,
                        study_instance_uid=step.study_instance_uid,
                        performed_station_ae=step.performed_station_ae,
                        created_at=at,
                        updated_at=at,
                    )
                )
        except sa.exc.IntegrityError:
            return False
        return True

    def save(self, step: PerformedStep, at: datetime) -> None:
        """Insert or update a performed step."""
        values = {
            "status": step.status,
            "accession_number": step.accession_number,
            "study_instance_uid": step.study_instance_uid,
            "performed_station_ae": step.performed_station_ae,
            "updated_at": at,
        }
        done = self._c.execute(
            sa.update(t.procedure_steps)
            .where(t.procedure_steps.c.sop_instance_uid == step.sop_instance_uid)
            .values(**values)
        )
        if done.rowcount == 0:
            self._c.execute(
                sa.insert(t.procedure_steps).values(
                    sop_instance_uid=step.sop_instance_uid, created_at=at, **values
                )
            )


__all__ = [
    "SqlEventLog",
    "SqlExceptionRepository",
    "SqlMessageJournal",
    "SqlOrderRepository",
    "SqlPatientRepository",
    "SqlProcedureStepRepository",
    "SqlReconciliationLog",
    "SqlStudyRepository",
    "aware",
]
