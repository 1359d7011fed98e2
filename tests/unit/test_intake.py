"""Order and identity intake: journaling, order lifecycle, worklist."""

from __future__ import annotations

from dataclasses import replace
from typing import get_args

import pytest

from pacsflow.domain import commands as cmd
from pacsflow.domain.errors import DuplicateAccession, UnknownOrder
from pacsflow.domain.messages import MessageStatus
from pacsflow.domain.orders import AccessionNumber, OrderStatus, StationRule
from pacsflow.domain.patients import Demographics, PersonName
from pacsflow.domain.procedure_steps import PerformedStep
from pacsflow.domain.uids import Uid
from pacsflow.workflow.intake import Intake
from pacsflow.workflow.intake_commands import HANDLERS
from pacsflow.workflow.procedure_steps import ProcedureSteps
from pacsflow.workflow.queries import Queries
from tests import factories as f
from tests.fakes import FixedClock, InMemoryBlobStore, memory_uow
from tests.receiving import receive


@pytest.fixture
def uow():
    return memory_uow()


@pytest.fixture
def intake(uow):
    return Intake(uow, FixedClock(), (StationRule("CT_DEFAULT", modality="CT"),))


@pytest.fixture
def queries(uow):
    return Queries(uow, InMemoryBlobStore())


def _apply(intake, *commands, control_id=None):
    return receive(
        intake,
        *commands,
        control_id=control_id,
        peer="ris",
        sending_application="RIS",
        answer=b"ACK",
    ).outcome


def test_new_order_is_on_the_worklist_with_its_patient(intake, queries):
    p = f.patient()
    o = f.order(p)
    _apply(intake, cmd.PlaceOrder(o, p))
    [item] = queries.worklist()
    assert item.order.accession_number == o.accession_number
    assert item.order.study_instance_uid == o.study_instance_uid
    assert item.patient == p


def test_station_mapping_fills_a_missing_station(intake, queries):
    p = f.patient()
    _apply(intake, cmd.PlaceOrder(f.order(p, scheduled_station_ae=""), p))
    assert queries.worklist()[0].order.scheduled_station_ae == "CT_DEFAULT"


def test_cancelled_and_completed_orders_leave_the_worklist(intake, queries):
    p = f.patient()
    a, b, c = f.order(p), f.order(p), f.order(p)
    _apply(intake, cmd.PlaceOrder(a, p), cmd.PlaceOrder(b, p), cmd.PlaceOrder(c, p))
    _apply(intake, cmd.CancelOrder(a.accession_number))
    _apply(intake, cmd.ChangeOrderStatus(b.accession_number, OrderStatus.COMPLETED))
    assert [i.order.accession_number for i in queries.worklist()] == [c.accession_number]


def test_change_keeps_the_study_uid_and_status(intake, queries):
    p = f.patient()
    o = f.order(p)
    _apply(intake, cmd.PlaceOrder(o, p))
    changed = replace(o, study_instance_uid=Uid("1.2.3"), requested_procedure_description="CT HEAD")
    _apply(intake, cmd.ChangeOrder(changed, p))
    [item] = queries.worklist()
    assert item.order.requested_procedure_description == "CT HEAD"
    assert item.order.study_instance_uid == o.study_instance_uid


def test_repeated_new_order_keeps_the_first_study_uid(intake, queries):
    p = f.patient()
    o = f.order(p)
    _apply(intake, cmd.PlaceOrder(o, p))
    _apply(intake, cmd.PlaceOrder(replace(o, study_instance_uid=Uid("1.2.3")), p))
    assert queries.worklist()[0].order.study_instance_uid == o.study_instance_uid


def test_accession_of_another_patient_is_refused_and_nothing_changes(intake, queries):
    p, q = f.patient(), f.patient()
    o = f.order(p)
    _apply(intake, cmd.PlaceOrder(o, p))
    with pytest.raises(DuplicateAccession):
        _apply(intake, cmd.PlaceOrder(replace(o, patient=q.primary), q))
    assert queries.patient(q.primary) is None


def test_cancel_of_unknown_order_is_refused(intake):
    with pytest.raises(UnknownOrder):
        _apply(intake, cmd.CancelOrder(AccessionNumber(f.unique("ACC"))))


def test_update_changes_demographics(intake, queries):
    p = f.patient()
    _apply(intake, cmd.RegisterPatient(p))
    updated = replace(p, demographics=Demographics(PersonName("Dvořák", "Antonín"), None, "M"))
    _apply(intake, cmd.UpdatePatient(updated))
    assert queries.patient(p.primary).demographics.name.family == "Dvořák"


def test_patient_is_found_by_any_of_its_identifiers(intake, queries):
    other = f.identifier(issuer="NATIONAL")
    p = f.patient(more=(other,))
    _apply(intake, cmd.RegisterPatient(p))
    assert queries.patient(other) == p


def test_journal_finds_the_answered_duplicate(intake, uow):
    first = _apply(intake, cmd.RegisterPatient(f.patient()), control_id="X1")
    receipt = receive(
        intake,
        cmd.RegisterPatient(f.patient()),
        control_id="X1",
        peer="ris",
        sending_application="RIS",
        answer=b"NOT SENT",
    )
    assert receipt.answer == b"ACK"
    again = receipt.outcome
    assert again.status is MessageStatus.DUPLICATE
    assert again.earlier is not None
    assert again.earlier.id == first.entry_id
    assert again.earlier.ack == b"ACK"
    assert again.earlier.status is MessageStatus.APPLIED


def test_mpps_moves_the_order_through_its_statuses(intake, uow, queries):
    p = f.patient()
    o = f.order(p)
    _apply(intake, cmd.PlaceOrder(o, p))
    steps = ProcedureSteps(uow, FixedClock())
    uid = Uid("1.2.826.0.1.1")
    steps.start(PerformedStep(uid, "IN PROGRESS", accession_number=o.accession_number))
    assert queries.orders()[0].status is OrderStatus.IN_PROGRESS
    assert len(queries.worklist()) == 1
    steps.update(uid, "COMPLETED")
    assert queries.orders()[0].status is OrderStatus.COMPLETED
    assert queries.worklist() == []


def test_mpps_discontinued_discontinues_the_order(intake, uow, queries):
    p = f.patient()
    o = f.order(p)
    _apply(intake, cmd.PlaceOrder(o, p))
    steps = ProcedureSteps(uow, FixedClock())
    uid = Uid("1.2.826.0.1.2")
    steps.start(PerformedStep(uid, "IN PROGRESS", study_instance_uid=o.study_instance_uid))
    steps.update(uid, "DISCONTINUED")
    assert queries.orders()[0].status is OrderStatus.DISCONTINUED


def test_mpps_update_of_unknown_step_is_refused(uow):
    from pacsflow.domain.errors import UnknownProcedureStep

    with pytest.raises(UnknownProcedureStep):
        ProcedureSteps(uow, FixedClock()).update(Uid("1.2.3"), "COMPLETED")


@pytest.mark.parametrize("finish", ["COMPLETED", "DISCONTINUED"])
@pytest.mark.parametrize("again", ["DISCONTINUED", "COMPLETED", "IN PROGRESS", ""])
def test_finished_mpps_refuses_every_update(intake, uow, finish, again):
    """PS3.4 F.7.2.2.2: no N-SET after COMPLETED/DISCONTINUED, not even one without a status."""
    from pacsflow.domain.errors import ProcedureStepFinished

    steps = ProcedureSteps(uow, FixedClock())
    uid = Uid("1.2.826.0.1.3")
    steps.start(PerformedStep(uid, "IN PROGRESS"))
    steps.update(uid, finish)
    with pytest.raises(ProcedureStepFinished):
        steps.update(uid, again)


def test_a_resent_mpps_create_is_refused_and_does_not_reopen_the_order(intake, uow, queries):
    from pacsflow.domain.errors import DuplicateProcedureStep, ProcedureStepFinished

    p = f.patient()
    o = f.order(p)
    _apply(intake, cmd.PlaceOrder(o, p))
    steps = ProcedureSteps(uow, FixedClock())
    uid = Uid("1.2.826.0.1.4")
    created = PerformedStep(uid, "IN PROGRESS", accession_number=o.accession_number)
    steps.start(created)
    steps.update(uid, "COMPLETED")
    with pytest.raises(DuplicateProcedureStep):
        steps.start(created)
    assert queries.orders()[0].status is OrderStatus.COMPLETED
    assert queries.worklist() == []
    with pytest.raises(ProcedureStepFinished):  # the step itself stayed COMPLETED
        steps.update(uid, "COMPLETED")


def test_worklist_filter_narrows_in_the_store(intake, queries):
    from datetime import UTC, datetime

    from pacsflow.domain.orders import WorklistFilter

    p = f.patient()
    a = f.order(p, scheduled_station_ae="AA32\\AA33", modality="MR")
    b = f.order(
        p, scheduled_station_ae="CT01", scheduled_start=datetime(2026, 12, 5, 8, tzinfo=UTC)
    )
    _apply(intake, cmd.PlaceOrder(a, p), cmd.PlaceOrder(b, p))

    def accessions(**kw):
        return {i.order.accession_number for i in queries.worklist(WorklistFilter(**kw))}

    assert accessions() == {a.accession_number, b.accession_number}
    assert accessions(station_ae="AA33") == {a.accession_number}
    assert accessions(station_ae="AA3") == set()
    assert accessions(modality="MR") == {a.accession_number}
    assert accessions(start_from=datetime(2026, 12, 1, tzinfo=UTC)) == {b.accession_number}
    assert accessions(start_to=datetime(2026, 11, 30, tzinfo=UTC)) == {a.accession_number}
    assert accessions(accession_number=b.accession_number, patient_id=p.primary.value) == {
        b.accession_number
    }


def test_every_command_has_exactly_one_handler_in_the_dispatch_table():
    assert set(HANDLERS) == set(get_args(cmd.Command))
