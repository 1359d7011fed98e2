"""Read side: worklist items, studies, instances and exceptions as clinical users may see them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pacsflow.domain.orders import Order, OrderStatus
from pacsflow.domain.patients import Patient, PatientIdentifier
from pacsflow.domain.uids import Uid
from pacsflow.workflow.ports import (
    BlobStore,
    ExceptionRecord,
    InstanceRecord,
    StudyFilter,
    StudyRecord,
    UnitOfWorkFactory,
    WorklistFilter,
)


@dataclass(frozen=True, slots=True)
class WorklistItem:
    """A scheduled order with its registered patient, as a modality pulls it."""

    order: Order
    patient: Patient


@dataclass(frozen=True, slots=True)
class StudyView:
    """A study with the identity the index holds for it (the truth, not the file's header)."""

    study: StudyRecord
    patient: Patient | None


class Queries:
    """Answers the questions modalities, workstations and people ask."""

    def __init__(self, uow: UnitOfWorkFactory, blobs: BlobStore) -> None:
        self._uow = uow
        self._blobs = blobs

    def local_file(self, instance: InstanceRecord) -> Path | None:
        """The stored file of an instance, when the blob store keeps local files."""
        return self._blobs.local_path(instance.blob_key)

    def worklist(self, flt: WorklistFilter | None = None) -> list[WorklistItem]:
        """Orders a modality may still pick up (narrowed by the filter), with their patients."""
        with self._uow(read_only=True) as uow:
            items = []
            for order in uow.orders.on_worklist(flt):
                patient = uow.patients.find(order.patient)
                if patient is not None:
                    items.append(WorklistItem(order, patient))
            return items

    def studies(self, flt: StudyFilter) -> list[StudyView]:
        """Studies (published only unless asked otherwise) with their indexed patient."""
        with self._uow(read_only=True) as uow:
            views = []
            cache: dict[PatientIdentifier, Patient | None] = {}
            for study in uow.studies.find(flt):
                patient = None
                if study.patient is not None:
                    if study.patient not in cache:
                        cache[study.patient] = uow.patients.find(study.patient)
                    patient = cache[study.patient]
                views.append(StudyView(study, patient))
            return views

    def study(self, uid: Uid) -> StudyView | None:
        """One study, whatever its state."""
        with self._uow(read_only=True) as uow:
            study = uow.studies.get(uid)
            if study is None:
                return None
            patient = uow.patients.find(study.patient) if study.patient else None
            return StudyView(study, patient)

    def instances(
        self,
        *,
        study_uids: Sequence[Uid] = (),
        series_uids: Sequence[Uid] = (),
        sop_uids: Sequence[Uid] = (),
        is_published_only: bool = True,
    ) -> Sequence[InstanceRecord]:
        """Stored instances of the given studies/series/instances."""
        with self._uow(read_only=True) as uow:
            return uow.studies.instances(
                study_uids=study_uids,
                series_uids=series_uids,
                sop_uids=sop_uids,
                is_published_only=is_published_only,
            )

    def exceptions(self, limit: int = 500) -> Sequence[ExceptionRecord]:
        """Open exceptions, oldest first."""
        with self._uow(read_only=True) as uow:
            return uow.exceptions.list_open(limit)

    def orders(self, status: OrderStatus | None = None, limit: int = 100) -> Sequence[Order]:
        """Orders, newest first."""
        with self._uow(read_only=True) as uow:
            return uow.orders.list(status=status, limit=limit)

    def patient(self, identifier: PatientIdentifier) -> Patient | None:
        """A registered patient."""
        with self._uow(read_only=True) as uow:
            return uow.patients.find(identifier)

    def instance_known(self, sop_uid: Uid) -> bool:
        """True when the instance is stored and indexed (for storage commitment)."""
        with self._uow(read_only=True) as uow:
            return uow.studies.has_instance(sop_uid)


__all__ = ["Queries", "StudyView", "WorklistItem"]
