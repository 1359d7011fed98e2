"""Read side: worklist items, studies, instances and exceptions as clinical users may see them."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pacsflow.domain.exception_queue import ExceptionRecord
from pacsflow.domain.orders import Order, OrderStatus, WorklistFilter
from pacsflow.domain.patients import Patient, PatientIdentifier
from pacsflow.domain.studies import InstanceRecord, StudyFilter, StudyRecord
from pacsflow.domain.uids import Uid
from pacsflow.workflow.ports.blobs import BlobStore
from pacsflow.workflow.ports.uow import UnitOfWork, UnitOfWorkFactory


class MergedIdQueries(enum.StrEnum):
    """What a query by a patient identifier merged or changed away (ADT A40/A47) finds."""

    NOTHING = "nothing"  # nothing: the identifier no longer names a patient (IHE PIR)
    REDIRECT = "redirect"  # what the patient it was merged into has


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

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        blobs: BlobStore,
        merged_id_queries: MergedIdQueries = MergedIdQueries.NOTHING,
    ) -> None:
        self._uow = uow
        self._blobs = blobs
        self._merged_id_queries = merged_id_queries

    def local_file(self, instance: InstanceRecord) -> Path | None:
        """The stored file of an instance, when the blob store keeps local files."""
        return self._blobs.local_path(instance.blob_key)

    def worklist(self, flt: WorklistFilter | None = None) -> list[WorklistItem]:
        """Orders a modality may still pick up (narrowed by the filter), with their patients."""
        with self._uow(read_only=True) as uow:
            orders = uow.orders.on_worklist(flt)
            patients = uow.patients.find_many(order.patient for order in orders)
            return [
                WorklistItem(order, patients[order.patient])
                for order in orders
                if order.patient in patients
            ]

    def studies(self, flt: StudyFilter) -> list[StudyView]:
        """Studies (published only unless asked otherwise) with their indexed patient.

        A patient identifier merged away finds the survivor's studies, or nothing, as
        configured (merged_id_queries).
        """
        with self._uow(read_only=True) as uow:
            if flt.patient is not None and uow.patients.is_alias(flt.patient):
                survivor = self._survivor(uow, flt.patient)
                if survivor is None:
                    return []
                flt = replace(flt, patient=survivor.primary)
            views: list[StudyView] = []
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
        """The registered patient holding an identifier (one merged away: the survivor)."""
        with self._uow(read_only=True) as uow:
            return uow.patients.find(identifier)

    def patient_as_queried(self, identifier: PatientIdentifier) -> Patient | None:
        """The patient a query by this identifier finds: by one merged away, the survivor or
        nothing, as configured (merged_id_queries)."""
        with self._uow(read_only=True) as uow:
            if uow.patients.is_alias(identifier):
                return self._survivor(uow, identifier)
            return uow.patients.find(identifier)

    def _survivor(self, uow: UnitOfWork, alias: PatientIdentifier) -> Patient | None:
        if self._merged_id_queries is MergedIdQueries.NOTHING:
            return None
        return uow.patients.find(alias)

    def instance_known(self, sop_uid: Uid) -> bool:
        """True when the instance is stored and indexed (for storage commitment)."""
        with self._uow(read_only=True) as uow:
            return uow.studies.has_instance(sop_uid)


__all__ = ["MergedIdQueries", "Queries", "StudyView", "WorklistItem"]
