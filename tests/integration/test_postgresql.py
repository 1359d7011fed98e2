"""PostgreSQL, the scale backend: migrations, one job queue shared by nodes, two full nodes.

Every test gets a fresh database on the private cluster of tests/peers/postgres.py (or on the
server PACSFLOW_TEST_PG_URL names); without PostgreSQL they skip with the reason.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    ModalityWorklistInformationFind,
)

import pacsflow.adapters.db.uow  # noqa: F401  (registers every table on the metadata)
from pacsflow.adapters.db import SqlUnitOfWorkFactory, is_current, make_engine, upgrade
from pacsflow.adapters.db.tables import metadata
from pacsflow.adapters.hl7 import MllpClient
from pacsflow.app import Pacsflow, SystemClock
from pacsflow.domain.access import Role
from pacsflow.domain.jobs import Job, JobState, NewJob
from pacsflow.worker import Worker
from tests.conftest import TOOL_PEERS, make_settings, restamp

ORM = Path(__file__).parent.parent / "samples" / "hl7" / "orm_o01_nw.hl7"


# -- schema -------------------------------------------------------------------------------------


def test_upgrade_head_on_an_empty_database_matches_the_declared_tables(
    pg_database_url: str,
) -> None:
    upgrade(pg_database_url)
    engine = make_engine(pg_database_url)
    try:
        assert is_current(engine)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        engine.dispose()


def test_nodes_starting_together_upgrade_an_empty_database_once(pg_database_url: str) -> None:
    # Processes, as nodes are: Alembic's context is process-global, so threads cannot tell.
    script = "import sys; from pacsflow.adapters.db import upgrade; upgrade(sys.argv[1])"
    starting = [
        subprocess.Popen(
            [sys.executable, "-c", script, pg_database_url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=60)[1] for p in starting]
    assert [p.returncode for p in starting] == [0, 0, 0], errors
    engine = make_engine(pg_database_url)
    try:
        assert is_current(engine)
    finally:
        engine.dispose()


# -- one job queue, several nodes -------------------------------------------------------------


@pytest.fixture
def migrated(pg_database_url: str) -> str:
    upgrade(pg_database_url)
    return pg_database_url


@pytest.fixture
def engines(migrated: str) -> Iterator[list[sa.Engine]]:
    """Two engines on one database, as two nodes have (their own connection pools)."""
    made = [make_engine(migrated) for _ in range(2)]
    yield made
    for engine in made:
        engine.dispose()


def test_two_nodes_run_every_job_exactly_once_and_take_over_a_dead_nodes_job(
    migrated: str, engines: list[sa.Engine]
) -> None:
    clock = SystemClock()
    total = 200
    ran: list[tuple[str, int]] = []
    lock = threading.Lock()

    def handler_of(node: str) -> Callable[[Job], None]:
        def handler(job: Job) -> None:
            with lock:
                ran.append((node, job.id))

        return handler

    first = SqlUnitOfWorkFactory(engines[0])
    with first() as u:
        ids = [u.jobs.enqueue(NewJob("send", {"n": n}), clock.now()) for n in range(total)]
        u.commit()
    # A third node claims the oldest job and dies: nobody renews or settles its lease.
    dead_engine = make_engine(migrated)
    with SqlUnitOfWorkFactory(dead_engine)() as u:
        [orphan] = u.jobs.claim(
            "dead-node",
            clock.now(),
            timedelta(seconds=0.5),
            kinds=["send"],
            limit=1,
            destination_limits={},
            default_destination_limit=2,
        )
        u.commit()
    dead_engine.dispose()
    assert orphan.id == ids[0]

    workers = [
        Worker(
            SqlUnitOfWorkFactory(engine),
            clock,
            {"send": handler_of(f"node{i}")},
            threads=2,
            poll_seconds=0.02,
        )
        for i, engine in enumerate(engines)
    ]
    for worker in workers:
        worker.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with first(read_only=True) as u:
                if u.jobs.stats(clock.now()).by_state == {"done": total}:
                    break
            time.sleep(0.05)
    finally:
        for worker in workers:
            worker.stop()

    job_ids = [job_id for _, job_id in ran]
    assert len(job_ids) == total, Counter(job_ids).most_common(3)
    assert sorted(job_ids) == sorted(ids)  # each once, none lost
    per_node = Counter(node for node, _ in ran)
    assert set(per_node) == {"node0", "node1"}, per_node  # the queue really is shared
    with first(read_only=True) as u:
        assert u.jobs.stats(clock.now()).by_state == {"done": total}
        taken_over = u.jobs.get(orphan.id)
    assert taken_over is not None
    assert (taken_over.state, taken_over.attempts) == (JobState.DONE, 2)


# -- two full nodes -----------------------------------------------------------------------------


@pytest.fixture
def two_nodes(migrated: str, tmp_path: Path) -> Iterator[tuple[Pacsflow, Pacsflow]]:
    """Nodes A and B: one PostgreSQL database, one blob directory, their own data dirs."""
    shared = (tmp_path / "objects").as_uri()
    nodes: list[Pacsflow] = []
    try:
        for name in ("a", "b"):
            settings = make_settings(
                tmp_path / name,
                peers=list(TOOL_PEERS),
                database_url=migrated,
                storage_url=shared,
                station_mappings=[{"station_ae": "CT01", "modality": "CT"}],
                job_workers=1,
            )
            node = Pacsflow(settings)
            node.start()
            nodes.append(node)
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            node.stop()


def _worklist(node: Pacsflow, accession: str) -> list[Dataset]:
    query = Dataset()
    query.PatientID = ""
    query.PatientName = ""
    query.AccessionNumber = accession
    query.StudyInstanceUID = ""
    step = Dataset()
    step.ScheduledStationAETitle = ""
    step.Modality = ""
    query.ScheduledProcedureStepSequence = [step]
    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", node.dicom.port, ae_title="PACSFLOW")
    assert assoc.is_established
    try:
        return [
            identifier
            for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind)
            if status.Status in (0xFF00, 0xFF01) and identifier is not None
        ]
    finally:
        assoc.release()


def _c_store(node: Pacsflow, ds: Dataset) -> int:
    ae = AE(ae_title="CT01")
    ae.add_requested_context(CTImageStorage, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", node.dicom.port, ae_title="PACSFLOW")
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(ds).Status)
    finally:
        assoc.release()


def test_an_order_through_node_a_is_on_node_bs_worklist_and_b_s_image_in_a_s_studies(
    two_nodes: tuple[Pacsflow, Pacsflow], tmp_path: Path
) -> None:
    a, b = two_nodes
    with MllpClient("127.0.0.1", a.hl7.port, timeout=10) as client:
        ack = client.send(ORM.read_bytes().rstrip(b"\n"))
    assert b"MSA|AA|" in ack

    [item] = _worklist(b, "ACC1001")
    assert (item.PatientID, str(item.PatientName)) == ("MRN12345", "SMITH^JOHN")
    assert item.ScheduledProcedureStepSequence[0].ScheduledStationAETitle == "CT01"

    _, ds = restamp(
        "CT_small.dcm",
        tmp_path / "ct.dcm",
        patient_id="MRN12345",
        issuer="GENHOSP",
        accession="ACC1001",
        study_uid=item.StudyInstanceUID,
        name_pn="SMITH^JOHN",
        birth="19700412",
        sex="M",
    )
    assert _c_store(b, ds) == 0x0000

    a.accounts.create_user("viewer", [Role.RECONCILER])
    token = a.accounts.create_token("viewer", "tests")
    studies = httpx.get(
        f"http://127.0.0.1:{a.http.port}/api/studies",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()
    assert [s["study_instance_uid"] for s in studies] == [ds.StudyInstanceUID]
    # The object B stored is readable through A: one blob store.
    [instance] = a.queries.instances(sop_uids=[ds.SOPInstanceUID])
    path = a.queries.local_file(instance)
    assert path is not None
    assert path.read_bytes()[128:132] == b"DICM"
