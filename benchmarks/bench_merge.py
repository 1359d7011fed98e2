"""Patient merge: ADT^A40 for a patient with 1,000 studies, applied as the HL7 listener does.

Each repetition indexes, in bulk through the repositories (one transaction, no DICOM), a
patient with --studies published studies (each with its order and --instances instances) and a
survivor with one study of its own; then an ADT^A40 (PID survivor, MRG merged patient) goes
through `Hl7Service.handle` -> journal, translate, `Intake.apply` (merge, late matching,
audit), ACK: everything the MLLP listener does for a message except the socket. The time of
that call is the merge time. Afterwards it checks that every study and order carries the
survivor's identifier and none the merged one.

SQLite: the embedded default (a file in a temporary directory, WAL, synchronous=FULL, through
`make_engine`, schema by the Alembic migrations). With --postgres also a private throwaway
PostgreSQL cluster (tests/peers/postgres.py: initdb + postgres on a Unix socket; fsync off, so
commits cost less than on a durable server).

usage: python benchmarks/bench_merge.py [--reps 5] [--studies 1000] [--instances 2]
                                        [--postgres] [--out results.jsonl]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import sqlalchemy as sa
from _common import REPO, machine

from pacsflow.adapters.db import SqlUnitOfWorkFactory, upgrade
from pacsflow.adapters.db import tables as t
from pacsflow.adapters.db.engine import make_engine
from pacsflow.adapters.hl7.listener import Hl7Service
from pacsflow.domain.matching import ReceivedIdentity
from pacsflow.domain.orders import AccessionNumber, Order
from pacsflow.domain.patients import Demographics, Issuer, Patient, PatientId, PatientIdentifier
from pacsflow.domain.patients import PersonName as Name
from pacsflow.domain.studies import ArrivedInstance, InstanceRecord, StudyState
from pacsflow.domain.uids import Uid, new_uid
from pacsflow.workflow.intake import Intake

_CT = Uid("1.2.840.10008.5.1.4.1.1.2")
_EXPLICIT_LE = Uid("1.2.840.10008.1.2.1")


class _Clock:
    zone = UTC

    def now(self) -> datetime:
        return datetime.now(UTC)


def _patient(value: str, family: str) -> Patient:
    return Patient(
        (PatientIdentifier(PatientId(value), Issuer("HOSP")),),
        Demographics(Name(family=family, given="JOAN"), date(1970, 1, 2), "F"),
    )


def _index(uow: SqlUnitOfWorkFactory, patient: Patient, studies: int, instances: int) -> None:
    """Register patient and index its scheduled, published studies (one transaction)."""
    now = datetime.now(UTC)
    with uow() as u:
        u.patients.save(patient, now)
        for n in range(studies):
            accession = AccessionNumber(f"{patient.primary.value}-{n:05d}")
            study_uid, series_uid = new_uid(), new_uid()
            u.orders.save(
                Order(accession_number=accession, patient=patient.primary,
                      study_instance_uid=study_uid, modality="CT"),
                now,
            )  # fmt: skip
            identity = ReceivedIdentity(patient.primary, patient.demographics, accession, study_uid)
            for k in range(instances):
                u.studies.add_instance(
                    ArrivedInstance(
                        identity,
                        InstanceRecord(study_uid, series_uid, new_uid(), _CT, _EXPLICIT_LE,
                                       blob_key=f"bench/{study_uid}/{k}", size=1, modality="CT"),
                        study_date=date(2026, 11, 30),
                        source_ae="BENCH",
                    ),
                    now,
                )  # fmt: skip
            u.studies.set_match(study_uid, StudyState.PUBLISHED, patient.primary, accession)
        u.commit()


def _a40(survivor: Patient, merged: Patient, control_id: str) -> bytes:
    return (
        f"MSH|^~\\&|HIS|HOSP|PACSFLOW|RAD|20261130090000||ADT^A40^ADT_A39|{control_id}|P|2.5\r"
        f"EVN|A40|20261130090000\r"
        f"PID|1||{survivor.primary.value}^^^HOSP^MR||SMITH^JOAN||19700102|F\r"
        f"MRG|{merged.primary.value}^^^HOSP^MR\r"
    ).encode()


def _count(engine: sa.Engine, table: sa.Table, patient_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(table)
                .where(table.c.patient_id == patient_id)
            ).scalar_one()
        )


def run(url: str, backend: str, reps: int, studies: int, instances: int) -> dict[str, object]:
    """Merge timings on one database; the result row."""
    upgrade(url)
    engine = make_engine(url)
    uow = SqlUnitOfWorkFactory(engine)
    clock = _Clock()
    service = Hl7Service(Intake(uow, clock), clock=clock.now)
    times: list[float] = []
    setup: list[float] = []
    for rep in range(reps):
        merged, survivor = _patient(f"OLD{rep}", "SMYTHE"), _patient(f"SURV{rep}", "SMITH")
        start = time.perf_counter()
        _index(uow, merged, studies, instances)
        _index(uow, survivor, 1, instances)
        setup.append(time.perf_counter() - start)
        start = time.perf_counter()
        ack = service.handle(_a40(survivor, merged, f"BENCH{rep}"), "bench")
        times.append(time.perf_counter() - start)
        assert b"MSA|AA" in ack, ack
        for table in (t.studies, t.orders):
            assert _count(engine, table, survivor.primary.value) == studies + 1, table.name
            assert _count(engine, table, merged.primary.value) == 0, table.name
        print(f"{backend} rep {rep + 1}: merge {times[-1] * 1000:.1f} ms "
              f"(index {setup[-1]:.1f} s)", flush=True)  # fmt: skip
    engine.dispose()
    return {
        "backend": backend,
        "studies": studies,
        "instances_per_study": instances,
        "reps": reps,
        "merge_ms": [round(x * 1000, 1) for x in times],
        "median_ms": round(statistics.median(times) * 1000, 1),
        "max_ms": round(max(times) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--postgres", action="store_true", help="also on a private PostgreSQL")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    work = Path(tempfile.mkdtemp(prefix="pf-bench-merge-"))
    try:
        url = f"sqlite:///{work / 'index.db'}"
        rows.append(run(url, "sqlite", args.reps, args.studies, args.instances))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.postgres:
        sys.path.insert(0, str(REPO))
        from tests.peers.postgres import PostgresCluster, database_url, server_bin

        bindir = server_bin()
        if bindir is None:
            raise SystemExit("PostgreSQL server binaries not found (apt-get install postgresql)")
        cluster = PostgresCluster(bindir)
        try:
            cluster.start()
            admin = sa.create_engine(cluster.url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql('CREATE DATABASE "bench_merge"')
            admin.dispose()
            url = database_url(cluster.url, "bench_merge")
            rows.append(run(url, "postgresql", args.reps, args.studies, args.instances))
        finally:
            cluster.stop()
    about = machine()
    for row in rows:
        row["machine"] = about
        print(json.dumps(row))
        if args.out:
            with args.out.open("a") as out:
                out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
