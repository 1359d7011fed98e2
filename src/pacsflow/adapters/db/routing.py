"""Routing rule versions, activations and the record of forwards, in SQL."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from pacsflow.adapters.db import tables as t
from pacsflow.adapters.db.statements import upsert
from pacsflow.adapters.db.timestamps import aware
from pacsflow.domain.routing import Activation, Alert, ForwardRecord, ForwardState, RuleVersion
from pacsflow.domain.studies import InstanceRecord
from pacsflow.domain.uids import Uid


def _version(row: sa.Row[Any]) -> RuleVersion:
    return RuleVersion(
        version=row.version,
        text=row.text,
        author=row.author,
        comment=row.comment,
        created_at=aware(row.created_at),
    )


def _forward(r: sa.Row[Any]) -> ForwardRecord:
    return ForwardRecord(
        sop_instance_uid=Uid(r.sop_instance_uid),
        study_instance_uid=Uid(r.study_instance_uid),
        destination=r.destination,
        blob_key=r.blob_key,
        rule_version=r.rule_version,
        state=ForwardState(r.state),
        queued_at=aware(r.queued_at),
        sent_at=aware(r.sent_at) if r.sent_at else None,
        last_error=r.last_error,
    )


@functools.cache
def _active_version() -> sa.Select[Any]:
    """Built once: every stored instance asks it (building costs more than running it)."""
    a = t.routing_activations
    return sa.select(a.c.version).order_by(a.c.pk.desc()).limit(1)


class SqlRoutingStore:
    """Routing state over one connection, inside the caller's transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def add_version(self, text: str, author: str, comment: str, at: datetime) -> int:
        """Save a new version of the rules; its number."""
        result = self._c.execute(
            sa.insert(t.routing_versions).values(
                text=text, author=author, comment=comment, created_at=at.astimezone(UTC)
            )
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def version(self, number: int) -> RuleVersion | None:
        """One version."""
        row = self._c.execute(
            sa.select(t.routing_versions).where(t.routing_versions.c.version == number)
        ).first()
        return _version(row) if row else None

    def versions(self) -> Sequence[RuleVersion]:
        """Every version, newest first."""
        rows = self._c.execute(
            sa.select(t.routing_versions).order_by(t.routing_versions.c.version.desc())
        )
        return [_version(r) for r in rows]

    def activate(self, number: int, actor: str, at: datetime) -> None:
        """Make a version the active one."""
        self._c.execute(
            sa.insert(t.routing_activations).values(
                version=number, actor=actor, at=at.astimezone(UTC)
            )
        )

    def active_version(self) -> int | None:
        """The number of the active version (the latest activated), if any."""
        number = self._c.execute(_active_version()).scalar()
        return None if number is None else int(number)

    def activations(self, limit: int = 100) -> Sequence[Activation]:
        """Activations, newest first (the first is the active version)."""
        a = t.routing_activations
        rows = self._c.execute(sa.select(a).order_by(a.c.pk.desc()).limit(limit))
        return [Activation(version=r.version, actor=r.actor, at=aware(r.at)) for r in rows]

    def queue_forward(
        self, instance: InstanceRecord, destination: str, rule_version: int, at: datetime
    ) -> bool:
        """Record that this content goes to destination; False if it already was."""
        f = t.forwards
        exists = self._c.execute(
            sa.select(f.c.pk).where(
                f.c.sop_instance_uid == instance.sop_instance_uid,
                f.c.destination == destination,
                f.c.blob_key == instance.blob_key,
            )
        ).first()
        if exists:
            return False
        self._c.execute(
            sa.insert(f).values(
                sop_instance_uid=instance.sop_instance_uid,
                study_instance_uid=instance.study_instance_uid,
                destination=destination,
                blob_key=instance.blob_key,
                rule_version=rule_version,
                state=ForwardState.QUEUED.value,
                queued_at=at.astimezone(UTC),
            )
        )
        return True

    def settle_forward(
        self, sop_uid: Uid, destination: str, state: ForwardState, at: datetime, error: str = ""
    ) -> None:
        """Record how sending one instance to a destination ended."""
        f = t.forwards
        values: dict[str, Any] = {"state": state.value, "last_error": error}
        if state is ForwardState.SENT:
            values["sent_at"] = at.astimezone(UTC)
        self._c.execute(
            sa.update(f)
            .where(f.c.sop_instance_uid == sop_uid, f.c.destination == destination)
            .values(**values)
        )

    def forwards(self, study_uid: Uid) -> Sequence[ForwardRecord]:
        """What was forwarded where for a study."""
        f = t.forwards
        rows = self._c.execute(
            sa.select(f).where(f.c.study_instance_uid == study_uid).order_by(f.c.pk)
        )
        return [_forward(r) for r in rows]

    def pending_forwards(self, destination: str, limit: int) -> Sequence[ForwardRecord]:
        """Forwards still queued for a destination, oldest first."""
        f = t.forwards
        rows = self._c.execute(
            sa.select(f)
            .where(f.c.destination == destination, f.c.state == ForwardState.QUEUED.value)
            .order_by(f.c.pk)
            .limit(limit)
        )
        return [_forward(r) for r in rows]

    def sent_to(self, sop_uid: Uid) -> Sequence[str]:
        """The destinations the instance was sent to."""
        f = t.forwards
        rows = self._c.execute(
            sa.select(f.c.destination)
            .where(f.c.sop_instance_uid == sop_uid, f.c.state == ForwardState.SENT.value)
            .order_by(f.c.pk)
        )
        return [r.destination for r in rows]

    def raise_alert(self, kind: str, subject: str, peer: str, detail: str, at: datetime) -> None:
        """Record an alert, or count one more occurrence of the same kind/subject/peer."""
        a = t.alerts
        at = at.astimezone(UTC)
        upsert(
            self._c,
            a,
            {"kind": kind, "subject": subject, "peer": peer},
            {"count": a.c.count + 1, "last_at": at, "detail": detail},
            {"detail": detail, "first_at": at, "last_at": at},
        )

    def alerts(self, limit: int = 100) -> Sequence[Alert]:
        """Alerts, most recent first."""
        a = t.alerts
        rows = self._c.execute(
            sa.select(a).order_by(a.c.last_at.desc(), a.c.pk.desc()).limit(limit)
        )
        return [
            Alert(
                kind=r.kind,
                subject=r.subject,
                peer=r.peer,
                detail=r.detail,
                first_at=aware(r.first_at),
                last_at=aware(r.last_at),
                count=r._mapping["count"],  # Row.count is tuple.count
            )
            for r in rows
        ]


__all__ = ["SqlRoutingStore"]
