"""Report status: forward only, cancellations back to unread; ORU^R01 read; ORU written."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pacsflow.adapters.hl7.codec import parse
from pacsflow.adapters.hl7.errors import RequiredFieldMissing
from pacsflow.adapters.hl7.results import Hl7Subscriber, MllpResultSender
from pacsflow.adapters.hl7.translate import FieldMap, translate
from pacsflow.domain import commands as cmd
from pacsflow.domain.errors import InvalidInput, MissingIdentifier
from pacsflow.domain.reports import (
    Report,
    ReportStatus,
    is_finally_reported,
    status_from_code,
    study_status,
)
from pacsflow.domain.studies import StudyRecord, StudyState
from pacsflow.domain.uids import new_uid
from pacsflow.workflow.results import EVENT_IMAGES, EVENT_REPORT, ResultMessage
from tests import factories as f

S = ReportStatus


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        ([], S.UNREAD),
        ([S.PRELIMINARY], S.PRELIMINARY),
        ([S.PRELIMINARY, S.FINAL], S.FINAL),
        ([S.FINAL, S.PRELIMINARY], S.FINAL),  # a late preliminary does not undo the final
        ([S.FINAL, S.CORRECTED], S.CORRECTED),
        ([S.CORRECTED, S.FINAL], S.CORRECTED),
        ([S.FINAL, S.CANCELLED], S.UNREAD),
        ([S.FINAL, S.CANCELLED, S.PRELIMINARY], S.PRELIMINARY),
        ([S.IN_PROGRESS], S.IN_PROGRESS),
    ],
)
def test_the_study_status_moves_forward(versions: list[S], expected: S) -> None:
    assert study_status(versions) is expected


statuses = st.lists(st.sampled_from([s for s in S if s is not S.UNREAD]), max_size=12)


@given(versions=statuses)
def test_without_cancellations_later_versions_never_lower_the_status(versions: list[S]) -> None:
    kept = [v for v in versions if v is not S.CANCELLED]
    for n in range(len(kept)):
        before, after = study_status(kept[:n]), study_status(kept[: n + 1])
        order = list(S)
        assert order.index(after) >= order.index(before)


@given(versions=statuses)
def test_a_final_or_correction_stays_final_until_cancelled(versions: list[S]) -> None:
    status = study_status([S.FINAL, *[v for v in versions if v is not S.CANCELLED]])
    assert is_finally_reported(status)


def test_result_status_codes() -> None:
    assert [status_from_code(c) for c in "PFCXIrs"] == [
        S.PRELIMINARY,
        S.FINAL,
        S.CORRECTED,
        S.CANCELLED,
        S.IN_PROGRESS,
        S.IN_PROGRESS,
        S.IN_PROGRESS,
    ]
    with pytest.raises(InvalidInput, match="not one of"):
        status_from_code("Q")


def test_a_report_needs_an_accession_or_a_study_uid() -> None:
    with pytest.raises(MissingIdentifier):
        Report(accession_number=" ", status=S.FINAL, text="")


ORU = (
    "MSH|^~\\&|RIS|HOSP|PACSFLOW|HOSP|20261129120000||ORU^R01^ORU_R01|C1|P|2.5.1\r"
    "PID|1||123^^^HOSP||Doe^Jane\r"
    "OBR|1||R77|CTCHEST^CT chest^L|||20261129115500+0100|||||||||||ACC77|||||||F"
    "|||||||1234&House&Gregory\r"
    "OBX|1|ST|113014^Study Instance UID^DCM||1.2.3.4||||||F\r"
    "OBX|2|TX|GDT^Report||Findings: none.~Second line.||||||F\r"
    "OBX|3|TX|GDT^Report||Impression: normal.||||||F\r"
)


def test_an_oru_becomes_a_report_with_its_identifiers_text_and_interpreter() -> None:
    [command] = translate(parse(ORU.encode()), FieldMap())
    assert isinstance(command, cmd.ReceiveReport)
    r = command.report
    assert (r.accession_number, r.study_instance_uid, r.status, r.report_id) == (
        "ACC77",
        "1.2.3.4",
        S.FINAL,
        "R77",
    )
    assert r.text == "Findings: none.\nSecond line.\nImpression: normal."
    assert r.patient is not None
    assert (r.patient.value, r.patient.issuer) == ("123", "HOSP")
    assert r.radiologist == "House Gregory"
    assert r.observed_at == datetime(2026, 11, 29, 10, 55, tzinfo=UTC)


def test_an_oru_without_a_result_status_is_refused() -> None:
    with pytest.raises(MissingIdentifier, match="OBR"):
        translate(parse(ORU.replace("|||||||F|||", "||||||||||").encode()), FieldMap())


def test_an_oru_without_obr_18_takes_the_orders_filler_number_as_accession() -> None:
    raw = ORU.replace("|||||||||||ACC77|", "||||||||||||").replace(
        "PID|1||123^^^HOSP||Doe^Jane\r", "PID|1||123^^^HOSP||Doe^Jane\rORC|RE||F55^RIS\r"
    )

    [command] = translate(parse(raw.encode()), FieldMap())

    assert isinstance(command, cmd.ReceiveReport)
    assert command.report.accession_number == "F55"


_NO_TEXT = ORU.split("OBX|2")[0]  # only the Study Instance UID observation


def test_a_final_report_without_observation_text_is_refused_at_obx_5() -> None:
    with pytest.raises(RequiredFieldMissing, match="no observation text") as caught:
        translate(parse(_NO_TEXT.encode()), FieldMap())

    assert caught.value.location == "OBX-5"


def test_an_oru_whose_obx_segments_run_onto_the_obr_line_is_refused() -> None:
    lines = ORU.rstrip("\r").split("\r")
    run_together = "\r".join(lines[:2]) + "\r" + " ".join(lines[2:]) + "\r"

    with pytest.raises(RequiredFieldMissing, match="no observation text") as caught:
        translate(parse(run_together.encode()), FieldMap())

    assert caught.value.location == "OBX"


def test_a_cancelled_report_needs_no_text() -> None:
    cancelled = _NO_TEXT.replace("|||||||F|||", "|||||||X|||")

    [command] = translate(parse(cancelled.encode()), FieldMap())

    assert isinstance(command, cmd.ReceiveReport)
    assert (command.report.status, command.report.text) == (S.CANCELLED, "")


def test_an_ed_observation_carrying_text_is_the_report_text() -> None:
    ed = _NO_TEXT + "OBX|2|ED|18748-4^Diagnostic Imaging Report^LN||^Text^text/xml^A^<doc/>\r"

    [command] = translate(parse(ed.encode()), FieldMap())

    assert isinstance(command, cmd.ReceiveReport)
    assert command.report.text == "<doc/>"


def _study() -> StudyRecord:
    return StudyRecord(
        study_instance_uid=new_uid(),
        state=StudyState.PUBLISHED,
        received=f.received(),
        patient=f.identifier("123"),
        accession_number="ACC77",
    )


def test_the_oru_we_send_reads_back_with_status_accession_uid_and_text() -> None:
    sender = MllpResultSender({}, clock=lambda: datetime(2026, 11, 29, tzinfo=UTC))
    sub = Hl7Subscriber("EHR", "127.0.0.1", 1, receiving_application="EHR")
    study = _study()
    report = Report("ACC77", S.CORRECTED, "Line one.\nLine | two ^ escaped.", radiologist="Dr X")
    raw = sender.encode(sub, ResultMessage(1, EVENT_REPORT, study, report, f.patient("123")), "PF1")
    m = parse(raw)
    assert (m.get("MSH-9.1"), m.get("MSH-9.2"), m.get("MSH-10"), m.get("MSH-5")) == (
        "ORU",
        "R01",
        "PF1",
        "EHR",
    )
    assert (m.get("OBR-18"), m.get("OBR-25"), m.get("PID-3.1")) == ("ACC77", "C", "123")
    obx = m.segments_named("OBX")
    assert obx[0].get(5) == str(study.study_instance_uid)
    assert [s.get(5) for s in obx[1:]] == ["Line one.", "Line | two ^ escaped."]


def test_images_available_is_an_orm_status_change_with_the_study_uid() -> None:
    sender = MllpResultSender({}, clock=lambda: datetime(2026, 11, 29, tzinfo=UTC))
    study = _study()
    raw = sender.encode(Hl7Subscriber("EHR", "h", 1), ResultMessage(2, EVENT_IMAGES, study), "PF2")
    m = parse(raw)
    assert (m.get("MSH-9.1"), m.get("ORC-1"), m.get("ORC-5")) == ("ORM", "SC", "CM")
    assert (m.get("OBR-18"), m.get("ZDS-1")) == ("ACC77", str(study.study_instance_uid))
