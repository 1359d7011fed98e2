"""Every day boundary is the site's: near midnight, far from UTC, the day is the site's day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from pydicom.dataset import Dataset

from pacsflow.adapters.dicom.datasets import worklist_dataset, worklist_filter
from pacsflow.adapters.routing_yaml import YamlRuleText
from pacsflow.cli.routing import _when
from pacsflow.config import Settings
from pacsflow.domain import commands as cmd
from pacsflow.domain.audit import AuditSource
from pacsflow.domain.calendar import day_span, day_start, local_day, local_time
from pacsflow.services import Services
from pacsflow.workflow.exception_queue import ExceptionQueue
from pacsflow.workflow.ingest import Ingest
from pacsflow.workflow.intake import Intake
from pacsflow.workflow.queries import WorklistItem
from pacsflow.workflow.routing import Routing
from tests import factories as f
from tests.fakes import FixedClock, InMemoryBlobStore, memory_uow
from tests.receiving import receive

#: UTC+14 all year: its day begins at 10:00 UTC the day before.
KIRITIMATI = ZoneInfo("Pacific/Kiritimati")
#: UTC-10 all year.
HONOLULU = ZoneInfo("Pacific/Honolulu")
BERLIN = ZoneInfo("Europe/Berlin")
#: Ten minutes after midnight in Kiritimati on 29 November; still the 28th in UTC.
JUST_AFTER_MIDNIGHT = datetime(2026, 11, 28, 10, 10, tzinfo=UTC)


def test_an_instant_falls_on_the_site_day_not_the_utc_day() -> None:
    assert local_day(JUST_AFTER_MIDNIGHT, KIRITIMATI) == date(2026, 11, 29)
    assert local_day(datetime(2026, 11, 29, 9, 50, tzinfo=UTC), HONOLULU) == date(2026, 11, 28)
    assert local_time(JUST_AFTER_MIDNIGHT, KIRITIMATI).time().isoformat() == "00:10:00"


def test_a_site_day_spans_from_its_midnight_to_the_next() -> None:
    assert day_start(date(2026, 11, 29), KIRITIMATI) == datetime(2026, 11, 28, 10, tzinfo=UTC)
    start, end = day_span(date(2026, 11, 29), date(2026, 11, 30), HONOLULU)
    assert (start, end) == (
        datetime(2026, 11, 29, 10, tzinfo=UTC),
        datetime(2026, 12, 1, 10, tzinfo=UTC),
    )
    # The day daylight saving begins has 23 hours.
    spring = day_span(date(2026, 3, 29), date(2026, 3, 29), BERLIN)
    assert spring[1] - spring[0] == timedelta(hours=23)


def test_site_timezone_is_checked_when_the_settings_are_read(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not a known IANA time zone"):
        Settings(data_dir=tmp_path, site_timezone="Mars/Olympus")
    settings = Settings(data_dir=tmp_path, site_timezone=" Pacific/Kiritimati ")
    assert settings.site_zone == KIRITIMATI
    assert Services(settings).clock.zone == KIRITIMATI


def test_the_host_zone_is_the_default_site_zone(tmp_path: Path) -> None:
    zone = Settings(data_dir=tmp_path).site_zone
    assert JUST_AFTER_MIDNIGHT.astimezone(zone) == JUST_AFTER_MIDNIGHT.astimezone()


def test_the_exception_report_defaults_to_the_site_day() -> None:
    queue = ExceptionQueue(memory_uow(), FixedClock(JUST_AFTER_MIDNIGHT, zone=KIRITIMATI))
    report = queue.report()
    assert report.day == date(2026, 11, 29)
    assert report.start == datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert queue.report(zone=UTC).day == date(2026, 11, 28)  # an explicit zone still wins


def test_a_worklist_date_matches_the_steps_scheduled_on_that_site_day() -> None:
    query = Dataset()
    sps = Dataset()
    sps.ScheduledProcedureStepStartDate = "20261129"
    query.ScheduledProcedureStepSequence = [sps]
    flt = worklist_filter(query, KIRITIMATI)
    assert flt.start_from == datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert flt.start_to is not None
    assert (
        flt.start_to
        < datetime(2026, 11, 29, 10, tzinfo=UTC)
        <= flt.start_to + timedelta(milliseconds=1)
    )
    p = f.patient()
    item = WorklistItem(f.order(p, scheduled_start=JUST_AFTER_MIDNIGHT), p)
    entry = worklist_dataset(item, KIRITIMATI).ScheduledProcedureStepSequence[0]
    assert entry.ScheduledProcedureStepStartDate == "20261129"
    assert entry.ScheduledProcedureStepStartTime == "001000"


def test_cli_dates_without_an_offset_are_site_time() -> None:
    assert _when("2026-11-29", "--since", KIRITIMATI) == datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert _when("2026-11-29T00:10+00:00", "--since", KIRITIMATI) == datetime(
        2026, 11, 29, 0, 10, tzinfo=UTC
    )


NIGHT_SHIFT = """
rules:
  - name: night
    send_to: [NIGHT]
    when:
      time_of_day: {range: ["00:00", "06:00"]}
"""


def test_routing_time_of_day_is_site_time(tmp_path: Path) -> None:
    uow, clock = memory_uow(), FixedClock(JUST_AFTER_MIDNIGHT, zone=KIRITIMATI)
    intake = Intake(uow, clock)
    p = f.patient()
    o = f.order(p)
    receive(intake, cmd.PlaceOrder(o, p))
    arrived = f.arrived(f.received(p, accession=o.accession_number))
    src = tmp_path / "one.dcm"
    src.write_bytes(b"x")
    Ingest(uow, InMemoryBlobStore(), clock).receive(arrived, src)
    routing = Routing(
        uow,
        clock,
        lambda _instance: {},
        sender=None,  # type: ignore[arg-type]  # a dry run sends nothing
        rule_text=YamlRuleText(),
        is_destination=lambda _name: True,
        audit_source=AuditSource("PACSFLOW"),
    )
    [study] = routing.dry_run(
        NIGHT_SHIFT, JUST_AFTER_MIDNIGHT - timedelta(hours=1), clock.now() + timedelta(seconds=1)
    )
    assert study.candidate == frozenset({"NIGHT"})  # 00:10 at the site, 10:10 in UTC
    # A period without an offset (the API's dry run) is site time too: 00:00-00:20 there.
    since, until = datetime(2026, 11, 29, 0, 0), datetime(2026, 11, 29, 0, 20)
    assert [d.key for d in routing.dry_run(NIGHT_SHIFT, since, until)] == [study.key]
