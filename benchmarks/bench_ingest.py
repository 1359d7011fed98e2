"""C-STORE ingest benchmark: DCMTK storescu -> pacsflow and Orthanc 1.10, same corpora, one run.

Every measurement: a fresh data directory and a freshly started server (pacsflow: `pacsflow
serve` with the embedded defaults, SQLite + files, waiting for GET /healthz 200; Orthanc: the
peer harness's config, SQLite index, SyncStorageArea true), then `storescu` (1 association, or
N in parallel, each with a share of the study directories) is timed from spawn to exit, the
stored count is checked (pacsflow: its SQLite index, SELECT count(*) FROM instances; Orthanc:
/statistics), the server's VmHWM (peak RSS) and CPU time are read from /proc, and the
server is stopped by PID.  Repetition is the outer loop; the summary quotes medians.

The corpora carry no orders that pacsflow knows, so every study is held in pacsflow's exceptions
queue: still durably stored and indexed, only invisible to clinical queries until reconciled.

Runs itself inside `unshare -n` (loopback only; needs root).  TCP_NODELAY=1 is exported to
storescu and Orthanc (Debian's DCMTK leaves Nagle on otherwise); pacsflow sets it itself.

usage: python benchmarks/bench_ingest.py [--corpus-dir DIR] [--reps 3] [--targets pacsflow,orthanc]
           [--corpora ct,small] [--parallel 1,4] [--out results.jsonl]
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
import threading
import time
from pathlib import Path
from typing import Any

from _common import (
    ORTHANC_CONFIG,
    PACSFLOW,
    REPO,
    dcmtk_env,
    ensure_netns,
    free_ports,
    http_json,
    machine,
    pacsflow_env,
    proc_status,
    save,
    scratch,
    spawn,
    sqlite_rows,
    stop,
    wait_http_ok,
)

HERE = Path(__file__).resolve().parent


class Server:
    """A server under test, started fresh in run_dir."""

    aet: str
    dicom_port: int
    proc: subprocess.Popen[bytes]

    def __init__(self, target: str, run_dir: Path) -> None:
        self.target = target
        self.run_dir = run_dir
        self._log = (run_dir / "server.log").open("wb")
        if target == "pacsflow":
            self.aet = "PACSFLOW"
            self.dicom_port, hl7, self.http_port = free_ports(3)
            env = pacsflow_env(run_dir / "data", self.dicom_port, hl7, self.http_port)
            cmd = [str(PACSFLOW), "serve"]
        elif target == "orthanc":
            self.aet = "ORTHANC"
            self.dicom_port, self.http_port = free_ports(2)
            cfg = dict(ORTHANC_CONFIG, DicomPort=self.dicom_port, HttpPort=self.http_port)
            (run_dir / "orthanc.json").write_text(json.dumps(cfg, indent=1))
            env = dcmtk_env()
            cmd = ["Orthanc", str(run_dir / "orthanc.json")]
        else:
            raise ValueError(target)
        self.proc = spawn(cmd, run_dir, self._log, env)

    def wait_ready(self) -> None:
        """Block until the server answers its health check."""
        path = "/healthz" if self.target == "pacsflow" else "/system"
        wait_http_ok(self.proc, f"http://127.0.0.1:{self.http_port}{path}")

    def stored(self) -> int:
        """How many instances the server says it has stored and indexed."""
        base = f"http://127.0.0.1:{self.http_port}"
        if self.target == "orthanc":
            return int(http_json(f"{base}/statistics")["CountInstances"])
        # The index itself (the HTTP API needs a token): instances committed, with their blobs.
        [(count,)] = sqlite_rows(
            self.run_dir / "data" / "pacsflow.db", "SELECT count(*) FROM instances"
        )
        return int(count)

    def stop(self) -> None:
        """Stop the server by PID and close its log."""
        stop(self.proc)
        self._log.close()


def study_dirs(corpus_dir: Path, corpus: str) -> list[Path]:
    """The study directories of a corpus, sorted."""
    return sorted(p for p in (corpus_dir / corpus).iterdir() if p.is_dir())


def corpus_files(corpus_dir: Path, corpus: str) -> list[Path]:
    """Every file of a corpus."""
    return sorted(p for p in (corpus_dir / corpus).rglob("*.dcm"))


def warm_cache(files: list[Path]) -> None:
    """Read the corpus once so that the client's disk reads are not timed."""
    for f in files:
        f.read_bytes()


def one_run(
    target: str, corpus: str, parallel: int, rep: int, a: argparse.Namespace
) -> dict[str, Any]:
    """Start a fresh server, time storescu, verify, measure, stop; one result record."""
    files = corpus_files(a.corpus_dir, corpus)
    n_files, n_bytes = len(files), sum(f.stat().st_size for f in files)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{target}-{corpus}-", dir=a.work_dir))
    server = Server(target, run_dir)
    rec: dict[str, Any] = {
        "target": target,
        "corpus": corpus,
        "parallel": parallel,
        "rep": rep,
        "files": n_files,
        "bytes": n_bytes,
    }
    clients: list[subprocess.Popen[bytes]] = []
    killer: threading.Timer | None = None
    try:
        server.wait_ready()
        before = proc_status(server.proc.pid)
        dirs = study_dirs(a.corpus_dir, corpus)
        groups = [dirs[i::parallel] for i in range(parallel)]
        t0 = time.perf_counter()
        for i, group in enumerate(groups):
            log = (run_dir / f"storescu{i}.log").open("wb")
            cmd = [
                "storescu",
                "-aec",
                server.aet,
                "+sd",
                "+r",
                "127.0.0.1",
                str(server.dicom_port),
                *map(str, group),
            ]
            clients.append(subprocess.Popen(cmd, stdout=log, stderr=log, env=dcmtk_env()))
        killer = threading.Timer(a.client_timeout, lambda: [c.kill() for c in clients])
        killer.daemon = True
        killer.start()
        rcs = [c.wait() for c in clients]
        wall = time.perf_counter() - t0
        after = proc_status(server.proc.pid)
        stored = server.stored()
        rec.update(
            {
                "wall_s": round(wall, 3),
                "inst_per_s": round(n_files / wall, 1),
                "MB_per_s": round(n_bytes / wall / 1e6, 1),
                "client_rc": rcs,
                "server_cpu_s": round(after.get("cpu_s", 0) - before.get("cpu_s", 0), 2),
                "server_hwm_mib": round(after.get("VmHWM", 0) / 1024, 1),
                "stored": stored,
                "ok": all(rc == 0 for rc in rcs) and stored == n_files,
            }
        )
        if not rec["ok"]:
            for log_file in sorted(run_dir.glob("*.log")):
                tail = log_file.read_bytes()[-800:].decode(errors="replace")
                print(f"--- {log_file.name}\n{tail}", file=sys.stderr)
    finally:
        if killer is not None:
            killer.cancel()
        for c in clients:
            if c.poll() is None:
                c.kill()
                c.wait()
        server.stop()
        if rec.get("ok"):
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            print(f"kept {run_dir} for inspection", file=sys.stderr)
        os.sync()
    return rec


def paired_ratios(records: list[dict[str, Any]], corpus: str, par: int) -> str:
    """pacsflow/Orthanc of each rep (run back to back), their median first: on a shared VM
    the two servers' rates drift together, so the paired ratio is steadier than medians."""
    rate = {
        (r["target"], r["rep"]): r["inst_per_s"]
        for r in records
        if (r["corpus"], r["parallel"]) == (corpus, par) and r.get("ok")
    }
    ratios = [
        rate[("pacsflow", rep)] / rate[("orthanc", rep)]
        for rep in sorted({rep for _, rep in rate})
        if ("pacsflow", rep) in rate and rate.get(("orthanc", rep))
    ]
    if not ratios:
        return "-"
    each = ", ".join(f"{x:.2f}" for x in ratios)
    return f"median {statistics.median(ratios):.2f}x ({each})"


def summarize(records: list[dict[str, Any]]) -> str:
    """Medians per (corpus, parallel, target) and the pacsflow/Orthanc ratio, as Markdown."""
    keys = sorted({(r["corpus"], r["parallel"]) for r in records})
    lines = [
        "| corpus | assocs | target | runs ok | inst/s median (min-max) | MB/s | server CPU s"
        " | peak RSS MiB (max) | pacsflow/Orthanc (of medians; per rep) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for corpus, par in keys:
        med: dict[str, float] = {}
        rows = []
        for target in ("pacsflow", "orthanc"):
            rs = [
                r
                for r in records
                if (r["corpus"], r["parallel"], r["target"]) == (corpus, par, target)
            ]
            ok = [r for r in rs if r.get("ok")]
            if not rs:
                continue
            rates = [r["inst_per_s"] for r in ok] or [0.0]
            med[target] = statistics.median(rates)
            mbs = statistics.median([r["MB_per_s"] for r in ok] or [0.0])
            cpu = statistics.median([r["server_cpu_s"] for r in ok] or [0.0])
            hwm = max([r["server_hwm_mib"] for r in ok] or [0.0])
            rows.append(
                f"| {corpus} | {par} | {target} | {len(ok)}/{len(rs)} | **{med[target]:.0f}**"
                f" ({min(rates):.0f}-{max(rates):.0f}) | {mbs:.1f} | {cpu:.2f} | {hwm:.0f} |"
            )
        ratio = (
            f"{med['pacsflow'] / med['orthanc']:.2f}x; {paired_ratios(records, corpus, par)}"
            if med.get("orthanc") and "pacsflow" in med
            else ""
        )
        lines += [
            row + (f" {ratio} |" if row.split("|")[3].strip() == "pacsflow" else " |")
            for row in rows
        ]
    return "\n".join(lines)


def add_corpus_arguments(ap: argparse.ArgumentParser) -> None:
    """--corpus-dir, --work-dir and the corpora's sizes when ensure_corpus generates them."""
    ap.add_argument("--corpus-dir", type=Path, default=Path(tempfile.gettempdir()) / "pf-corpus")
    ap.add_argument("--work-dir", type=Path, default=None, help="scratch for server data")
    ap.add_argument("--ct-studies", type=int, default=5, help="x 100 files when generating")
    ap.add_argument("--small-studies", type=int, default=40, help="x 50 files when generating")


def ensure_corpus(corpus_dir: Path, ct_studies: int, small_studies: int) -> None:
    """Generate the corpora with gen_corpus.py unless they exist."""
    for name, studies in (("ct", ct_studies), ("small", small_studies)):
        if (corpus_dir / name).is_dir():
            continue
        subprocess.run(
            [
                sys.executable,
                str(HERE / "gen_corpus.py"),
                str(corpus_dir),
                "--corpus",
                name,
                f"--{name}-studies",
                str(studies),
            ],
            check=True,
        )


def main() -> None:
    """Parse arguments, run the matrix, print and save results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_corpus_arguments(ap)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--targets", default="pacsflow,orthanc")
    ap.add_argument("--corpora", default="ct,small")
    ap.add_argument("--parallel", default="1,4", help="association counts, e.g. 1,4")
    ap.add_argument("--parallel-ct", default="1", help="association counts for ct")
    ap.add_argument("--client-timeout", type=float, default=600)
    ap.add_argument("--out", type=Path, default=None, help="append one JSON line per run")
    a = ap.parse_args()
    ensure_netns()
    if shutil.which("Orthanc") is None and "orthanc" in a.targets:
        sys.exit("Orthanc not found: apt-get install -y orthanc (never start its service)")
    ensure_corpus(a.corpus_dir, a.ct_studies, a.small_studies)
    own_work_dir = scratch(a, "pf-bench-")
    info = machine()
    print(json.dumps(info), flush=True)
    for corpus in a.corpora.split(","):
        warm_cache(corpus_files(a.corpus_dir, corpus))
    records: list[dict[str, Any]] = []
    out = a.out.open("a") if a.out else None
    try:
        for rep in range(a.reps):
            for corpus in a.corpora.split(","):
                pars = a.parallel_ct if corpus == "ct" else a.parallel
                for par in (int(p) for p in pars.split(",")):
                    for target in a.targets.split(","):
                        rec = one_run(target, corpus, par, rep, a)
                        rec["ts"] = time.strftime("%Y-%m-%dT%H:%M:%S")
                        save(rec, records, out)
                        print(
                            f"{target:9s} {corpus:5s} assocs={par} rep={rep}"
                            f" {rec.get('inst_per_s', 0):7.1f} inst/s"
                            f" {rec.get('MB_per_s', 0):6.1f} MB/s"
                            f" cpu={rec.get('server_cpu_s', 0):5.2f}s"
                            f" hwm={rec.get('server_hwm_mib')}MiB"
                            f" stored={rec.get('stored')}/{rec['files']} ok={rec.get('ok')}",
                            flush=True,
                        )
    finally:
        if out:
            out.close()
        if own_work_dir:
            shutil.rmtree(a.work_dir, ignore_errors=True)
    print()
    print(summarize(records))
    print(f"\nrepo: {REPO}")


if __name__ == "__main__":
    main()
