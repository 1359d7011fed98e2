"""Forwarding throughput: storescu -> pacsflow -> Orthanc against storescu -> Orthanc, one run.

Three measurements per corpus and rep, each with freshly started servers and fresh data dirs:

* **direct**: DCMTK `storescu` (1 association) sends the corpus straight to Orthanc 1.10; time
  from spawn until Orthanc's /statistics counts every instance.
* **relay**: `storescu` sends the same files to `pacsflow serve`, whose active routing rules
  forward every instance to a second fresh Orthanc; time from spawn until that Orthanc counts
  every instance (end to end). The client's own exit time (pacsflow's ingest) and how many
  instances Orthanc already had by then are recorded too.
* **forward** (forwarding alone): pacsflow ingests the corpus with the rules active but no job
  worker (`PACSFLOW_JOB_WORKERS=0`), so one route_instance job per instance waits in its queue;
  then pacsflow is restarted on the same data dir with the workers, and the time from its
  health check answering (the worker starts with the listeners) until Orthanc counts every
  instance is the forwarding time.

pacsflow forwards only instances of *published* studies (matched to an order); held studies
are never routed. So before the C-STOREs, one ORM^O01 new order per study is sent over MLLP
with the study's own patient ID, name, birth date, sex, accession number and Study Instance
UID (read from its first file): the corpus is sent unchanged to both targets. The rules
(`send_to: [ORTHANC]`, no condition, real-time trigger) are saved and activated over the HTTP
API with an admin token made by `pacsflow users create` / `pacsflow tokens create`.

pacsflow runs as a `pacsflow serve` subprocess (it and storescu do not share a GIL), SQLite +
files, `--workers` (PACSFLOW_JOB_WORKERS), `--poll` (PACSFLOW_JOB_POLL_SECONDS) and
`--peer-jobs` (the Orthanc peer's max_concurrent_jobs). Orthanc: bench_ingest's configuration
(SyncStorageArea true, 16 KiB PDU, 4 DICOM threads). After each run the counts are checked:
pacsflow's index has every instance, its forwards table says every one was sent, Orthanc has
every one. Medians over --reps; the ratio is pacsflow's rate over storescu's.

Runs itself inside `unshare -n` (loopback only; needs root).  TCP_NODELAY=1 is exported to
storescu and Orthanc (Debian's DCMTK leaves Nagle on otherwise); pacsflow sets it itself.

usage: python benchmarks/bench_forward.py [--corpora ct,small] [--small-studies-used 10]
           [--modes direct,relay,forward] [--reps 1] [--workers 2] [--peer-jobs 2]
           [--poll 0.25] [--out results.jsonl]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    Orthanc,
    PacsflowNode,
    dcmtk_env,
    ensure_netns,
    hl7,
    keep_if_failed,
    machine,
    proc_status,
    scratch,
    start_orthanc,
)
from bench_ingest import add_corpus_arguments, ensure_corpus, study_dirs, warm_cache
from pydicom import dcmread

FORWARD_ALL = """\
rules:
  - name: everything-to-orthanc
    description: bench_forward.py, every instance to the archive as it arrives
    send_to: [ORTHANC]
"""

MODES = ("direct", "relay", "forward")


@dataclass(frozen=True)
class Knobs:
    """pacsflow's job settings under test."""

    workers: int
    peer_jobs: int
    poll: float


class Node(PacsflowNode):
    """`pacsflow serve` forwarding to one Orthanc: its rules, orders and counts."""

    def activate_rules(self, token: str) -> None:
        """Save and activate FORWARD_ALL over the API."""
        body = {"text": FORWARD_ALL, "activate": True, "comment": "bench"}
        self.api(token, "/api/routing/versions", body, expect=201)

    def place_orders(self, dirs: list[Path]) -> None:
        """One ORM^O01 new order per study, with the study's own identifiers."""
        with self.mllp() as client:
            for i, d in enumerate(dirs):
                first = min(d.rglob("*.dcm"))
                reply = client.send(orm(i, dcmread(first, stop_before_pixels=True)))
                if b"MSA|AA" not in reply:
                    raise RuntimeError(f"order for {d.name} refused: {reply[:300]!r}")

    def counts(self) -> dict[str, Any]:
        """Instances indexed, forwards by state, jobs by kind and state (read from SQLite)."""
        [(instances,)] = self.sql("SELECT count(*) FROM instances")
        forwards = dict(self.sql("SELECT state, count(*) FROM forwards GROUP BY state"))
        jobs = {
            f"{kind}:{state}": n
            for kind, state, n in self.sql(
                "SELECT kind, state, count(*) FROM jobs GROUP BY kind, state"
            )
        }
        [(held,)] = self.sql("SELECT count(*) FROM studies WHERE state != 'published'")
        return {"instances": instances, "forwards": forwards, "jobs": jobs, "held_studies": held}


def orm(i: int, ds: Any) -> bytes:
    """An ORM^O01 new order matching a study: PID from its patient, OBR-18 and ZDS from it."""
    ts = time.strftime("%Y%m%d%H%M%S")
    acc = str(ds.AccessionNumber)
    return hl7(
        f"MSH|^~\\&|RIS|RADIOLOGY|PACSFLOW|RADIOLOGY|{ts}||ORM^O01|FWD{ts}{i:05d}|P|2.3.1",
        f"PID|1||{ds.PatientID}^^^HOSP^MR||{ds.PatientName}||{ds.PatientBirthDate}|{ds.PatientSex}",
        "PV1|1|O||||||5678^WELBY^MARCUS^A^^DR",
        f"ORC|NW|PLC{acc}^EPIC|FIL{acc}^RIS||SC||^^^{ts}^^S",
        f"OBR|1|PLC{acc}^EPIC|FIL{acc}^RIS|BENCH^bench study^LOCAL|||"
        f"|||||||||9999^HOUSE^GREGORY||{acc}|RP{i}|SPS{i}||||{ds.Modality}|||^^^{ts}^^S",
        f"ZDS|{ds.StudyInstanceUID}^^Application^DICOM",
    )


@dataclass
class Timed:
    """perf_counter times of one transfer: start, client exit, first and last at Orthanc."""

    t0: float
    client_exit: float = 0.0
    client_rc: int = -1
    first: float = 0.0
    done: float = 0.0
    at_client_exit: int = 0


def storescu(aet: str, port: int, dirs: list[Path], log: Path) -> subprocess.Popen[bytes]:
    """Start one storescu association sending every file under dirs."""
    out = log.open("wb")
    cmd = ["storescu", "-aec", aet, "+sd", "+r", "127.0.0.1", str(port), *map(str, dirs)]
    return subprocess.Popen(cmd, stdout=out, stderr=out, env=dcmtk_env())


def watch(
    orthanc: Orthanc,
    n: int,
    t0: float,
    timeout: float,
    client: subprocess.Popen[bytes] | None = None,
) -> Timed:
    """Poll Orthanc's count every 50 ms until it has n instances (and the client has exited)."""
    timed = Timed(t0)
    exited = threading.Event()

    def wait_client() -> None:
        assert client is not None
        timed.client_rc = client.wait()
        timed.client_exit = time.perf_counter()
        exited.set()

    if client is not None:
        threading.Thread(target=wait_client, daemon=True).start()
    else:
        exited.set()
    deadline = t0 + timeout
    while True:
        now = time.perf_counter()
        count = orthanc.count()
        if count and not timed.first:
            timed.first = now
        if exited.is_set() and not timed.at_client_exit and client is not None:
            timed.at_client_exit = count
        if count >= n:
            timed.done = now
            break
        if now > deadline or (exited.is_set() and client is not None and timed.client_rc != 0):
            break
        time.sleep(0.05)
    if client is not None:
        exited.wait(max(0.0, deadline - time.perf_counter()))
        if client.poll() is None:
            client.kill()
            client.wait()
    return timed


def rate(n: int, seconds: float) -> float:
    """Instances per second, 0 when not measured."""
    return round(n / seconds, 1) if seconds > 0 else 0.0


def run_direct(dirs: list[Path], n: int, run_dir: Path, a: argparse.Namespace) -> dict[str, Any]:
    """storescu -> Orthanc."""
    orthanc = start_orthanc(run_dir / "orthanc")
    try:
        before = proc_status(orthanc.proc.pid)
        t0 = time.perf_counter()
        client = storescu(orthanc.aet, orthanc.dicom_port, dirs, run_dir / "storescu.log")
        timed = watch(orthanc, n, t0, a.timeout, client)
        after = proc_status(orthanc.proc.pid)
        stored = orthanc.count()
    finally:
        orthanc.stop()
    wall = (timed.done or time.perf_counter()) - t0
    return {
        "wall_s": round(wall, 3),
        "inst_per_s": rate(n, wall) if timed.done else 0.0,
        "client_s": round(timed.client_exit - t0, 3),
        "orthanc_cpu_s": round(after.get("cpu_s", 0) - before.get("cpu_s", 0), 2),
        "orthanc_stored": stored,
        "ok": timed.client_rc == 0 and stored == n,
    }


@contextmanager
def relay(
    run_dir: Path, dirs: list[Path], knobs: Knobs, *, workers: int
) -> Iterator[tuple[Orthanc, Node]]:
    """A fresh Orthanc and a started pacsflow toward it (admin token, the rules active and one
    order per study); both stopped after."""
    orthanc = start_orthanc(run_dir / "orthanc")
    node: Node | None = None
    try:
        peer = {
            "ae_title": "ORTHANC",
            "host": "127.0.0.1",
            "port": orthanc.dicom_port,
            "max_concurrent_jobs": knobs.peer_jobs,
        }
        node = Node.from_env(
            run_dir,
            peers=json.dumps([peer]),
            job_workers=str(workers),
            job_poll_seconds=str(knobs.poll),
        )
        token = node.create_token("bench", "admin", "--name", "bench_forward", "--days", "1")
        node.serve()
        node.activate_rules(token)
        node.place_orders(dirs)
        yield orthanc, node
    finally:
        if node is not None:
            node.close()
        orthanc.stop()


def pacsflow_side(node: Node, orthanc: Orthanc, before: dict[str, float]) -> dict[str, Any]:
    """pacsflow's CPU since before and peak RSS, then stopped, its counts; Orthanc's count."""
    assert node.proc is not None
    after = proc_status(node.proc.pid)
    stored = orthanc.count()
    node.stop()
    return {
        "pacsflow_cpu_s": round(after.get("cpu_s", 0) - before.get("cpu_s", 0), 2),
        "pacsflow_hwm_mib": round(after.get("VmHWM", 0) / 1024, 1),
        "pacsflow": node.counts(),
        "orthanc_stored": stored,
    }


def run_relay(
    dirs: list[Path], n: int, run_dir: Path, knobs: Knobs, a: argparse.Namespace
) -> dict[str, Any]:
    """storescu -> pacsflow -> Orthanc, end to end."""
    with relay(run_dir, dirs, knobs, workers=knobs.workers) as (orthanc, node):
        assert node.proc is not None
        before = proc_status(node.proc.pid)
        t0 = time.perf_counter()
        client = storescu("PACSFLOW", node.dicom_port, dirs, run_dir / "storescu.log")
        timed = watch(orthanc, n, t0, a.timeout, client)
        side = pacsflow_side(node, orthanc, before)
    wall = (timed.done or time.perf_counter()) - t0
    client_s = timed.client_exit - t0
    counts = side["pacsflow"]
    return {
        "wall_s": round(wall, 3),
        "inst_per_s": rate(n, wall) if timed.done else 0.0,
        "ingest_s": round(client_s, 3),
        "ingest_inst_per_s": rate(n, client_s),
        "orthanc_at_ingest_end": timed.at_client_exit,
        "first_at_orthanc_s": round(timed.first - t0, 3) if timed.first else None,
        **side,
        "ok": timed.client_rc == 0
        and side["orthanc_stored"] == n
        and counts["instances"] == n
        and counts["forwards"].get("sent") == n,
    }


def run_forward(
    dirs: list[Path], n: int, run_dir: Path, knobs: Knobs, a: argparse.Namespace
) -> dict[str, Any]:
    """Ingest with no job worker, then restart pacsflow with workers: forwarding alone."""
    with relay(run_dir, dirs, knobs, workers=0) as (orthanc, node):
        t_load = time.perf_counter()
        rc = storescu("PACSFLOW", node.dicom_port, dirs, run_dir / "storescu.log").wait(a.timeout)
        load_s = time.perf_counter() - t_load
        node.stop()
        queued = node.counts()
        if rc != 0 or queued["instances"] != n or orthanc.count() != 0:
            raise RuntimeError(f"pre-load failed: storescu rc={rc}, pacsflow {queued}")
        node.env["PACSFLOW_JOB_WORKERS"] = str(knobs.workers)
        t_spawn = time.perf_counter()
        t_ready = node.serve()
        assert node.proc is not None
        before = proc_status(node.proc.pid)
        timed = watch(orthanc, n, t_ready, a.timeout)
        side = pacsflow_side(node, orthanc, before)
    wall = (timed.done or time.perf_counter()) - t_ready
    return {
        "wall_s": round(wall, 3),
        "inst_per_s": rate(n, wall) if timed.done else 0.0,
        "preload_ingest_s": round(load_s, 3),
        "preload_ingest_inst_per_s": rate(n, load_s),
        "startup_s": round(t_ready - t_spawn, 3),
        # Jobs run oldest first: every route_instance job before the first forward job.
        "first_at_orthanc_s": round(timed.first - t_ready, 3) if timed.first else None,
        "send_phase_inst_per_s": rate(n - 1, timed.done - timed.first) if timed.done else 0.0,
        "queued_jobs": queued["jobs"],
        **side,
        "ok": side["orthanc_stored"] == n and side["pacsflow"]["forwards"].get("sent") == n,
    }


def one_run(
    mode: str, corpus: str, dirs: list[Path], knobs: Knobs, a: argparse.Namespace
) -> dict[str, Any]:
    """One measurement in a fresh scratch directory, kept only if it failed."""
    files = [f for d in dirs for f in d.rglob("*.dcm")]
    n = len(files)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{mode}-{corpus}-", dir=a.work_dir))
    rec: dict[str, Any] = {"mode": mode, "corpus": corpus, "files": n}
    rec["bytes"] = sum(f.stat().st_size for f in files)
    try:
        if mode == "direct":
            rec.update(run_direct(dirs, n, run_dir, a))
        elif mode == "relay":
            rec.update(run_relay(dirs, n, run_dir, knobs, a))
        else:
            rec.update(run_forward(dirs, n, run_dir, knobs, a))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        rec.update({"ok": False, "error": str(exc)[-2000:]})
    keep_if_failed(run_dir, bool(rec.get("ok")))
    return rec


def summary(corpus: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per mode (and of the side rates) and the pacsflow/storescu ratios."""
    out: dict[str, Any] = {}
    for mode in MODES:
        rs = [r for r in records if r["corpus"] == corpus and r["mode"] == mode]
        if not rs:
            continue
        ok = [r for r in rs if r.get("ok")]
        rates = [r["inst_per_s"] for r in ok]
        out[mode] = {
            "runs_ok": f"{len(ok)}/{len(rs)}",
            "inst_per_s": statistics.median(rates) if rates else 0.0,
            "min": min(rates, default=0.0),
            "max": max(rates, default=0.0),
        }
        for side in ("ingest_inst_per_s", "preload_ingest_inst_per_s", "pacsflow_cpu_s"):
            values = [r[side] for r in ok if side in r]
            if values:
                out[mode][side] = statistics.median(values)
    direct = out.get("direct", {}).get("inst_per_s")
    for mode in ("relay", "forward"):
        if direct and mode in out:
            out[mode]["pacsflow_over_storescu"] = round(out[mode]["inst_per_s"] / direct, 3)
    return out


def table(summaries: dict[str, dict[str, Any]]) -> str:
    """The summaries as a Markdown table."""
    lines = [
        "| corpus | path | runs ok | inst/s median (min-max) | pacsflow/storescu"
        " | pacsflow ingest inst/s | pacsflow CPU s |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {
        "direct": "storescu -> Orthanc",
        "relay": "storescu -> pacsflow -> Orthanc",
        "forward": "pacsflow -> Orthanc (queued)",
    }
    for corpus, by_mode in summaries.items():
        for mode, m in by_mode.items():
            ratio = m.get("pacsflow_over_storescu")
            ingest = m.get("ingest_inst_per_s", m.get("preload_ingest_inst_per_s"))
            lines.append(
                f"| {corpus} | {names[mode]} | {m['runs_ok']} | **{m['inst_per_s']:.1f}**"
                f" ({m['min']:.0f}-{m['max']:.0f}) | {f'{ratio:.2f}x' if ratio else ''}"
                f" | {f'{ingest:.0f}' if ingest else ''}"
                f" | {m.get('pacsflow_cpu_s', '')} |"
            )
    lines.append(
        "\nIngest: relay = storescu -> pacsflow while the jobs run; queued = the pre-load, with"
        " no job worker."
    )
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run the measurements, print and save results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_corpus_arguments(ap)
    ap.add_argument(
        "--ct-studies-used", type=int, default=0, help="send only the first N ct studies (0 all)"
    )
    ap.add_argument(
        "--small-studies-used", type=int, default=10, help="send only the first N small studies"
    )
    ap.add_argument("--corpora", default="ct,small")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2, help="PACSFLOW_JOB_WORKERS")
    ap.add_argument("--peer-jobs", type=int, default=2, help="the peer's max_concurrent_jobs")
    ap.add_argument("--poll", type=float, default=0.25, help="PACSFLOW_JOB_POLL_SECONDS")
    ap.add_argument("--timeout", type=float, default=600, help="per transfer, seconds")
    ap.add_argument("--out", type=Path, default=None, help="append one JSON line per corpus")
    a = ap.parse_args()
    ensure_netns()
    if shutil.which("Orthanc") is None or shutil.which("storescu") is None:
        sys.exit("needs Orthanc and storescu: apt-get install -y orthanc dcmtk")
    ensure_corpus(a.corpus_dir, a.ct_studies, a.small_studies)
    own_work_dir = scratch(a, "pf-forward-")
    knobs = Knobs(a.workers, a.peer_jobs, a.poll)
    info = machine()
    print(json.dumps(info), flush=True)
    corpora = a.corpora.split(",")
    used = {"ct": a.ct_studies_used, "small": a.small_studies_used}
    dirs = {c: study_dirs(a.corpus_dir, c)[: used.get(c) or None] for c in corpora}
    for c in corpora:
        warm_cache([f for d in dirs[c] for f in d.rglob("*.dcm")])
    records: list[dict[str, Any]] = []
    try:
        for rep in range(a.reps):
            for corpus in corpora:
                for mode in a.modes.split(","):
                    rec = one_run(mode, corpus, dirs[corpus], knobs, a)
                    rec.update({"rep": rep, "ts": time.strftime("%Y-%m-%dT%H:%M:%S")})
                    records.append(rec)
                    extra = ""
                    if mode == "relay":
                        extra = (
                            f" ingest {rec.get('ingest_inst_per_s', 0):6.1f} inst/s,"
                            f" {rec.get('orthanc_at_ingest_end')} forwarded by then"
                        )
                    elif mode == "forward":
                        extra = (
                            f" (pre-load ingest, no workers:"
                            f" {rec.get('preload_ingest_inst_per_s', 0):6.1f} inst/s)"
                        )
                    print(
                        f"{mode:8s} {corpus:5s} rep={rep} n={rec['files']}"
                        f" {rec.get('inst_per_s', 0):7.1f} inst/s wall={rec.get('wall_s')}s"
                        f"{extra} ok={rec.get('ok')}",
                        flush=True,
                    )
    finally:
        if own_work_dir and all(r.get("ok") for r in records):
            shutil.rmtree(a.work_dir, ignore_errors=True)
    lines = []
    for corpus in corpora:
        runs = [r for r in records if r["corpus"] == corpus]
        lines.append(
            {
                "bench": "forward",
                "machine": info,
                "date": info["date"],
                "corpus": corpus,
                "n": next((r["files"] for r in runs), 0),
                "studies": len(dirs[corpus]),
                "reps": a.reps,
                "workers": knobs.workers,
                "peer_max_concurrent_jobs": knobs.peer_jobs,
                "job_poll_seconds": knobs.poll,
                "summary": summary(corpus, records),
                "runs": runs,
            }
        )
    print()
    print(table({r["corpus"]: r["summary"] for r in lines}))
    if a.out:
        with a.out.open("a") as out:
            for result in lines:
                out.write(json.dumps(result) + "\n")
    print(f"\nrepo: {REPO}")


if __name__ == "__main__":
    main()
