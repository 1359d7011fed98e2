"""ADT A24/A37 link and unlink, A47 identifier change: translation and their effect on the index."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from pacsflow.adapters.db.audit import audit_records
from pacsflow.adapters.db.tables import exceptions, patient_links, patient_merges, patients
from pacsflow.adapters.hl7.codec import parse
from pacsflow.adapters.hl7.errors import SegmentSequenceError
from pacsflow.adapters.hl7.translate import translate
from pacsflow.domain import commands as cmd
from pacsflow.domain.errors import IdentifierInUse, MissingIdentifier
from pacsflow.domain.patients import Issuer, Patient, PatientId, PatientIdentifier
from pacsflow.domain.studies import StudyFilter
from tests import factories as f
from tests.unit.test_late_matching import World

SAMPLES = Path(__file__).parents[1] / "samples" / "hl7"


def _id(value: str, issuer: str) -> PatientIdentifier:
    return PatientIdentifier(PatientId(value), Issuer(issuer))


def _translate(raw: bytes) -> list[cmd.Command]:
    return translate(parse(raw))


def _sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


# --- translation -----------------------------------------------------------------------------


def test_a24_links_the_second_pid_to_the_first() -> None:
    [command] = _translate(_sample("adt_a24_v25.hl7"))
    assert isinstance(command, cmd.LinkPatients)
    assert command.patient.primary == _id("MRN100", "HOSP")
    assert command.linked.primary == _id("EXT200", "CLINIC")
    assert command.linked.demographics.name.middle == "M"


def test_a37_names_the_two_patients_to_unlink() -> None:
    [command] = _translate(_sample("adt_a37_v25.hl7"))
    assert command == cmd.UnlinkPatients(_id("MRN100", "HOSP"), _id("EXT200", "CLINIC"))


def test_a47_replaces_the_mrg_identifier_by_the_pid_identifier_of_its_issuer() -> None:
    [command] = _translate(_sample("adt_a47_v25.hl7"))
    assert isinstance(command, cmd.ChangePatientIdentifier)
    assert command.incorrect == _id("MRN10I", "HOSP")
    assert command.correct == _id("MRN101", "HOSP")  # not the first PID-3 (another issuer)
    assert command.patient.demographics.name.family == "CHANGE"


def test_a47_without_an_identifier_of_the_same_issuer_takes_the_first() -> None:
    raw = (
        b"MSH|^~\\&|PAS|HOSP|PACSFLOW|RAD|20261130||ADT^A47^ADT_A30|C2|P|2.5\r"
        b"PID|||NEW1^^^HOSP||X^Y\rMRG|OLD1\r"
    )
    [command] = _translate(raw)
    assert isinstance(command, cmd.ChangePatientIdentifier)
    assert (command.incorrect, command.correct) == (_id("OLD1", ""), _id("NEW1", "HOSP"))


def test_a47_whose_pid_also_lists_the_incorrect_identifier_takes_the_other() -> None:
    raw = (
        b"MSH|^~\\&|PAS|HOSP|PACSFLOW|RAD|20261130||ADT^A47^ADT_A30|C3|P|2.5\r"
        b"PID|||OLD3^^^HOSP~NEW3^^^HOSP||X^Y\rMRG|OLD3^^^HOSP\r"
    )
    [command] = _translate(raw)
    assert isinstance(command, cmd.ChangePatientIdentifier)
    assert (command.incorrect, command.correct) == (_id("OLD3", "HOSP"), _id("NEW3", "HOSP"))
    only_old = raw.replace(b"OLD3^^^HOSP~NEW3^^^HOSP", b"OLD3^^^HOSP")
    with pytest.raises(MissingIdentifier) as caught:
        _translate(only_old)
    assert caught.value.location == "PID-3"


@pytest.mark.parametrize("event", ["A24", "A37"])
def test_link_and_unlink_need_exactly_two_pids(event: str) -> None:
    raw = f"MSH|^~\\&|PAS|HOSP|PF|RAD|20261130||ADT^{event}|L1|P|2.5\rPID|||A1\r".encode()
    with pytest.raises(SegmentSequenceError) as caught:
        _translate(raw)
    assert caught.value.location == "PID"
    assert "two PID" in str(caught.value)


def test_a24_second_pid_without_identifier_is_a_missing_identifier() -> None:
    raw = b"MSH|^~\\&|PAS|HOSP|PF|RAD|20261130||ADT^A24|L2|P|2.5\rPID|||A1\rPID|||\r"
    with pytest.raises(MissingIdentifier) as caught:
        _translate(raw)
    assert caught.value.location == "PID-3"
    assert "second PID" in str(caught.value)


def test_a47_needs_mrg_after_its_pid_and_an_mrg_1() -> None:
    head = b"MSH|^~\\&|PAS|HOSP|PF|RAD|20261130||ADT^A47|C1|P|2.5\r"
    with pytest.raises(MissingIdentifier) as no_mrg:
        _translate(head + b"PID|||N1\r")
    assert no_mrg.value.location == "MRG"
    with pytest.raises(SegmentSequenceError) as early:
        _translate(head + b"MRG|O1\rPID|||N1\r")
    assert early.value.location == "MRG"
    with pytest.raises(MissingIdentifier) as empty:
        _translate(head + b"PID|||N1\rMRG|\r")
    assert empty.value.location == "MRG-1"


# --- A24 / A37 in the index ------------------------------------------------------------------


@pytest.fixture
def w(tmp_path: Path) -> World:
    return World(tmp_path)


def _with_study(w: World, p: Patient, patient_id: str | None = None) -> str:
    """A registered, scheduled and published study of p (images may carry another ID)."""
    o = f.order(p)
    w.apply(cmd.PlaceOrder(o, p))
    rec = f.received(p, accession=o.accession_number, patient_id=patient_id)
    w.store(rec)
    return rec.study_instance_uid


def _found_by(w: World, identifier: PatientIdentifier) -> set[str]:
    return {v.study.study_instance_uid for v in w.queries.studies(StudyFilter(patient=identifier))}


def test_link_finds_the_studies_of_both_by_either_identifier(w: World) -> None:
    a, b = f.patient("LA1"), f.patient("LB1", issuer="CLINIC")
    sa_, sb = _with_study(w, a), _with_study(w, b)
    w.apply(cmd.LinkPatients(a, b))
    assert _found_by(w, a.primary) == _found_by(w, b.primary) == {sa_, sb}
    # Both records stay, each with its own demographics; each names the other's identifier.
    found_a, found_b = w.queries.patient(a.primary), w.queries.patient(b.primary)
    assert found_a is not None
    assert found_b is not None
    assert found_a.identifiers == (a.primary, b.primary)
    assert found_b.identifiers == (b.primary, a.primary)
    assert len(w.rows(patients)) == 2
    # Each study stays its own patient's (nothing moved).
    owners = {v.study.study_instance_uid: v.study.patient for v in w.queries.studies(StudyFilter())}
    assert owners == {sa_: a.primary, sb: b.primary}


def test_unlink_gives_each_patient_back_exactly_its_own_studies(w: World) -> None:
    a, b = f.patient("LA2"), f.patient("LB2")
    sa_, sb = _with_study(w, a), _with_study(w, b)
    w.apply(cmd.LinkPatients(a, b))
    # While linked, images for b's order arrive under a's identifier: b's study by its order.
    during = _with_study(w, b, patient_id=a.primary.value)
    assert _found_by(w, a.primary) == {sa_, sb, during}
    w.apply(cmd.UnlinkPatients(a.primary, b.primary))
    assert _found_by(w, a.primary) == {sa_}
    assert _found_by(w, b.primary) == {sb, during}
    found_a = w.queries.patient(a.primary)
    assert found_a is not None
    assert found_a.identifiers == (a.primary,)
    assert w.rows(patient_links) == []


def test_a_repeated_link_or_unlink_changes_nothing_more(w: World) -> None:
    a, b = f.patient("LA3"), f.patient("LB3")
    w.apply(cmd.LinkPatients(a, b))
    w.apply(cmd.LinkPatients(b, a))
    assert len(w.rows(patient_links)) == 1
    w.apply(cmd.UnlinkPatients(a.primary, b.primary))
    w.apply(cmd.UnlinkPatients(b.primary, a.primary))
    w.apply(cmd.UnlinkPatients(a.primary, f.identifier("NOBODY3")))
    assert w.rows(patient_links) == []
    assert len(w.rows(patients)) == 2  # the A24 registered both; nothing is ever destroyed


def test_links_chain_and_an_unlink_cuts_only_its_own_link(w: World) -> None:
    a, b, c = f.patient("LA4"), f.patient("LB4"), f.patient("LC4")
    sa_, sb, sc = _with_study(w, a), _with_study(w, b), _with_study(w, c)
    w.apply(cmd.LinkPatients(a, b), cmd.LinkPatients(b, c))
    assert _found_by(w, c.primary) == {sa_, sb, sc}
    w.apply(cmd.UnlinkPatients(a.primary, c.primary))  # never linked directly: nothing to undo
    assert _found_by(w, c.primary) == {sa_, sb, sc}
    w.apply(cmd.UnlinkPatients(c.primary, b.primary))
    assert _found_by(w, a.primary) == {sa_, sb}
    assert _found_by(w, c.primary) == {sc}


def test_a_link_publishes_images_held_under_the_other_identifier(w: World) -> None:
    a, b = f.patient("LA5"), f.patient("LB5")
    w.apply(cmd.RegisterPatient(b))
    o = f.order(a)
    w.apply(cmd.PlaceOrder(o, a))
    rec = f.received(a, accession=o.accession_number, patient_id=b.primary.value)
    w.store(rec)
    assert w.published() == []
    w.apply(cmd.LinkPatients(a, b))
    assert w.published() == [rec.study_instance_uid]
    [closed] = w.rows(exceptions)
    assert closed.resolution == "late_match"
    [view] = w.queries.studies(StudyFilter())
    assert view.study.patient == a.primary  # the order's patient owns it
    w.apply(cmd.UnlinkPatients(a.primary, b.primary))
    assert _found_by(w, a.primary) == {rec.study_instance_uid}  # and keeps it after the unlink


def test_merging_a_linked_patient_keeps_the_link_with_the_survivor(w: World) -> None:
    a, b, s = f.patient("LA6"), f.patient("LB6"), f.patient("LS6")
    sa_, sb, ss = _with_study(w, a), _with_study(w, b), _with_study(w, s)
    w.apply(cmd.LinkPatients(a, b))
    w.apply(cmd.MergePatients(s, (b.primary,)))
    assert _found_by(w, a.primary) == _found_by(w, s.primary) == {sa_, sb, ss}
    assert _found_by(w, b.primary) == set()  # merged away
    [link] = w.rows(patient_links)
    assert {link.patient_pk, link.linked_pk} == {r.pk for r in w.rows(patients)}
    # Merging the two linked patients into one leaves no link to itself.
    w.apply(cmd.MergePatients(a, (s.primary,)))
    assert w.rows(patient_links) == []
    assert _found_by(w, a.primary) == {sa_, sb, ss}


# --- A47 in the index ------------------------------------------------------------------------


def test_change_identifier_moves_everything_and_the_old_id_finds_nothing(w: World) -> None:
    old = f.patient("WRONG7")
    study = _with_study(w, old)
    pending = f.order(old)
    w.apply(cmd.PlaceOrder(pending, old))
    new = f.identifier("RIGHT7")
    w.apply(cmd.ChangePatientIdentifier(f.patient("RIGHT7"), old.primary, new))
    assert _found_by(w, new) == {study}
    assert _found_by(w, old.primary) == set()
    [view] = w.queries.studies(StudyFilter())
    assert view.patient is not None
    assert view.patient.primary == new  # coerced on the way out: the correct identifier
    assert {i.order.patient for i in w.queries.worklist()} == {new}
    # The incorrect ID stays an alias: images still carrying it land with the patient.
    late = f.received(old, accession=pending.accession_number)
    w.store(late)
    assert _found_by(w, new) == {study, late.study_instance_uid}
    [history] = w.rows(patient_merges)
    assert (history.merged_id, history.survivor_id, history.kind) == ("WRONG7", "RIGHT7", "change")


def test_a_repeated_change_changes_nothing_more(w: World) -> None:
    old = f.patient("WRONG8")
    w.apply(cmd.RegisterPatient(old))
    change = cmd.ChangePatientIdentifier(f.patient("RIGHT8"), old.primary, f.identifier("RIGHT8"))
    w.apply(change)
    once = w.queries.patient(f.identifier("RIGHT8"))
    w.apply(change)
    assert w.queries.patient(f.identifier("RIGHT8")) == once
    assert len(w.rows(patient_merges)) == 1


def test_the_opposite_change_restores_the_first_identifier(w: World) -> None:
    old = f.patient("WRONG15")
    study = _with_study(w, old)
    right = f.identifier("RIGHT15")
    w.apply(cmd.ChangePatientIdentifier(f.patient("RIGHT15"), old.primary, right))
    w.apply(cmd.ChangePatientIdentifier(old, right, old.primary))  # the first one was a mistake
    assert _found_by(w, old.primary) == {study}
    assert _found_by(w, right) == set()
    found = w.queries.patient(right)
    assert found is not None
    assert found.identifiers == (old.primary, right)  # the primary again, the other an alias


def test_changing_to_another_patients_identifier_is_refused(w: World) -> None:
    a, b = f.patient("WA9"), f.patient("WB9")
    w.apply(cmd.RegisterPatient(a), cmd.RegisterPatient(b))
    with pytest.raises(IdentifierInUse):
        w.apply(cmd.ChangePatientIdentifier(b, a.primary, b.primary))
    found = w.queries.patient(a.primary)
    assert found is not None
    assert found.primary == a.primary


def test_a_change_for_an_unknown_identifier_registers_the_patient_and_keeps_an_alias(
    w: World,
) -> None:
    right = f.patient("RIGHT10")
    w.apply(cmd.ChangePatientIdentifier(right, f.identifier("WRONG10"), right.primary))
    found = w.queries.patient(f.identifier("WRONG10"))
    assert found is not None
    assert found.primary == right.primary


def test_a_change_naming_neither_known_identifier_keeps_the_incorrect_one_an_alias(
    w: World,
) -> None:
    wrong, right = f.identifier("WRONG16"), f.identifier("RIGHT16")
    listed = f.patient("RIGHT16", more=(wrong,))  # a PID-3 that lists the incorrect one too
    w.apply(cmd.ChangePatientIdentifier(listed, wrong, right))
    found = w.queries.patient(wrong)
    assert found is not None
    assert found.identifiers == (right, wrong)
    assert _found_by(w, wrong) == set()  # an alias: finds nothing
    w.apply(cmd.ChangePatientIdentifier(listed, right, right))  # nothing to change
    assert w.queries.patient(right) == found


def test_a_change_publishes_images_that_carried_the_correct_identifier_early(w: World) -> None:
    old = f.patient("WRONG11")
    o = f.order(old)
    w.apply(cmd.PlaceOrder(o, old))
    rec = f.received(old, accession=o.accession_number, patient_id="RIGHT11")
    w.store(rec)
    assert w.published() == []
    w.apply(cmd.ChangePatientIdentifier(f.patient("RIGHT11"), old.primary, f.identifier("RIGHT11")))
    assert w.published() == [rec.study_instance_uid]


def test_a_change_of_a_merged_away_identifier_adds_the_correct_one_to_its_patient(
    w: World,
) -> None:
    gone, s = f.patient("GONE12"), f.patient("SURV12")
    w.apply(cmd.RegisterPatient(gone), cmd.RegisterPatient(s))
    w.apply(cmd.MergePatients(s, (gone.primary,)))
    w.apply(cmd.ChangePatientIdentifier(f.patient("FIX12"), gone.primary, f.identifier("FIX12")))
    found = w.queries.patient(f.identifier("FIX12"))
    assert found is not None
    assert found.primary == s.primary
    assert found.identifiers[:2] == (s.primary, f.identifier("FIX12"))


def test_a_late_registration_of_a_merged_identifier_keeps_it_an_alias(w: World) -> None:
    s = f.patient("SURV13")
    study = _with_study(w, s)
    ghost = f.patient("GHOST13")
    w.apply(cmd.MergePatients(s, (ghost.primary,)))
    w.apply(cmd.RegisterPatient(ghost))  # the A04 of the merged patient arrives after the A40
    assert _found_by(w, ghost.primary) == set()
    assert _found_by(w, s.primary) == {study}
    found = w.queries.patient(ghost.primary)
    assert found is not None
    assert found.primary == s.primary


def test_links_unlinks_and_changes_are_audited(w: World) -> None:
    a, b = f.patient("AUD14"), f.patient("AUDB14")
    w.apply(cmd.LinkPatients(a, b))
    w.apply(cmd.UnlinkPatients(a.primary, b.primary))
    w.apply(cmd.ChangePatientIdentifier(f.patient("AUDC14"), b.primary, f.identifier("AUDC14")))
    with w.uow.engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_records.c.action, audit_records.c.canonical)
            .where(audit_records.c.event_id == "110110")
            .order_by(audit_records.c.id)
        ).all()
    assert [r.action for r in rows] == ["U", "U", "U"]
    for row, what, names in zip(
        rows,
        ("link", "unlink", "identifier change"),
        (("AUD14", "AUDB14"), ("AUD14", "AUDB14"), ("AUDC14", "AUDB14")),
        strict=True,
    ):
        assert what in row.canonical
        assert all(n in row.canonical for n in names)
