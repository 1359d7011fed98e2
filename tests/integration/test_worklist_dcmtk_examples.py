"""DCMTK's shipped worklist database and example queries, run with `findscu -W` against pacsflow.

The ten example worklist entries are loaded as orders; each of the thirteen example queries
must return as many items from pacsflow as DCMTK's own worklist server (wlmscpfs) returns
from the same entries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from pacsflow.adapters.dicom.datasets import dicom_date, to_person_name
from pacsflow.app import Pacsflow
from pacsflow.domain import commands as cmd
from pacsflow.domain.orders import AccessionNumber, Order, ProcedureCode
from pacsflow.domain.patients import Demographics, Issuer, Patient, PatientId, PatientIdentifier
from pacsflow.domain.uids import Uid
from tests.conftest import dcmtk, requires_dcmtk
from tests.receiving import receive

EXAMPLES = Path("/usr/share/doc/dcmtk/examples")

pytestmark = [
    pytest.mark.dcmtk,
    requires_dcmtk,
    pytest.mark.skipif(not EXAMPLES.is_dir(), reason="DCMTK examples are not installed"),
]

#: What DCMTK's wlmscpfs answers for each example query over the example database
#: (checked live; see tests/integration/test_dicom_matching_dcmtk.py for the oracle run).
EXPECTED = {0: 10, 1: 10, 2: 0, 3: 10, 4: 0, 5: 6, 6: 0, 7: 0, 8: 0, 9: 0, 10: 10, 11: 10, 12: 0}


def _convert(dump: Path, out: Path) -> Path:
    res = dcmtk("dump2dcm", dump, out)
    assert res.returncode == 0, res.stderr
    return out


def _as_order(ds: Dataset, n: int) -> tuple[Order, Patient]:
    sps = ds.ScheduledProcedureStepSequence[0]
    patient = Patient(
        identifiers=(PatientIdentifier(PatientId(str(ds.PatientID)), Issuer("")),),
        demographics=Demographics(
            to_person_name(ds.get("PatientName")),
            dicom_date(str(ds.get("PatientBirthDate", ""))),
            str(ds.get("PatientSex", "")),
        ),
    )
    stations = sps.get("ScheduledStationAETitle", "")
    station = "\\".join(stations) if not isinstance(stations, str) else stations
    start = datetime.strptime(
        f"{sps.ScheduledProcedureStepStartDate}{str(sps.ScheduledProcedureStepStartTime)[:6]}",
        "%Y%m%d%H%M%S",
    ).replace(tzinfo=UTC)
    order = Order(
        accession_number=AccessionNumber(f"{ds.get('AccessionNumber') or 'X'}-{n}"),
        patient=patient.primary,
        study_instance_uid=Uid(f"{ds.StudyInstanceUID}.{n}"),
        requested_procedure_id=str(ds.get("RequestedProcedureID", "")),
        requested_procedure_description=str(ds.get("RequestedProcedureDescription", "")),
        procedure_code=ProcedureCode("P" + str(n), "L", "example"),
        modality=str(sps.get("Modality", "")),
        scheduled_station_ae=station,
        scheduled_station_name=str(sps.get("ScheduledStationName", "")),
        scheduled_procedure_step_id=str(sps.get("ScheduledProcedureStepID", "")),
        scheduled_start=start,
    )
    return order, patient


def test_every_example_query_matches_like_dcmtk(node: Pacsflow, tmp_path: Path) -> None:
    commands: list[cmd.Command] = []
    for n, dump in enumerate(sorted((EXAMPLES / "wlistdb/OFFIS").glob("wklist*.dump"))):
        ds = dcmread(_convert(dump, tmp_path / f"wl{n}.wl"))
        order, patient = _as_order(ds, n)
        commands.append(cmd.PlaceOrder(order, patient))
    receive(node.intake, *commands)
    assert len(node.queries.worklist()) == 10

    counts = {}
    for k in EXPECTED:
        query = _convert(EXAMPLES / f"wlistqry/wlistqry{k}.dump", tmp_path / f"q{k}.dcm")
        out = tmp_path / f"out{k}"
        out.mkdir()
        res = dcmtk(
            "findscu",
            "-W",
            "-aec",
            "PACSFLOW",
            "-X",
            "-od",
            out,
            "127.0.0.1",
            node.dicom.port,
            query,
        )
        assert res.returncode == 0, res.stderr
        counts[k] = len(list(out.glob("rsp*.dcm")))
    assert counts == EXPECTED
