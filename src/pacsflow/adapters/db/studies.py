"""The study/series/instance index in SQL, and the IOCM rejections that hide instances."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from pacsflow.adapters.db import tables as t
from pacsflow.adapters.db.patients import identity_keys
from pacsflow.adapters.db.statements import chunks
from pacsflow.adapters.db.study_rows import (
    NO_STATS,
    instance_record,
    instance_select,
    study_has_visible,
    study_record,
    visible,
)
from pacsflow.adapters.db.timestamps import aware
from pacsflow.domain.patients import PatientIdentifier
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
        return study_record(row, NO_STATS) if row else None

    def has_visible_instance(self, study_uid: Uid) -> bool:
        """True when the study has an instance that is neither rejected nor a rejection note."""
        q = (
            sa.select(t.instances.c.pk)
            .join(t.series, t.instances.c.series_pk == t.series.c.pk)
            .join(t.studies, t.series.c.study_pk == t.studies.c.pk)
            .where(t.studies.c.study_instance_uid == study_uid, visible())
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
            study=study_record(row, NO_STATS) if m["pk"] is not None else None,
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
            conds.append(study_has_visible())
        if flt.patient is not None:
            keys = identity_keys(self._c, flt.patient)
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
            .where(se.study_pk.in_(pks), visible())
            .group_by(se.pk, se.study_pk, se.modality, se.body_part)
        ).all()
        for study_pk, modality, body_part, count in agg:
            mods, parts, n_series, n_inst = stats[study_pk]
            if modality:
                mods.add(modality)
            if body_part and body_part not in parts:
                parts.append(body_part)
            stats[study_pk] = (mods, parts, n_series + 1, n_inst + int(count))
        return [study_record(r, stats[r.pk]) for r in rows]

    def instances(
        self,
        *,
        study_uids: Sequence[Uid] = (),
        series_uids: Sequence[Uid] = (),
        sop_uids: Sequence[Uid] = (),
        is_published_only: bool = True,
    ) -> Sequence[InstanceRecord]:
        """Visible instances of the given studies/series (all when none given)."""
        q = instance_select().where(visible())
        if is_published_only:
            q = q.where(t.studies.c.state == StudyState.PUBLISHED.value)
        if study_uids:
            q = q.where(t.studies.c.study_instance_uid.in_(study_uids))
        if series_uids:
            q = q.where(t.series.c.series_instance_uid.in_(series_uids))
        if sop_uids:
            q = q.where(t.instances.c.sop_instance_uid.in_(sop_uids))
        return [instance_record(r) for r in self._c.execute(q).all()]

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
        q = instance_select().where(t.instances.c.sop_instance_uid == sop_uid, visible())
        row = self._c.execute(q).first()
        return None if row is None else instance_record(row)

    def reject(self, rejection: Rejection, at: datetime) -> frozenset[Uid]:
        """Hide the instances a rejection note names, stored or still to come.

        An instance already rejected keeps its first rejection. The studies whose stored
        instances were hidden now.
        """
        r = t.rejections
        wanted = {i.sop_instance_uid: i for i in rejection.instances}
        known: set[str] = set()
        for chunk in chunks(list(wanted)):
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
        for chunk in chunks(new):
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


# The statements of the ingest path, built once: building a select per call costs more
# than running it.


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
        study_has_visible().label("has_visible_instance"),
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


__all__ = ["SqlStudyRepository"]
