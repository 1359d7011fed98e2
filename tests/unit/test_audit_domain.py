"""Audit events: canonical form, chain hashes, and detection of any tampering."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pacsflow.domain import audit as a
from pacsflow.domain import audit_events
from pacsflow.domain.audit import (
    Action,
    ActiveParticipant,
    AuditEvent,
    AuditSource,
    EventId,
    ObjectKind,
    Outcome,
)
from pacsflow.domain.audit_chain import (
    GENESIS_HASH,
    AuditRecord,
    ChainHead,
    canonical,
    chain_hash,
    from_canonical,
    index_of,
    verify_chain,
)
from pacsflow.domain.patients import Issuer, PatientId, PatientIdentifier

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
SOURCE = AuditSource("PACSFLOW", enterprise_site="GENHOSP")
ALICE = ActiveParticipant("alice", user_name="Alice Auditor", network_access_point="10.0.0.7")
CT01 = ActiveParticipant("CT01", network_access_point="ct01.example.org")
NODE = ActiveParticipant("PACSFLOW", alternative_user_id="4242", network_access_point="pacs1")
P1 = PatientIdentifier(PatientId("P001"), Issuer("HOSP"))
P2 = PatientIdentifier(PatientId("P002"), Issuer("HOSP"))


def sample_event(**changes: object) -> AuditEvent:
    event = audit_events.order_record(
        SOURCE,
        ALICE,
        T0,
        action=Action.CREATE,
        patient=P1,
        accession_number="ACC1",
        study_uid="1.2.3",
    )
    return replace(event, **changes)  # type: ignore[arg-type]


def chain(events: list[AuditEvent]) -> list[AuditRecord]:
    records = []
    previous = GENESIS_HASH
    for number, event in enumerate(events, start=1):
        body = canonical(event)
        digest = chain_hash(previous, body)
        records.append(AuditRecord(number, T0, body, previous, digest, index_of(event)))
        previous = digest
    return records


def head_of(records: list[AuditRecord]) -> ChainHead:
    return ChainHead(records[-1].id, records[-1].hash) if records else ChainHead()


# --- canonical form -------------------------------------------------------------------------


def test_canonical_form_is_pinned() -> None:
    """Old records are verified with this exact form: changing it needs a new version."""
    assert canonical(sample_event()) == (
        b'{"action":"C","event_id":"110109","event_type":null,"objects":['
        b'{"accession_numbers":[],"id":"P001","issuer":"HOSP","kind":"patient","name":"",'
        b'"query":""},{"accession_numbers":["ACC1"],"id":"1.2.3","issuer":"","kind":"study",'
        b'"name":"","query":""}],"outcome":0,"outcome_description":"","participants":['
        b'{"alternative_user_id":"","is_requestor":true,"network_access_point":"10.0.0.7",'
        b'"role":{"code":"110153","meaning":"Source Role ID","system":"DCM"},'
        b'"user_id":"alice","user_name":"Alice Auditor"}],'
        b'"source":{"enterprise_site":"GENHOSP","id":"PACSFLOW"},'
        b'"time":"2026-11-28T08:00:00.000000+00:00","v":1}'
    )


def test_canonical_form_is_the_same_for_the_same_instant_in_any_zone() -> None:
    paris = timezone(timedelta(hours=1))
    assert canonical(sample_event(time=T0.astimezone(paris))) == canonical(sample_event())


def test_canonical_form_reads_back_to_the_same_event() -> None:
    event = audit_events.query(
        SOURCE,
        CT01,
        T0,
        query_text="PatientID=P001&ModalitiesInStudy=CT\x00é",
        responder=NODE,
        patients=[P1],
    )
    assert from_canonical(canonical(event)) == event


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[]", b'{"v": 2}', b'{"v": 1}', '{"v":1}'.encode("utf-16"), b"\xff"],
)
def test_anything_else_is_not_a_canonical_event(data: bytes) -> None:
    with pytest.raises(ValueError, match="canonical"):
        from_canonical(data)


def test_an_event_time_must_carry_its_zone() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sample_event(time=datetime(2026, 11, 28, 8, 0))


def test_an_event_names_someone() -> None:
    with pytest.raises(ValueError, match="participant"):
        sample_event(participants=())


def test_chain_hash_is_sha256_of_the_previous_hash_and_the_record() -> None:
    body = canonical(sample_event())
    expected = hashlib.sha256(GENESIS_HASH.encode() + b"\n" + body).hexdigest()
    assert chain_hash(GENESIS_HASH, body) == expected
    assert chain_hash("1" * 64, body) != expected


# --- the helpers say who did what to whom ------------------------------------------------------


def test_index_names_the_requestor_and_every_patient_once() -> None:
    event = audit_events.patient_record(
        SOURCE, ALICE, T0, action=Action.UPDATE, patients=[P2, P1, P2], description="A40 merge"
    )
    index = index_of(event)
    assert index.user_id == "alice"
    assert index.patients == (P1, P2)
    assert (index.event_id, index.action, index.outcome) == ("110110", "U", 0)


def test_transfer_names_source_destination_and_the_party_that_asked() -> None:
    event = audit_events.instances_transferred(
        SOURCE,
        NODE,
        ActiveParticipant("DEST", network_access_point="127.0.0.1"),
        T0,
        action=Action.READ,
        requestor=CT01,
        patients=[P1],
        studies=[audit_events.study_object("1.2.3", ["ACC1", ""])],
    )
    roles = [(p.user_id, p.role, p.is_requestor) for p in event.participants]
    assert roles == [
        ("CT01", a.Roles.APPLICATION_LAUNCHER, True),
        ("PACSFLOW", a.Roles.SOURCE, False),
        ("DEST", a.Roles.DESTINATION, False),
    ]
    assert event.requestor.user_id == "CT01"
    assert event.objects[1].accession_numbers == ("ACC1",)


def test_a_store_from_a_modality_is_requested_by_the_sender() -> None:
    sender = replace(CT01, is_requestor=True)
    event = audit_events.instances_transferred(
        SOURCE, sender, NODE, T0, studies=[audit_events.study_object("1.2")]
    )
    assert event.requestor.user_id == "CT01"
    assert event.action is Action.CREATE


@pytest.mark.parametrize(
    ("event", "event_id", "action", "event_type"),
    [
        (
            audit_events.application_activity(SOURCE, NODE, T0),
            EventId.APPLICATION_ACTIVITY,
            Action.EXECUTE,
            a.EventTypes.APPLICATION_START,
        ),
        (
            audit_events.application_activity(SOURCE, NODE, T0, is_start=False),
            EventId.APPLICATION_ACTIVITY,
            Action.EXECUTE,
            a.EventTypes.APPLICATION_STOP,
        ),
        (audit_events.audit_log_used(SOURCE, ALICE, T0), EventId.AUDIT_LOG_USED, Action.READ, None),
        (
            audit_events.instances_accessed(SOURCE, ALICE, T0, patients=[P1]),
            EventId.INSTANCES_ACCESSED,
            Action.READ,
            None,
        ),
        (
            audit_events.export(SOURCE, ALICE, T0, destination=CT01),
            EventId.EXPORT,
            Action.READ,
            None,
        ),
        (
            audit_events.data_import(SOURCE, ALICE, T0, origin=CT01),
            EventId.IMPORT,
            Action.CREATE,
            None,
        ),
        (audit_events.query(SOURCE, CT01, T0, query_text="x"), EventId.QUERY, Action.EXECUTE, None),
        (
            audit_events.security_alert(
                SOURCE, ALICE, T0, alert=a.EventTypes.SOFTWARE_CONFIGURATION, resource="rules/v3"
            ),
            EventId.SECURITY_ALERT,
            Action.EXECUTE,
            a.EventTypes.SOFTWARE_CONFIGURATION,
        ),
        (
            audit_events.user_authentication(SOURCE, ALICE, T0, outcome=Outcome.MINOR_FAILURE),
            EventId.USER_AUTHENTICATION,
            Action.EXECUTE,
            a.EventTypes.LOGIN,
        ),
        (
            audit_events.user_authentication(SOURCE, ALICE, T0, is_login=False),
            EventId.USER_AUTHENTICATION,
            Action.EXECUTE,
            a.EventTypes.LOGOUT,
        ),
    ],
)
def test_helpers_use_the_dicom_vocabulary(
    event: AuditEvent, event_id: EventId, action: Action, event_type: a.Code | None
) -> None:
    assert (event.event_id, event.action, event.event_type) == (event_id, action, event_type)
    assert event.requestor.is_requestor or len(event.participants) == 1
    assert from_canonical(canonical(event)) == event


def test_event_ids_carry_their_dcm_meaning() -> None:
    assert EventId.QUERY.coded == a.Code("110112", "DCM", "Query")
    assert {e.value for e in EventId} >= {"110100", "110114"}
    assert all(e.meaning for e in EventId)


def test_audit_log_used_names_the_log_as_a_security_resource() -> None:
    (log_object,) = audit_events.audit_log_used(SOURCE, ALICE, T0).objects
    assert (log_object.kind, log_object.name) == (ObjectKind.RESOURCE, "Security Audit Log")


# --- verification ---------------------------------------------------------------------------


def events(n: int) -> list[AuditEvent]:
    return [
        audit_events.query(
            SOURCE, ALICE, T0 + timedelta(seconds=i), query_text=f"q{i}", patients=[P1]
        )
        for i in range(n)
    ]


def test_an_intact_chain_has_no_break() -> None:
    records = chain(events(5))
    assert verify_chain(records, head_of(records)) == []
    assert verify_chain([], ChainHead()) == []
    assert verify_chain(records) == []


def test_an_altered_record_is_the_break() -> None:
    records = chain(events(5))
    altered = records[2].canonical.replace(b"q2", b"q9")
    records[2] = replace(records[2], canonical=altered)
    (found,) = verify_chain(records, head_of(records))
    assert (found.position, found.record_id) == (2, 3)
    assert "altered" in found.reason


def test_an_altered_record_with_a_recomputed_hash_breaks_the_next_link() -> None:
    records = chain(events(5))
    body = records[2].canonical.replace(b"q2", b"q9")
    records[2] = replace(records[2], canonical=body, hash=chain_hash(records[2].prev_hash, body))
    (found,) = verify_chain(records)
    assert found.record_id == 4
    assert "link" in found.reason


def test_changed_index_columns_are_a_break() -> None:
    records = chain(events(3))
    records[1] = replace(records[1], index=replace(records[1].index, user_id="mallory"))
    (found,) = verify_chain(records)
    assert found.record_id == 2
    assert "index" in found.reason


def test_a_forged_record_that_hashes_right_but_is_not_an_event_is_a_break() -> None:
    records = chain(events(1))
    for body in (b"garbage", canonical(events(1)[0]).replace(b":", b": ", 1)):
        forged = AuditRecord(
            2, T0, body, records[0].hash, chain_hash(records[0].hash, body), records[0].index
        )
        (found,) = verify_chain([*records, forged])
        assert found.record_id == 2
        assert "canonical" in found.reason


def test_removed_newest_records_show_against_the_head() -> None:
    records = chain(events(4))
    head = head_of(records)
    (found,) = verify_chain(records[:2], head)
    assert "removed" in found.reason
    assert verify_chain(records[:2]) == []  # without an anchor the tail cannot be missed


def test_a_head_that_disagrees_with_the_chain_is_a_break() -> None:
    records = chain(events(3))
    assert verify_chain(records, ChainHead(3, "f" * 64))[0].reason.startswith("the last")
    assert "past the head" in verify_chain(records, ChainHead(2, records[1].hash))[0].reason


@st.composite
def chains(draw: st.DrawFn) -> list[AuditRecord]:
    texts = draw(st.lists(st.text(max_size=20), min_size=1, max_size=8))
    users = st.sampled_from(["alice", "bob", "CT01"])
    return chain(
        [
            audit_events.query(
                SOURCE,
                ActiveParticipant(draw(users)),
                T0 + timedelta(minutes=i),
                query_text=text,
                patients=[P1] if i % 2 else [],
            )
            for i, text in enumerate(texts)
        ]
    )


@given(chains(), st.data())
def test_any_single_byte_change_is_detected(
    records: list[AuditRecord], data: st.DataObject
) -> None:
    position = data.draw(st.integers(0, len(records) - 1))
    body = bytearray(records[position].canonical)
    offset = data.draw(st.integers(0, len(body) - 1))
    body[offset] = data.draw(st.integers(0, 255).filter(lambda b: b != body[offset]))
    records[position] = replace(records[position], canonical=bytes(body))
    breaks = verify_chain(records, head_of(records))
    assert breaks
    assert breaks[0].record_id == records[position].id


@given(chains(), st.data())
def test_any_removed_record_is_detected(records: list[AuditRecord], data: st.DataObject) -> None:
    head = head_of(records)
    position = data.draw(st.integers(0, len(records) - 1))
    del records[position]
    assert verify_chain(records, head)


@given(chains().filter(lambda r: len(r) > 1), st.data())
def test_any_reordering_is_detected(records: list[AuditRecord], data: st.DataObject) -> None:
    head = head_of(records)
    order = data.draw(st.permutations(range(len(records))).filter(lambda p: p != sorted(p)))
    assert verify_chain([records[i] for i in order], head)


@given(chains().filter(lambda r: len(r) > 1))
def test_renumbering_after_a_removal_is_still_detected(records: list[AuditRecord]) -> None:
    survivors = [replace(r, id=i) for i, r in enumerate(records[1:], start=1)]
    assert verify_chain(survivors, head_of(survivors))


def test_canonical_json_is_plain_json() -> None:
    assert json.loads(canonical(sample_event()))["event_id"] == "110109"
