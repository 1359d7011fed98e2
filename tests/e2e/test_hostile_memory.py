"""`pacsflow serve` after hostile input: still serving, memory bounded (issue 11, section 2).

60 bad MLLP frames (up to 17 MiB, past the 16 MiB limit) and 280 bad PDUs (mutated, cut or
over-long A-ASSOCIATE-RQs), then a C-ECHO must be accepted at once (a bad request left
pynetdicom's association thread holding its slot for the ACSE timeout) and the process must
stay under the issue's 300 MB. Python holds nothing afterwards (tracemalloc: +0.2 MiB); what the
process grows by (+31 to +94 MiB measured, most of it after the large MLLP frames) is freed
memory glibc keeps in its per-thread arenas and thread-stack cache.
"""

from __future__ import annotations

import random
import socket
import struct
from pathlib import Path

from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.tests import encoded_pdu_items as pdus

from tests.e2e.conftest import Served

#: The issue's bound on the server's resident memory.
MAX_RSS_MIB = 300


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def send_and_wait_for_close(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
        except OSError:
            pass  # closed by the server, maybe before it read everything


def bad_frame(rng: random.Random, size: int) -> bytes:
    body = rng.randbytes(size).replace(b"\x1c", b"x").replace(b"\x0b", b"y")
    return b"\x0b" + body + b"\x1c\x0d"


def bad_pdu(rng: random.Random) -> bytes:
    raw = bytearray(rng.choice([pdus.a_associate_rq, pdus.a_associate_rq_role]))
    for _ in range(rng.randint(0, 8)):
        raw[rng.randrange(len(raw))] = rng.randrange(256)
    if rng.random() < 0.3:
        raw[2:6] = struct.pack(">L", rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF]))
    return bytes(raw[: rng.randint(1, len(raw))]) + rng.choice([b"", pdus.p_data_tf_rq])


def test_the_server_serves_at_once_and_stays_bounded_after_bad_frames_and_pdus(
    served: Served,
) -> None:
    rng = random.Random(11)
    pid = served.process.pid
    assert served.send_hl7("MSH|^~\\&|A|B|C|D|20261201||ADT^A01|M1|P|2.5\rPID|1||1^^^H\r")
    before = rss_mib(pid)
    for i in range(60):
        size = 17_000_000 if i % 10 == 0 else rng.choice([1_000, 100_000, 1_000_000, 5_000_000])
        send_and_wait_for_close(served.hl7_port, bad_frame(rng, size))
    for _ in range(280):
        send_and_wait_for_close(served.dicom_port, bad_pdu(rng))
    ae = AE(ae_title="ECHOSCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", served.dicom_port, ae_title="PACSFLOW")
    assert assoc.is_established, served.log.read_text()[-3000:]
    assoc.release()
    after = rss_mib(pid)
    print(f"serve RSS {before:.0f} MiB, {after - before:+.0f} MiB after the hostile input")
    assert after < MAX_RSS_MIB
