"""A node in a site far from UTC, just after the site's midnight: its worklist dates and its
exceptions report count the site's day, not the UTC one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

from pacsflow.app import Pacsflow
from pacsflow.domain.access import Role
from pacsflow.domain.calendar import day_start, local_day
from tests.conftest import TEST_START, TOOL_PEERS, make_settings, requires_dcmtk, restamp, storescu
from tests.fakes import RunningClock
from tests.scheduling import scheduled

#: UTC+14 all year: the site's day begins at 10:00 UTC of the day before.
KIRITIMATI = ZoneInfo("Pacific/Kiritimati")
#: The first site midnight after the tests' start.
MIDNIGHT = day_start(local_day(TEST_START, KIRITIMATI) + timedelta(days=1), KIRITIMATI)


@pytest.fixture
def clock() -> RunningClock:
    """Five minutes before the site's midnight, in the site's zone."""
    return RunningClock(MIDNIGHT - timedelta(minutes=5), zone=KIRITIMATI)


@pytest.fixture
def site_node(tmp_path: Path, clock: RunningClock) -> Iterator[Pacsflow]:
    n = Pacsflow(make_settings(tmp_path, peers=TOOL_PEERS), clock)
    n.start()
    yield n
    n.stop()


def _worklist(node: Pacsflow, start_date: str) -> list[Dataset]:
    query = Dataset()
    query.AccessionNumber = ""
    sps = Dataset()
    sps.ScheduledProcedureStepStartDate = start_date
    sps.ScheduledProcedureStepStartTime = ""
    query.ScheduledProcedureStepSequence = [sps]
    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", node.dicom.port, ae_title="PACSFLOW")
    assert assoc.is_established
    try:
        found = [
            ds
            for status, ds in assoc.send_c_find(query, ModalityWorklistInformationFind)
            if status and status.Status in (0xFF00, 0xFF01) and ds is not None
        ]
    finally:
        assoc.release()
    return found


def test_a_worklist_date_is_the_sites_day(site_node: Pacsflow) -> None:
    # Ten minutes into the site's day: still the day before in UTC.
    _, order = scheduled(site_node, scheduled_start=MIDNIGHT + timedelta(minutes=10))
    site_day = local_day(MIDNIGHT, KIRITIMATI).strftime("%Y%m%d")
    day_before = (local_day(MIDNIGHT, KIRITIMATI) - timedelta(days=1)).strftime("%Y%m%d")
    [item] = _worklist(site_node, site_day)
    assert item.AccessionNumber == order.accession_number
    sps = item.ScheduledProcedureStepSequence[0]
    assert (sps.ScheduledProcedureStepStartDate, sps.ScheduledProcedureStepStartTime) == (
        site_day,
        "001000",
    )
    assert _worklist(site_node, day_before) == []


@requires_dcmtk
def test_the_exceptions_report_counts_the_sites_day(
    site_node: Pacsflow, clock: RunningClock, tmp_path: Path
) -> None:
    def walk_in(name: str) -> None:
        path, _ = restamp("CT_small.dcm", tmp_path / f"{name}.dcm", patient_id=f"NOBODY-{name}")
        assert storescu(site_node.dicom.port, path).returncode == 0

    walk_in("before")  # opened on the site's previous day
    clock.advance((MIDNIGHT - clock.now()).total_seconds() + 60)
    walk_in("after")  # opened on the site's day, the same day as "before" in UTC
    clock.advance(1)
    site_node.accounts.create_user("tester", [Role.RECONCILER])
    token = site_node.accounts.create_token("tester", "tests")
    reply = httpx.get(
        f"http://127.0.0.1:{site_node.http.port}/api/exceptions/report",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    report = reply.json()
    assert report["day"] == local_day(MIDNIGHT, KIRITIMATI).isoformat()
    assert datetime.fromisoformat(report["start"]) == MIDNIGHT
    assert report["total"]["opened"] == 1
