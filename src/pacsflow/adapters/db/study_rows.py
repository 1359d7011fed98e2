"""Study and instance rows as records, and which instances clinical use may see."""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from datetime import date
from typing import Any

import sqlalchemy as sa

from pacsflow.adapters.db import tables as t
from pacsflow.adapters.db.timestamps import aware
from pacsflow.domain.matching import ReceivedIdentity
from pacsflow.domain.patients import Demographics, Issuer, PatientId, PatientIdentifier, PersonName
from pacsflow.domain.studies import InstanceRecord, StudyRecord, StudyState
from pacsflow.domain.uids import Uid


def visible() -> sa.ColumnElement[bool]:
    """Instances clinical use may see: neither rejected nor an IOCM rejection note."""
    i, r = t.instances, t.rejections
    return sa.and_(
        i.c.rejection_note.is_(None),
        ~sa.exists().where(r.c.sop_instance_uid == i.c.sop_instance_uid),
    )


def study_has_visible() -> sa.ColumnElement[bool]:
    """The study (of the enclosing query) has at least one visible instance."""
    i, se = t.instances, t.series
    return sa.exists(
        sa.select(i.c.pk)
        .select_from(i.join(se, i.c.series_pk == se.c.pk))
        .where(se.c.study_pk == t.studies.c.pk, visible())
    )


def instance_select() -> sa.Select[Any]:
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


def instance_record(row: sa.Row[Any]) -> InstanceRecord:
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


def received_identity(m: Any) -> ReceivedIdentity:
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
Stats = tuple[AbstractSet[str], Sequence[str], int, int]
NO_STATS: Stats = (frozenset(), (), 0, 0)


def study_record(row: sa.Row[Any], stats: Stats) -> StudyRecord:
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
        received=received_identity(m),
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


__all__ = [
    "NO_STATS",
    "Stats",
    "instance_record",
    "instance_select",
    "received_identity",
    "study_has_visible",
    "study_record",
    "visible",
]
