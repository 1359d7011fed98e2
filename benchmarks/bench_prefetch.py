"""Prefetch of priors: ORM^O01 -> every relevant prior local, pacsflow against DCMTK movescu.

Set-up, once per invocation: a corpus of one patient's --priors prior CT studies of --instances
instances each (512x512x16 bit, ~514 KiB, two series, dated 60 days to 4.5 years before today)
plus three irrelevant studies of --irrelevant-instances each (the patient's MR, the patient's CT
of 6.6 years ago, another patient's CT) is written with pydicom and sent with DCMTK `storescu`
to a fresh Orthanc 1.10, the remote archive (bench_ingest's configuration; C-FIND/C-MOVE only
for the AE titles listed in its DicomModalities: PACSFLOW, STORESCP and BENCHMOVE).  Orthanc
keeps running for every rep; each rep runs these, each with a fresh receiver:

* **pacsflow** (prefetch): a fresh `pacsflow serve` subprocess with a TOML config (peer
  ORTHANC with --peer-jobs max_concurrent_jobs, prefetch_archives ["ORTHANC"], a default rule
  same modality, 5 years, max_priors = --priors, job_poll_seconds --poll); a radiologist user
  and token made with the CLI first.  ADT^A04 registers the patient over MLLP, then the clock
  starts and one ORM^O01 NW (CT, scheduled today) is sent; `GET /api/priors?accession_number=`
  is polled every --api-poll s until --priors priors are `done`, and the clock stops at the
  last prior's `completed_at` (pacsflow's own time, same machine clock, so the poll interval
  adds nothing; the poll's view is kept as observed_s).  Per-prior latency is the API's
  latency_seconds (prefetch job created, in the order's transaction -> prior local).  Checked
  after: pacsflow's index (SELECT count(*) FROM instances) holds exactly priors x instances,
  and no study is held.  Phases are read from its SQLite (prefetch job created -> finished:
  the search; finished -> last prior completed: the retrieval).
* **storescp**: DCMTK `movescu -S` (study root, one process per study, --movescu-parallel at a
  time, calling AE BENCHMOVE) C-MOVEs the same studies from Orthanc into DCMTK `storescp
  --fork -od DIR`; timed from the first spawn to the last exit; files counted.
* **pacsflow-dest**: the same movescu runs with a fresh `pacsflow serve` as the move
  destination (no order, no prefetch): pacsflow's C-STORE ingest alone, to tell the
  orchestration (HL7, job queue, C-FIND, per-prior bookkeeping) from the receiving.

Runs itself inside `unshare -n` (loopback only; needs root).  TCP_NODELAY=1 is exported to the
DCMTK tools and Orthanc; pacsflow sets it itself.  Medians over --reps; the ratio is pacsflow's
time over movescu's.  The order of the modes rotates from rep to rep.

usage: python benchmarks/bench_prefetch.py [--priors 5] [--instances 200] [--reps 3]
           [--peer-jobs 2] [--modes pacsflow,storescp,pacsflow-dest] [--out results.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from array import array
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    Orthanc,
    PacsflowNode,
    ack_code,
    dcmtk_env,
    ensure_netns,
    free_ports,
    hl7,
    keep_if_failed,
    machine,
    save,
    scratch,
    start_orthanc,
    stop,
    wait_until,
)
from gen_corpus import set_ct_pixel_module
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

MODES = ("pacsflow", "storescp", "pacsflow-dest")
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ISSUER = "HOSP"
PATIENT = {
    "PatientID": "PFPRIOR0001",
    "PatientName": "PRIOR^PAULINE",
    "PatientBirthDate": "19550312",
    "PatientSex": "F",
}
OTHER_PATIENT = {
    "PatientID": "PFOTHER0002",
    "PatientName": "OTHER^OSKAR",
    "PatientBirthDate": "19601101",
    "PatientSex": "M",
}
PACSFLOW_AET, STORESCP_AET, MOVESCU_AET = "PACSFLOW", "STORESCP", "BENCHMOVE"


@dataclass(frozen=True)
class Study:
    """One study of the corpus."""

    uid: str
    patient: dict[str, str]
    modality: str
    days_ago: int
    instances: int
    is_relevant: bool


def plan(priors: int, instances: int, irrelevant: int) -> list[Study]:
    """The relevant priors (most recent first) and the irrelevant studies."""
    span = 1640 // max(1, priors - 1)
    studies = [
        Study(generate_uid(), PATIENT, "CT", 60 + i * span, instances, True) for i in range(priors)
    ]
    if irrelevant:
        studies += [
            Study(generate_uid(), PATIENT, "MR", 300, irrelevant, False),  # other modality
            Study(generate_uid(), PATIENT, "CT", 2400, irrelevant, False),  # older than 5 years
            Study(generate_uid(), OTHER_PATIENT, "CT", 200, irrelevant, False),  # other patient
        ]
    return studies


def _frames(n: int) -> list[bytes]:
    """n 512x512 16-bit frames: a water-ish disc in air with a little texture."""
    base = array(
        "H",
        (
            (1064 if (y - 256) ** 2 + (x - 256) ** 2 < 220**2 else 0) + (x * 7 + y * 13) % 16
            for y in range(512)
            for x in range(512)
        ),
    )
    frames = []
    for k in range(n):
        frame = array("H", ((v + k) & 0x0FFF for v in base))
        if sys.byteorder == "big":
            frame.byteswap()
        frames.append(frame.tobytes())
    return frames


def write_corpus(root: Path, studies: list[Study], today: date) -> tuple[int, int]:
    """Write every study under root/<n>/; how many files and bytes."""
    frames = _frames(16)
    files = size = 0
    for n, st in enumerate(studies):
        sop_class = CT_IMAGE_STORAGE if st.modality == "CT" else MR_IMAGE_STORAGE
        day = (today - timedelta(days=st.days_ago)).strftime("%Y%m%d")
        series = [generate_uid() for _ in range(2 if st.instances > 1 else 1)]
        folder = root / f"st{n:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(st.instances):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = UID(sop_class)
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
            ds = Dataset()
            ds.file_meta = meta
            ds.preamble = b"\x00" * 128
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.SOPClassUID = sop_class
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            for keyword, value in st.patient.items():
                setattr(ds, keyword, value)
            ds.IssuerOfPatientID = ISSUER
            ds.StudyInstanceUID = st.uid
            ds.StudyDate = ds.ContentDate = day
            ds.StudyTime = ds.ContentTime = "101500"
            ds.AccessionNumber = f"OLD{n:02d}{st.days_ago:05d}"
            ds.StudyID = f"{n}"
            ds.StudyDescription = f"{st.modality} CHEST"
            ds.ReferringPhysicianName = "WELBY^MARCUS"
            ds.Manufacturer = "PACSFLOW-BENCH"
            ds.Modality = st.modality
            ds.BodyPartExamined = "CHEST"
            half = i * len(series) // st.instances
            ds.SeriesInstanceUID = series[half]
            ds.SeriesNumber = half + 1
            ds.SeriesDescription = ["AXIAL 5.0 SOFT", "AXIAL 5.0 LUNG"][half]
            ds.InstanceNumber = i + 1
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.SliceThickness = "5.0"
            ds.ImagePositionPatient = ["-250.0", "-250.0", f"{-i * 5.0:.1f}"]
            ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
            set_ct_pixel_module(ds)
            ds.PixelData = frames[i % len(frames)]
            ds["PixelData"].VR = "OW"
            path = folder / f"{i:04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files += 1
            size += path.stat().st_size
    return files, size


def start_archive(run_dir: Path, pacsflow_port: int, storescp_port: int) -> Orthanc:
    """The remote archive: a fresh Orthanc 1.10 that knows pacsflow, storescp and movescu."""
    return start_orthanc(
        run_dir,
        # As a real archive: C-FIND and C-MOVE only for the AE titles listed below.
        DicomAlwaysAllowFind=False,
        DicomAlwaysAllowMove=False,
        DicomModalities={
            "pacsflow": [PACSFLOW_AET, "127.0.0.1", pacsflow_port],
            "storescp": [STORESCP_AET, "127.0.0.1", storescp_port],
            # movescu's calling AE; it receives nothing itself (port never used).
            "movescu": [MOVESCU_AET, "127.0.0.1", storescp_port],
        },
    )


def load(orthanc: Orthanc, corpus: Path) -> float:
    """Send the corpus to Orthanc with one storescu association; seconds taken."""
    t0 = time.perf_counter()
    with (orthanc.run_dir / "storescu.log").open("wb") as log:
        subprocess.run(
            [
                *("storescu", "-aec", orthanc.aet, "+sd", "+r"),
                *("127.0.0.1", str(orthanc.dicom_port), str(corpus)),
            ],
            stdout=log,
            stderr=log,
            env=dcmtk_env(),
            check=True,
            timeout=1800,
        )
    return time.perf_counter() - t0


def _toml(value: Any) -> str:
    return json.dumps(str(value)) if isinstance(value, Path) else json.dumps(value)


class Node(PacsflowNode):
    """`pacsflow serve` from a TOML config in a fresh directory."""

    def __init__(
        self, run_dir: Path, dicom_port: int, orthanc: Orthanc, a: argparse.Namespace
    ) -> None:
        hl7_port, http_port = free_ports(2)
        settings: dict[str, Any] = {
            "data_dir": run_dir / "data",
            "host": "127.0.0.1",
            "ae_title": PACSFLOW_AET,
            "dicom_port": dicom_port,
            "hl7_port": hl7_port,
            "http_port": http_port,
            "log_level": "WARNING",
            "job_workers": a.workers,
            "job_poll_seconds": a.poll,
            "prefetch_archives": ["ORTHANC"],
        }
        lines = [f"{k} = {_toml(v)}" for k, v in settings.items()]
        lines += [
            "",
            "[[peers]]",
            f'ae_title = "{orthanc.aet}"',
            'host = "127.0.0.1"',
            f"port = {orthanc.dicom_port}",
            f"max_concurrent_jobs = {a.peer_jobs}",
            "",
            "[[prefetch_rules]]  # the default rule",
            "same_modality = true",
            "years = 5",
            f"max_priors = {a.priors}",
        ]
        config = run_dir / "pacsflow.toml"
        config.write_text("\n".join(lines) + "\n")
        # Only the TOML speaks: no PACSFLOW_* setting from the caller's environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PACSFLOW_")}
        super().__init__(run_dir, (dicom_port, hl7_port, http_port), env, config)

    def priors(self, token: str, accession: str) -> list[dict[str, Any]]:
        """GET /api/priors of the order."""
        query = urllib.parse.urlencode({"accession_number": accession})
        found: list[dict[str, Any]] = self.api(token, f"/api/priors?{query}")
        return found


def adt_a04(ts: str, control: str) -> bytes:
    """Register the patient."""
    p = PATIENT
    return hl7(
        f"MSH|^~\\&|RIS|RADIOLOGY|PACSFLOW|RADIOLOGY|{ts}||ADT^A04|{control}|P|2.3.1",
        f"EVN|A04|{ts}",
        f"PID|1||{p['PatientID']}^^^{ISSUER}^MR||{p['PatientName']}||{p['PatientBirthDate']}"
        f"|{p['PatientSex']}",
    )


def orm_nw(ts: str, control: str, accession: str) -> bytes:
    """A new CT order for the patient, scheduled now."""
    p = PATIENT
    return hl7(
        f"MSH|^~\\&|RIS|RADIOLOGY|PACSFLOW|RADIOLOGY|{ts}||ORM^O01|{control}|P|2.3.1",
        f"PID|1||{p['PatientID']}^^^{ISSUER}^MR||{p['PatientName']}||{p['PatientBirthDate']}"
        f"|{p['PatientSex']}",
        "PV1|1|O||||||5678^WELBY^MARCUS^A^^DR",
        f"ORC|NW|PLC{accession}^EPIC|FIL{accession}^RIS||SC||^^^{ts}^^S",
        f"OBR|1|PLC{accession}^EPIC|FIL{accession}^RIS|CTCHEST^CT chest^LOCAL|||"
        f"|||||||||9999^HOUSE^GREGORY||{accession}|RP{accession}|SPS{accession}||||CT|||"
        f"^^^{ts}^^S",
    )


def _ts(value: Any) -> datetime:
    """A timestamp of the API (with offset) or of SQLite (UTC, without)."""
    parsed = datetime.fromisoformat(str(value))
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _new_run(
    mode: str, studies: list[Study], rep: int, a: argparse.Namespace
) -> tuple[list[Study], int, Path, dict[str, Any]]:
    """The relevant priors, their instance count, a fresh scratch directory and the record."""
    wanted = [s for s in studies if s.is_relevant]
    expected = sum(s.instances for s in wanted)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=a.work_dir))
    return wanted, expected, run_dir, {"mode": mode, "rep": rep, "expected": expected}


def run_pacsflow(
    orthanc: Orthanc, studies: list[Study], rep: int, a: argparse.Namespace
) -> dict[str, Any]:
    """ORM -> every relevant prior local, through `pacsflow serve`."""
    wanted, expected, run_dir, rec = _new_run("pacsflow", studies, rep, a)
    node = Node(run_dir, a.pacsflow_port, orthanc, a)
    accession = f"PF{time.strftime('%H%M%S')}{rep:02d}"
    try:
        token = node.create_token("ops", "radiologist")
        node.serve()
        node.priors(token, accession)  # the first call verifies the token (argon2): not timed
        client = node.mllp()
        ts = time.strftime("%Y%m%d%H%M%S")
        if (code := ack_code(client.send(adt_a04(ts, f"A{accession}")))) != "AA":
            raise RuntimeError(f"ADT^A04 answered {code}")
        cpu0, orthanc_cpu0 = node.stats()["cpu_s"], orthanc.cpu()
        t0, t0_wall = time.perf_counter(), time.time()
        reply = client.send(orm_nw(ts, f"O{accession}", accession))
        t_ack = time.perf_counter()
        client.close()
        if (code := ack_code(reply)) != "AA":
            raise RuntimeError(f"ORM^O01 answered {code}")
        t_listed = 0.0
        priors: list[dict[str, Any]] = []
        deadline = t0 + a.timeout
        while time.perf_counter() < deadline:
            priors = node.priors(token, accession)
            now = time.perf_counter()
            if priors and not t_listed:
                t_listed = now
            if len(priors) >= len(wanted) and all(p["state"] == "done" for p in priors):
                break
            time.sleep(a.api_poll)
        t_done = time.perf_counter()
        stats = node.stats()
        instances = node.sql("SELECT count(*) FROM instances")[0][0]
        held = node.sql("SELECT count(*) FROM studies WHERE state != 'published'")[0][0]
        is_all_done = len(priors) == len(wanted) and all(p["state"] == "done" for p in priors)
        if not is_all_done:
            rec.update(ok=False, instances=instances, held_studies=held, priors=priors)
            rec["jobs"] = node.sql("SELECT kind, state, attempts, last_error FROM jobs")
            return rec
        (job_created, job_finished) = node.sql(
            "SELECT created_at, finished_at FROM jobs WHERE kind = 'prefetch'"
        )[0]
        last_done = max(_ts(p["completed_at"]) for p in priors if p["completed_at"])
        # pacsflow's own completion time, not the poll's: the poll interval adds nothing.
        total = last_done.timestamp() - t0_wall
        search = (_ts(job_finished) - _ts(job_created)).total_seconds()
        retrieval = (last_done - _ts(job_finished)).total_seconds()
        rec.update(
            {
                "total_s": round(total, 3),
                "observed_s": round(t_done - t0, 3),
                "ack_ms": round((t_ack - t0) * 1000, 1),
                "listed_s": round(t_listed - t0, 3) if t_listed else None,
                "search_s": round(search, 3),
                "retrieval_s": round(retrieval, 3),
                "latency_s": sorted(round(float(p["latency_seconds"] or 0), 3) for p in priors),
                "states": sorted(p["state"] for p in priors),
                "prior_uids_ok": {p["study_instance_uid"] for p in priors}
                == {s.uid for s in wanted},
                "prior_instances": sum(int(p["instances"]) for p in priors),
                "instances": instances,
                "held_studies": held,
                "inst_per_s": round(instances / total, 1),
                "retrieval_inst_per_s": round(instances / retrieval, 1) if retrieval > 0 else None,
                "pacsflow_cpu_s": round(stats["cpu_s"] - cpu0, 2),
                "pacsflow_hwm_mib": stats["hwm_mib"],
                "orthanc_cpu_s": round(orthanc.cpu() - orthanc_cpu0, 2),
            }
        )
        rec["ok"] = rec["prior_uids_ok"] and instances == expected and held == 0
        if not rec["ok"]:
            rec["priors"] = priors
            rec["jobs"] = node.sql("SELECT kind, state, attempts, last_error FROM jobs")
    finally:
        node.close()
        _finish(run_dir, rec)
    return rec


def _wait_storescp(proc: subprocess.Popen[bytes], port: int) -> None:
    """Until storescp answers a C-ECHO."""

    def answers() -> bool:
        echo = subprocess.run(
            ["echoscu", "-aec", STORESCP_AET, "127.0.0.1", str(port)],
            capture_output=True,
            env=dcmtk_env(),
            check=False,
        )
        return echo.returncode == 0

    wait_until(proc, answers, "storescp", timeout=20)


def movescu_all(
    orthanc: Orthanc, destination: str, studies: list[Study], run_dir: Path, parallel: int
) -> tuple[float, list[int]]:
    """C-MOVE each study to destination, `parallel` movescu at a time; seconds and exit codes."""

    def one(st: Study) -> int:
        with (run_dir / f"movescu-{st.uid[-12:]}.log").open("wb") as log:
            return subprocess.run(
                [
                    "movescu",
                    "-S",
                    "-aet",
                    MOVESCU_AET,
                    "-aec",
                    orthanc.aet,
                    "-aem",
                    destination,
                    "-k",
                    "QueryRetrieveLevel=STUDY",
                    "-k",
                    f"StudyInstanceUID={st.uid}",
                    "127.0.0.1",
                    str(orthanc.dicom_port),
                ],
                stdout=log,
                stderr=log,
                env=dcmtk_env(),
                check=False,
                timeout=1800,
            ).returncode

    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        rcs = list(pool.map(one, studies))
    return time.perf_counter() - t0, rcs


def run_storescp(
    orthanc: Orthanc, studies: list[Study], rep: int, a: argparse.Namespace
) -> dict[str, Any]:
    """movescu: Orthanc -> DCMTK storescp, the same studies."""
    wanted, expected, run_dir, rec = _new_run("storescp", studies, rep, a)
    out = run_dir / "in"
    out.mkdir()
    log = (run_dir / "storescp.log").open("wb")
    scp = subprocess.Popen(
        [
            *("storescp", "--fork", "-dhl", "-aet", STORESCP_AET),
            *("-od", str(out), str(a.storescp_port)),
        ],
        stdout=log,
        stderr=log,
        env=dcmtk_env(),
        start_new_session=True,
    )
    try:
        _wait_storescp(scp, a.storescp_port)
        cpu0 = orthanc.cpu()
        wall, rcs = movescu_all(orthanc, STORESCP_AET, wanted, run_dir, a.movescu_parallel)
        files = sum(1 for _ in out.iterdir())
        rec.update(
            {
                "total_s": round(wall, 3),
                "inst_per_s": round(files / wall, 1),
                "movescu_rc": rcs,
                "instances": files,
                "orthanc_cpu_s": round(orthanc.cpu() - cpu0, 2),
                "ok": all(rc == 0 for rc in rcs) and files == expected,
            }
        )
    finally:
        stop(scp)
        log.close()
        _finish(run_dir, rec)
    return rec


def run_pacsflow_dest(
    orthanc: Orthanc, studies: list[Study], rep: int, a: argparse.Namespace
) -> dict[str, Any]:
    """movescu: Orthanc -> `pacsflow serve` as a plain move destination (ingest alone)."""
    wanted, expected, run_dir, rec = _new_run("pacsflow-dest", studies, rep, a)
    node = Node(run_dir, a.pacsflow_port, orthanc, a)
    try:
        node.serve()
        cpu0, orthanc_cpu0 = node.stats()["cpu_s"], orthanc.cpu()
        wall, rcs = movescu_all(orthanc, PACSFLOW_AET, wanted, run_dir, a.movescu_parallel)
        stats = node.stats()
        instances = node.sql("SELECT count(*) FROM instances")[0][0]
        rec.update(
            {
                "total_s": round(wall, 3),
                "inst_per_s": round(instances / wall, 1),
                "movescu_rc": rcs,
                "instances": instances,
                "pacsflow_cpu_s": round(stats["cpu_s"] - cpu0, 2),
                "pacsflow_hwm_mib": stats["hwm_mib"],
                "orthanc_cpu_s": round(orthanc.cpu() - orthanc_cpu0, 2),
                "ok": all(rc == 0 for rc in rcs) and instances == expected,
            }
        )
    finally:
        node.close()
        _finish(run_dir, rec)
    return rec


def _finish(run_dir: Path, rec: dict[str, Any]) -> None:
    """Remove a good run's directory; keep a failed one's (logs) and say where."""
    keep_if_failed(run_dir, bool(rec.get("ok")))
    os.sync()  # the next run does not pay for this one's dirty pages


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per mode and the pacsflow/movescu ratios."""
    out: dict[str, Any] = {}
    for mode in MODES:
        rs = [r for r in records if r["mode"] == mode]
        ok = [r for r in rs if r.get("ok")]
        if not rs:
            continue
        times = [r["total_s"] for r in ok]
        row: dict[str, Any] = {"runs_ok": f"{len(ok)}/{len(rs)}"}
        if times:
            row.update(
                {
                    "total_s_median": round(statistics.median(times), 3),
                    "total_s_min": min(times),
                    "total_s_max": max(times),
                    "inst_per_s_median": statistics.median(r["inst_per_s"] for r in ok),
                    "orthanc_cpu_s_median": statistics.median(r["orthanc_cpu_s"] for r in ok),
                }
            )
        if mode == "pacsflow" and ok:
            lat = [x for r in ok for x in r["latency_s"]]
            row.update(
                {
                    "ack_ms_median": statistics.median(r["ack_ms"] for r in ok),
                    "search_s_median": statistics.median(r["search_s"] for r in ok),
                    "retrieval_s_median": statistics.median(r["retrieval_s"] for r in ok),
                    "retrieval_inst_per_s_median": statistics.median(
                        r["retrieval_inst_per_s"] for r in ok
                    ),
                    "prior_latency_s_median": round(statistics.median(lat), 3),
                    "prior_latency_s_max": max(lat),
                    "pacsflow_cpu_s_median": statistics.median(r["pacsflow_cpu_s"] for r in ok),
                    "pacsflow_hwm_mib_max": max(r["pacsflow_hwm_mib"] for r in ok),
                }
            )
        if mode == "pacsflow-dest" and ok:
            row["pacsflow_cpu_s_median"] = statistics.median(r["pacsflow_cpu_s"] for r in ok)
        out[mode] = row
    pf, scp = out.get("pacsflow", {}), out.get("storescp", {})
    dest = out.get("pacsflow-dest", {})
    if pf.get("total_s_median") and scp.get("total_s_median"):
        out["ratio_pacsflow_over_movescu"] = round(pf["total_s_median"] / scp["total_s_median"], 2)
    if dest.get("total_s_median") and scp.get("total_s_median"):
        out["ratio_dest_over_storescp"] = round(dest["total_s_median"] / scp["total_s_median"], 2)
    return out


def main() -> None:
    """Build the archive, run the reps, print and save results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--priors", type=int, default=5, help="relevant prior studies")
    ap.add_argument("--instances", type=int, default=200, help="instances per prior")
    ap.add_argument("--irrelevant-instances", type=int, default=20, help="0: no such studies")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--workers", type=int, default=2, help="pacsflow job_workers")
    ap.add_argument("--peer-jobs", type=int, default=2, help="the peer's max_concurrent_jobs")
    ap.add_argument("--poll", type=float, default=0.05, help="pacsflow job_poll_seconds")
    ap.add_argument("--api-poll", type=float, default=0.5, help="GET /api/priors interval")
    ap.add_argument("--movescu-parallel", type=int, default=0, help="default: --peer-jobs")
    ap.add_argument("--timeout", type=float, default=900, help="per pacsflow run, seconds")
    ap.add_argument("--work-dir", type=Path, default=None, help="scratch (corpus, servers)")
    ap.add_argument("--out", type=Path, default=None, help="append one JSON line per run")
    a = ap.parse_args()
    a.movescu_parallel = a.movescu_parallel or a.peer_jobs
    modes = [m for m in a.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        sys.exit(f"unknown modes: {sorted(unknown)}; known: {', '.join(MODES)}")
    ensure_netns()
    for tool in ("Orthanc", "storescu", "storescp", "movescu", "echoscu"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install -y dcmtk orthanc (not as a service)")
    own_work_dir = scratch(a, "pf-bench-prefetch-")
    # Orthanc's DicomModalities needs both destinations' ports before it starts.
    a.pacsflow_port, a.storescp_port = free_ports(2)
    info = machine()
    print(json.dumps(info), flush=True)
    studies = plan(a.priors, a.instances, a.irrelevant_instances)
    params = {
        "priors": a.priors,
        "instances_per_prior": a.instances,
        "irrelevant_instances": a.irrelevant_instances,
        "workers": a.workers,
        "peer_jobs": a.peer_jobs,
        "poll": a.poll,
        "api_poll": a.api_poll,
        "movescu_parallel": a.movescu_parallel,
    }
    records: list[dict[str, Any]] = []
    out = a.out.open("a") if a.out else None
    orthanc: Orthanc | None = None
    is_clean = False
    try:
        t0 = time.perf_counter()
        files, size = write_corpus(a.work_dir / "corpus", studies, date.today())
        print(
            f"corpus: {files} files, {size / 1e6:.0f} MB in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        orthanc = start_archive(a.work_dir / "orthanc", a.pacsflow_port, a.storescp_port)
        load_s = load(orthanc, a.work_dir / "corpus")
        if (stored := orthanc.count()) != files:
            raise RuntimeError(f"Orthanc stored {stored} of {files}")
        print(f"Orthanc loaded: {files} instances in {load_s:.1f} s", flush=True)
        shutil.rmtree(a.work_dir / "corpus")
        runners = {
            "pacsflow": run_pacsflow,
            "storescp": run_storescp,
            "pacsflow-dest": run_pacsflow_dest,
        }
        for rep in range(a.reps):
            # Rotated each rep, so that no mode always runs first after a sync or last.
            for mode in modes[rep % len(modes) :] + modes[: rep % len(modes)]:
                rec = runners[mode](orthanc, studies, rep, a)
                rec.update(params, ts=time.strftime("%Y-%m-%dT%H:%M:%S%z"), machine=info)
                save(rec, records, out)
                print(
                    f"{mode:13s} rep={rep} {rec.get('total_s', 0):7.2f} s"
                    f" {rec.get('inst_per_s', 0):6.1f} inst/s"
                    f" instances={rec.get('instances')}/{rec['expected']} ok={rec.get('ok')}"
                    + (
                        f" search={rec['search_s']} s retrieval={rec['retrieval_s']} s"
                        f" latencies={rec['latency_s']}"
                        if mode == "pacsflow" and "search_s" in rec
                        else ""
                    ),
                    flush=True,
                )
        is_clean = all(r.get("ok") for r in records)
    finally:
        if orthanc is not None:
            orthanc.stop()
        if own_work_dir and is_clean:
            shutil.rmtree(a.work_dir, ignore_errors=True)
        if out:
            out.close()
    summary = summarize(records)
    summary.update(mode="summary", params=params, machine=info)
    print(json.dumps(summary, indent=1))
    if a.out:
        with a.out.open("a") as fh:
            fh.write(json.dumps(summary) + "\n")
    print(f"\nrepo: {REPO}")


if __name__ == "__main__":
    main()
