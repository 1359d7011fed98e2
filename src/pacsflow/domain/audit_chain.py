"""The audit chain: each event's canonical form, hashed with the hash of the record before it.

Altering, removing or reordering a stored record breaks the chain from that record on;
`verify_chain` finds where (DICOM PS3.15 A.5 events, stdlib only).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from pacsflow.domain.audit import (
    Action,
    ActiveParticipant,
    AuditEvent,
    AuditSource,
    Code,
    EventId,
    ObjectKind,
    Outcome,
    ParticipantObject,
)
from pacsflow.domain.errors import ConflictingState
from pacsflow.domain.patients import PatientIdentifier

#: The hash the first record of the chain links to.
GENESIS_HASH: Final = "0" * 64

#: Version of the canonical form; a new form gets a new number, old records keep theirs.
CANONICAL_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class AuditIndex:
    """The searchable columns a store keeps beside the canonical form (who, whom, when)."""

    event_id: str
    action: str
    outcome: int
    event_time: datetime
    user_id: str
    patients: tuple[PatientIdentifier, ...] = ()


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A stored event: its place in the chain, its canonical form and its hashes."""

    id: int
    recorded_at: datetime
    canonical: bytes
    prev_hash: str
    hash: str
    index: AuditIndex

    def event(self) -> AuditEvent:
        """The event, read back from the canonical form."""
        return from_canonical(self.canonical)


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last record of the chain as the store last saw it appended."""

    last_id: int = 0
    last_hash: str = GENESIS_HASH


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """A record where the chain does not hold, and why."""

    position: int
    record_id: int
    reason: str


class AuditChainBroken(ConflictingState):
    """The audit chain's head is missing or does not advance by one; nothing can be appended."""


# --- canonical form and hashes -----------------------------------------------------------


def _code(code: Code | None) -> dict[str, str] | None:
    return (
        None
        if code is None
        else {"code": code.code, "system": code.system, "meaning": code.meaning}
    )


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def to_dict(event: AuditEvent) -> dict[str, Any]:
    """The event as plain JSON-ready values, every field present."""
    return {
        "v": CANONICAL_VERSION,
        "event_id": event.event_id.value,
        "action": event.action.value,
        "outcome": int(event.outcome),
        "time": _utc(event.time),
        "event_type": _code(event.event_type),
        "outcome_description": event.outcome_description,
        "participants": [
            {
                "user_id": p.user_id,
                "alternative_user_id": p.alternative_user_id,
                "user_name": p.user_name,
                "is_requestor": p.is_requestor,
                "network_access_point": p.network_access_point,
                "role": _code(p.role),
            }
            for p in event.participants
        ],
        "source": {"id": event.source.id, "enterprise_site": event.source.enterprise_site},
        "objects": [
            {
                "kind": o.kind.value,
                "id": o.id,
                "issuer": o.issuer,
                "name": o.name,
                "accession_numbers": list(o.accession_numbers),
                "query": o.query,
            }
            for o in event.objects
        ],
    }


def canonical(event: AuditEvent) -> bytes:
    """The stable serialization the chain hashes: sorted-key, compact, UTF-8 JSON."""
    text = json.dumps(to_dict(event), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def _read_code(value: Any) -> Code | None:
    if value is None:
        return None
    return Code(str(value["code"]), str(value["system"]), str(value["meaning"]))


def from_canonical(data: bytes) -> AuditEvent:
    """The event a canonical form describes; ValueError when it is not one."""
    try:
        raw = json.loads(data.decode("utf-8"))
        if raw["v"] != CANONICAL_VERSION:
            raise ValueError(f"unknown canonical version {raw['v']!r}")
        return AuditEvent(
            event_id=EventId(raw["event_id"]),
            action=Action(raw["action"]),
            outcome=Outcome(raw["outcome"]),
            time=datetime.fromisoformat(raw["time"]),
            participants=tuple(
                ActiveParticipant(
                    user_id=str(p["user_id"]),
                    alternative_user_id=str(p["alternative_user_id"]),
                    user_name=str(p["user_name"]),
                    is_requestor=bool(p["is_requestor"]),
                    network_access_point=str(p["network_access_point"]),
                    role=_read_code(p["role"]),
                )
                for p in raw["participants"]
            ),
            source=AuditSource(str(raw["source"]["id"]), str(raw["source"]["enterprise_site"])),
            objects=tuple(
                ParticipantObject(
                    kind=ObjectKind(o["kind"]),
                    id=str(o["id"]),
                    issuer=str(o["issuer"]),
                    name=str(o["name"]),
                    accession_numbers=tuple(str(a) for a in o["accession_numbers"]),
                    query=str(o["query"]),
                )
                for o in raw["objects"]
            ),
            event_type=_read_code(raw["event_type"]),
            outcome_description=str(raw["outcome_description"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a canonical audit event: {exc!r}") from exc


def index_of(event: AuditEvent) -> AuditIndex:
    """The searchable columns of an event."""
    return AuditIndex(
        event_id=event.event_id.value,
        action=event.action.value,
        outcome=int(event.outcome),
        event_time=event.time,
        user_id=event.requestor.user_id,
        patients=event.patients,
    )


def chain_hash(previous_hash: str, canonical: bytes) -> str:
    """sha256 (hex) of the previous record's hash, a newline and this record's canonical form."""
    return hashlib.sha256(previous_hash.encode("ascii") + b"\n" + canonical).hexdigest()


# --- verification ------------------------------------------------------------------------


@dataclass(slots=True)
class ChainVerifier:
    """Checks records one at a time in chain order, so a long log is never held in memory.

    Each record must carry the next id, link to the hash stored in the record before it,
    hash to its stored hash, and have index columns that agree with its canonical form.
    The next record is checked against the *stored* hash of the one before, so one altered
    record is one break; a record altered with its hash recomputed breaks the next link.
    """

    previous_hash: str = GENESIS_HASH
    previous_id: int = 0
    position: int = 0
    breaks: list[ChainBreak] = field(default_factory=list)

    def feed(self, record: AuditRecord) -> ChainBreak | None:
        """Check the next record; the break it shows, if any."""
        reason = self._problem(record)
        found = None
        if reason:
            found = ChainBreak(self.position, record.id, reason)
            self.breaks.append(found)
        self.previous_hash = record.hash
        self.previous_id = record.id
        self.position += 1
        return found

    def _problem(self, record: AuditRecord) -> str:
        if record.id != self.previous_id + 1:
            return (
                f"record {record.id} follows record {self.previous_id}: "
                "records were removed or reordered"
            )
        if record.prev_hash != self.previous_hash:
            return "does not link to the record before it: that record was altered or removed"
        if record.hash != chain_hash(record.prev_hash, record.canonical):
            return "hash mismatch: the record's content was altered"
        try:
            event = from_canonical(record.canonical)
        except ValueError:
            return "canonical form unreadable although its hash matches"
        if canonical(event) != record.canonical:
            return "canonical form is not canonical although its hash matches"
        if record.index != index_of(event):
            return "index columns (time, user, patients) disagree with the recorded event"
        return ""

    def finish(self, head: ChainHead | None) -> ChainBreak | None:
        """Compare the end of the chain with the head the store keeps; the break, if any."""
        if head is None:
            return None
        reason = ""
        if self.previous_id < head.last_id:
            reason = (
                f"chain ends at record {self.previous_id} but the head says {head.last_id}: "
                "the newest records were removed"
            )
        elif self.previous_id > head.last_id:
            reason = (
                f"chain runs to record {self.previous_id} past the head's {head.last_id}: "
                "records were added without advancing the head"
            )
        elif self.previous_hash != head.last_hash:
            reason = "the last record's hash differs from the head's"
        if not reason:
            return None
        found = ChainBreak(self.position, self.previous_id, reason)
        self.breaks.append(found)
        return found


def verify_chain(records: Iterable[AuditRecord], head: ChainHead | None = None) -> list[ChainBreak]:
    """Every break in a chain read from its start; empty when it holds."""
    verifier = ChainVerifier()
    for record in records:
        verifier.feed(record)
    verifier.finish(head)
    return verifier.breaks


__all__ = [
    "CANONICAL_VERSION",
    "GENESIS_HASH",
    "AuditChainBroken",
    "AuditIndex",
    "AuditRecord",
    "ChainBreak",
    "ChainHead",
    "ChainVerifier",
    "canonical",
    "chain_hash",
    "from_canonical",
    "index_of",
    "to_dict",
    "verify_chain",
]
