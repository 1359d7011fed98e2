"""Order intake latency: ORM^O01 over MLLP at a fixed rate -> modality worklist item visible.

Starts `pacsflow serve` (fresh data dir, SQLite + files, free ports, waits for /healthz 200),
then sends ORM^O01 new orders (ORC-1 NW), each with its own patient, accession number and
placer number, on one MLLP connection at --rate messages/s for --seconds (open loop: message i
is due at t0 + i/rate and is sent as soon as the previous ACK is in if it is late).

Two latencies are measured:

* ACK latency, for every message: send -> AA received.  pacsflow answers AA only after the
  order is journaled, applied and committed, so this is the time until the worklist item exists.
* C-FIND visibility, for every --sample-every'th message: a second thread runs a Modality
  Worklist C-FIND (pynetdicom SCU, one association kept open) on the message's accession
  number right after its ACK and repeats until a match is returned; latency = send -> match.

Bounded: at most rate x seconds messages, each with a 30 s MLLP timeout.  Runs itself inside
`unshare -n` (loopback only; needs root).

usage: python benchmarks/bench_intake.py [--rate 50] [--seconds 60] [--sample-every 25]
"""

from __future__ import annotations

import argparse
import json
import queue
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from _common import PacsflowNode, ack_code, ensure_netns, hl7, machine, proc_status
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]


@dataclass
class Sent:
    """One order message and when it was sent and acknowledged (perf_counter seconds)."""

    index: int
    accession: str
    sent: float
    acked: float = 0.0
    ack_code: str = ""
    visible: float = 0.0


def orm(i: int, run_id: str) -> tuple[bytes, str]:
    """An ORM^O01 new order with unique identifiers; the message and its accession number."""
    acc = f"B{run_id}{i:06d}"
    ts = time.strftime("%Y%m%d%H%M%S")
    message = hl7(
        f"MSH|^~\\&|RIS|RADIOLOGY|PACSFLOW|RADIOLOGY|{ts}||ORM^O01|BENCH{run_id}{i:06d}|P|2.3.1",
        f"PID|1||BMRN{run_id}{i:06d}^^^GENHOSP^MR||BENCH^PATIENT{i}||19700412|M",
        "PV1|1|O||||||5678^WELBY^MARCUS^A^^DR",
        f"ORC|NW|PLC{run_id}{i:06d}^EPIC|FIL{run_id}{i:06d}^RIS||SC||^^^{ts}^^S",
        f"OBR|1|PLC{run_id}{i:06d}^EPIC|FIL{run_id}{i:06d}^RIS|CTHEAD^CT head^LOCAL|||"
        f"|||||||||9999^HOUSE^GREGORY||{acc}|RP{i}|SPS{i}||||CT|||^^^{ts}^^S",
    )
    return message, acc


def visibility_checker(
    port: int, work: queue.Queue[Sent | None], done: list[Sent], stop_at: float
) -> None:
    """C-FIND each queued order's accession number until the worklist returns it."""
    ae = AE(ae_title="BENCHMWL")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="PACSFLOW")
    if not assoc.is_established:
        raise RuntimeError("MWL association rejected")
    try:
        while (item := work.get()) is not None:
            query = Dataset()
            query.AccessionNumber = item.accession
            query.PatientID = ""
            query.ScheduledProcedureStepSequence = [Dataset()]
            while time.perf_counter() < stop_at:
                found = False
                for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
                    if status and status.Status in (0xFF00, 0xFF01) and identifier is not None:
                        found = True
                if found:
                    item.visible = time.perf_counter()
                    done.append(item)
                    break
    finally:
        assoc.release()


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of values, in ms."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))] * 1000


def main() -> None:
    """Start pacsflow, send the orders, print latencies."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=50.0, help="messages per second")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--sample-every", type=int, default=25, help="C-FIND every Nth order")
    ap.add_argument("--out", type=Path, default=None, help="append the result as a JSON line")
    a = ap.parse_args()
    ensure_netns()
    run_dir = Path(tempfile.mkdtemp(prefix="pf-intake-"))
    # The worklist SCU is a configured peer: pacsflow answers C-FIND only to known AE titles.
    peers = json.dumps([{"ae_title": "BENCHMWL", "host": "127.0.0.1", "port": 1}])
    node = PacsflowNode.from_env(run_dir, "server.log", peers=peers)
    sent: list[Sent] = []
    seen: list[Sent] = []
    try:
        node.serve()
        assert node.proc is not None
        n = int(a.rate * a.seconds)
        run_id = time.strftime("%H%M%S")
        work: queue.Queue[Sent | None] = queue.Queue()
        checker = threading.Thread(
            target=visibility_checker,
            args=(node.dicom_port, work, seen, time.perf_counter() + a.seconds + 60),
            daemon=True,
        )
        checker.start()
        client = node.mllp()
        t0 = time.perf_counter()
        for i in range(n):
            due = t0 + i / a.rate
            if (wait := due - time.perf_counter()) > 0:
                time.sleep(wait)
            message, acc = orm(i, run_id)
            item = Sent(i, acc, time.perf_counter())
            reply = client.send(message)
            item.acked = time.perf_counter()
            item.ack_code = ack_code(reply)
            sent.append(item)
            if i % a.sample_every == 0:
                work.put(item)
        elapsed = time.perf_counter() - t0
        client.close()
        work.put(None)
        checker.join(timeout=90)
        hwm = proc_status(node.proc.pid).get("VmHWM", 0) / 1024
    finally:
        node.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    acks = [s.acked - s.sent for s in sent]
    vis = [s.visible - s.sent for s in seen]
    result = {
        "machine": machine(),
        "rate_target": a.rate,
        "messages": len(sent),
        "achieved_rate": round(len(sent) / elapsed, 1),
        "ack_codes": {c: sum(s.ack_code == c for s in sent) for c in {s.ack_code for s in sent}},
        "ack_ms": {
            "p50": round(pct(acks, 50), 2),
            "p99": round(pct(acks, 99), 2),
            "max": round(max(acks) * 1000, 2),
            "mean": round(statistics.mean(acks) * 1000, 2),
        },
        "cfind_visible": len(vis),
        "cfind_sampled": len(range(0, len(sent), a.sample_every)),
        "visible_ms": {
            "p50": round(pct(vis, 50), 2) if vis else None,
            "p99": round(pct(vis, 99), 2) if vis else None,
            "max": round(max(vis) * 1000, 2) if vis else None,
        },
        "server_hwm_mib": round(hwm, 1),
    }
    print(json.dumps(result, indent=1))
    if a.out:
        with a.out.open("a") as out:
            out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
