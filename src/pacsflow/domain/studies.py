"""Indexed studies and instances: what the index keeps and how it is searched."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime

from pacsflow.domain.matching import ReceivedIdentity
from pacsflow.domain.patients import PatientIdentifier
from pacsflow.domain.rejections import Rejection, RejectionRecord
from pacsflow.domain.uids import Uid


class StudyState(enum.StrEnum):
    """Whether a study is visible to clinical use."""

    PUBLISHED = "published"
    HELD = "held"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class StudyRecord:
    """An indexed study: received identity, match result and visibility."""

    study_instance_uid: Uid
    state: StudyState
    received: ReceivedIdentity
    patient: PatientIdentifier | None
    accession_number: str
    study_date: date | None = None
    study_time: str = ""
    study_description: str = ""
    study_id: str = ""
    referring_physician: str = ""
    modalities: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()  # BodyPartExamined of its series
    series_count: int = 0
    instance_count: int = 0
    received_at: datetime | None = None
    source_ae: str = ""


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One stored instance and where its study/series stand."""

    study_instance_uid: Uid
    series_instance_uid: Uid
    sop_instance_uid: Uid
    sop_class_uid: Uid
    transfer_syntax_uid: Uid
    blob_key: str
    size: int
    series_number: str = ""
    series_description: str = ""
    modality: str = ""
    body_part: str = ""
    instance_number: str = ""
    series_date: str = ""
    series_time: str = ""


@dataclass(frozen=True, slots=True)
class ArrivedInstance:
    """An instance that arrived, with the study attributes the index keeps."""

    identity: ReceivedIdentity
    instance: InstanceRecord
    study_date: date | None = None
    study_time: str = ""
    study_description: str = ""
    study_id: str = ""
    referring_physician: str = ""
    source_ae: str = ""
    rejection: Rejection | None = None  # set when the instance is an IOCM rejection note


@dataclass(frozen=True, slots=True)
class ArrivalView:
    """What the index holds about an arriving instance and its study, before indexing it."""

    rejection: RejectionRecord | None  # set when a rejection note rejected the instance
    is_indexed: bool  # the instance is already indexed (a duplicate)
    study: StudyRecord | None  # its study without counts and modalities, if indexed
    has_visible_instance: bool  # the study has an instance neither rejected nor a note


@dataclass(frozen=True, slots=True)
class StudyFilter:
    """Exact-value filters the index can apply before finer matching.

    `patient` selects the studies of the patient holding that identifier and of every patient
    linked to it; an identifier merged or changed away (an alias) selects nothing.
    """

    patient: PatientIdentifier | None = None
    study_instance_uids: tuple[Uid, ...] = ()
    accession_number: str = ""
    is_published_only: bool = True
    limit: int = 1000
    received_from: datetime | None = None  # first instance received at or after
    received_until: datetime | None = None  # ... and before


__all__ = [
    "ArrivalView",
    "ArrivedInstance",
    "InstanceRecord",
    "StudyFilter",
    "StudyRecord",
    "StudyState",
]
