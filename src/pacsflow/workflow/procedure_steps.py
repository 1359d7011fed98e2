"""Performed procedure steps (MPPS): the modality reports start, completion, discontinuation."""

from __future__ import annotations

import enum
from dataclasses import replace

from pacsflow.domain.errors import (
    DuplicateProcedureStep,
    InvalidInput,
    ProcedureStepFinished,
    UnknownProcedureStep,
)
from pacsflow.domain.events import ProcedureCompleted
from pacsflow.domain.orders import AccessionNumber, Order, OrderStatus
from pacsflow.domain.procedure_steps import PerformedStep
from pacsflow.domain.uids import Uid
from pacsflow.workflow.events import EventBus
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.ports.uow import UnitOfWork, UnitOfWorkFactory


class StepStatus(enum.StrEnum):
    """PS3.3 C.4.14 Performed Procedure Step Status."""

    IN_PROGRESS = "IN PROGRESS"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"


_ORDER_STATUS = {
    StepStatus.IN_PROGRESS: OrderStatus.IN_PROGRESS,
    StepStatus.COMPLETED: OrderStatus.COMPLETED,
    StepStatus.DISCONTINUED: OrderStatus.DISCONTINUED,
}


class ProcedureSteps:
    """Tracks performed steps and moves their orders along."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        events: EventBus | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._events = events or EventBus()

    def start(self, step: PerformedStep) -> None:
        """A modality began a procedure step (N-CREATE, status IN PROGRESS)."""
        if step.status != StepStatus.IN_PROGRESS:
            raise InvalidInput(
                f"a new performed procedure step must be IN PROGRESS, not {step.status!r}",
                location="PerformedProcedureStepStatus",
            )
        with self._uow() as uow:
            now = self._clock.now()
            # A modality re-sending after a timeout must not reopen a finished exam.
            if not uow.procedure_steps.add(step, now):
                raise DuplicateProcedureStep(
                    f"performed procedure step {step.sop_instance_uid} exists already"
                )
            self._move_order(uow, step, StepStatus.IN_PROGRESS)
            uow.commit()

    def update(self, sop_uid: Uid, status: str) -> PerformedStep:
        """A modality updated a step (N-SET); COMPLETED/DISCONTINUED finish it and its order.

        A finished step refuses every update, whatever it carries.
        """
        with self._uow() as uow:
            step = uow.procedure_steps.get(sop_uid)
            if step is None:
                raise UnknownProcedureStep(f"no performed procedure step {sop_uid}")
            if step.status != StepStatus.IN_PROGRESS:
                # PS3.4 F.7.2.2.2: once COMPLETED or DISCONTINUED, no attribute may change.
                raise ProcedureStepFinished(
                    f"procedure step {sop_uid} is already {step.status}; it cannot change"
                )
            if status and status != step.status:
                try:
                    new = StepStatus(status)
                except ValueError as exc:
                    raise InvalidInput(
                        f"unknown procedure step status {status!r}",
                        location="PerformedProcedureStepStatus",
                    ) from exc
                step = replace(step, status=new.value)
                now = self._clock.now()
                uow.procedure_steps.save(step, now)
                self._move_order(uow, step, new)
                study_uid = _study_of(uow, step)
                if new is StepStatus.COMPLETED and study_uid:
                    # The study is complete: what waits for it starts, same transaction.
                    self._events.publish(uow, [ProcedureCompleted(study_uid, now)])
            uow.commit()
            return step

    def _move_order(self, uow: UnitOfWork, step: PerformedStep, status: StepStatus) -> None:
        order = _order_of(uow, step)
        if order is None or order.status is OrderStatus.CANCELLED:
            return
        target = _ORDER_STATUS[status]
        if order.status != target:
            now = self._clock.now()
            uow.orders.save(order.with_status(target), now)
            uow.events.record_order_event(order.accession_number, target.value, now)


def _study_of(uow: UnitOfWork, step: PerformedStep) -> Uid | None:
    """The study a step produced: its own Study Instance UID, else its order's."""
    if step.study_instance_uid:
        return Uid(step.study_instance_uid)
    order = _order_of(uow, step)
    return order.study_instance_uid if order and order.study_instance_uid else None


def _order_of(uow: UnitOfWork, step: PerformedStep) -> Order | None:
    if step.accession_number:
        order = uow.orders.by_accession(AccessionNumber(step.accession_number))
        if order is not None:
            return order
    if step.study_instance_uid:
        return uow.orders.by_study_uid(Uid(step.study_instance_uid))
    return None


__all__ = ["ProcedureSteps", "StepStatus"]
