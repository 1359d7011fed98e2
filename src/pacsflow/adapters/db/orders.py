"""Imaging orders in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pacsflow.adapters.db import tables as t
from pacsflow.adapters.db.statements import upsert
from pacsflow.adapters.db.timestamps import aware
from pacsflow.domain.orders import (
    AccessionNumber,
    Order,
    OrderStatus,
    Priority,
    ProcedureCode,
    WorklistFilter,
)
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier
from pacsflow.domain.uids import Uid

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
        upsert(
            self._c,
            t.orders,
            {"accession_number": order.accession_number},
            values,
            {**values, "created_at": at},
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


__all__ = ["SqlOrderRepository"]
