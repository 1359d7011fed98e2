"""Imaging orders."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query
from pydantic import BaseModel

from pacsflow.adapters.http.context import Services
from pacsflow.adapters.http.routes import Routes
from pacsflow.domain.access import Permission
from pacsflow.domain.orders import Order, OrderStatus

routes = Routes(tags=["orders"])


class OrderOut(BaseModel):
    """An imaging order."""

    accession_number: str
    patient_id: str
    issuer: str
    status: str
    study_instance_uid: str
    requested_procedure_id: str
    requested_procedure_description: str
    procedure_code: str | None
    modality: str
    scheduled_station_ae: str
    scheduled_start: datetime | None
    priority: str
    referring_physician: str


def _order(o: Order) -> OrderOut:
    return OrderOut(
        accession_number=o.accession_number,
        patient_id=o.patient.value,
        issuer=o.patient.issuer,
        status=o.status.value,
        study_instance_uid=o.study_instance_uid,
        requested_procedure_id=o.requested_procedure_id,
        requested_procedure_description=o.requested_procedure_description,
        procedure_code=o.procedure_code.value if o.procedure_code else None,
        modality=o.modality,
        scheduled_station_ae=o.scheduled_station_ae,
        scheduled_start=o.scheduled_start,
        priority=o.priority.value,
        referring_physician=o.referring_physician,
    )


@routes.get(
    "/api/orders",
    Permission.READ_ORDERS,
)
def orders(
    services: Services,
    status: OrderStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
) -> list[OrderOut]:
    """Orders, newest first, optionally of one status."""
    return [_order(o) for o in services.queries.orders(status, limit)]
