"""The index of studies, series and instances."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from pacsflow.domain.patients import PatientIdentifier
from pacsflow.domain.rejections import Rejection, RejectionRecord
from pacsflow.domain.studies import (
    ArrivalView,
    ArrivedInstance,
    InstanceRecord,
    StudyFilter,
    StudyRecord,
    StudyState,
)
from pacsflow.domain.uids import Uid


class StudyRepository(Protocol):
    """The index of studies, series and instances."""

    def get(self, study_uid: Uid) -> StudyRecord | None:
        """One study."""
        ...

    def head(self, study_uid: Uid) -> StudyRecord | None:
        """One study without its counts and modalities (cheap: the ingest hot path)."""
        ...

    def has_visible_instance(self, study_uid: Uid) -> bool:
        """True when the study has an instance that is neither rejected nor a rejection note."""
        ...

    def has_instance(self, sop_uid: Uid) -> bool:
        """True when the instance is already indexed."""
        ...

    def view_arrival(self, sop_uid: Uid, study_uid: Uid) -> ArrivalView:
        """Rejection, duplicate and study of an arriving instance in one look (the ingest path)."""
        ...

    def add_instance(self, arrived: ArrivedInstance, at: datetime) -> None:
        """Index an instance, creating its study and series when new."""
        ...

    def set_match(
        self,
        study_uid: Uid,
        state: StudyState,
        patient: PatientIdentifier | None,
        accession: str,
    ) -> None:
        """Record which patient and order a study belongs to, and whether it is visible."""
        ...

    def find(self, flt: StudyFilter) -> Sequence[StudyRecord]:
        """Studies passing the filter, newest first.

        Counts and modalities cover visible instances only (neither rejected nor rejection
        notes); with is_published_only, a study with no visible instance is not listed.
        """
        ...

    def instances(
        self,
        *,
        study_uids: Sequence[Uid] = (),
        series_uids: Sequence[Uid] = (),
        sop_uids: Sequence[Uid] = (),
        is_published_only: bool = True,
    ) -> Sequence[InstanceRecord]:
        """Visible instances of the given studies/series (all when none given)."""
        ...

    def last_received(self, study_uid: Uid) -> datetime | None:
        """When the study's newest instance arrived."""
        ...

    def instance(self, sop_uid: Uid) -> InstanceRecord | None:
        """One visible instance (None when rejected or a rejection note)."""
        ...

    def reject(self, rejection: Rejection, at: datetime) -> frozenset[Uid]:
        """Hide the instances a rejection note names, stored or still to come.

        An instance already rejected keeps its first rejection. The studies whose stored
        instances were hidden now.
        """
        ...

    def rejection(self, sop_uid: Uid) -> RejectionRecord | None:
        """How an instance was rejected, if it was."""
        ...

    def series_study(self, series_uid: Uid) -> Uid | None:
        """The study a series is indexed under (None when no such series)."""
        ...

    def copy_study(self, source_uid: Uid, new_uid: Uid, at: datetime) -> None:
        """Index a new study without series: the source's received identity and attributes,
        held, belonging to nobody yet (a split fills and matches it)."""
        ...

    def move_series(self, series_uid: Uid, target_uid: Uid) -> None:
        """File a series, its instances and their rejection records under another study.

        Index only: the stored objects stay as received (the Study Instance UID is coerced
        from the index when they leave).
        """
        ...

    def remove_study(self, study_uid: Uid) -> None:
        """Remove a study that has no series left, with its exceptions, from the index."""
        ...


__all__ = [
    "StudyRepository",
]
