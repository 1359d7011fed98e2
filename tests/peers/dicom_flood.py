"""A port scanner and a broken load balancer in one: half-open and noise connections in a loop.

Each round opens `--half-open` connections that send the first 1 or 2 bytes of a PDU header
and then say nothing (the last two rounds' stay open; older ones are closed by us if the
server has not closed them yet), and `--noise` connections that send 1-64 random bytes and
close. It runs until killed (SIGTERM) or `--seconds` have passed, in its own process so that
the node under test does not share its interpreter. Prints one JSON line of counts at the end.
Used by tests/integration/test_dicom_connections.py and benchmarks/bench_hostile.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import socket
import sys
import time
from collections import deque
from types import FrameType


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--half-open", type=int, default=200)
    parser.add_argument("--noise", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    rng = random.Random(args.seed)
    held: deque[socket.socket] = deque()
    counts = {"rounds": 0, "half_open": 0, "noise": 0, "refused": 0}
    end = time.monotonic() + args.seconds
    while not stopping and time.monotonic() < end:
        for i in range(args.half_open):
            try:
                sock = socket.create_connection((args.host, args.port), timeout=5)
                sock.sendall(b"\x01\x00"[: 1 + i % 2])
            except OSError:
                counts["refused"] += 1
                continue
            held.append(sock)
            counts["half_open"] += 1
        while len(held) > 2 * args.half_open:
            with contextlib.suppress(OSError):
                held.popleft().close()
        for _ in range(args.noise):
            try:
                with socket.create_connection((args.host, args.port), timeout=5) as sock:
                    sock.sendall(rng.randbytes(rng.randint(1, 64)))
            except OSError:
                counts["refused"] += 1
                continue
            counts["noise"] += 1
        counts["rounds"] += 1
    for sock in held:
        with contextlib.suppress(OSError):
            sock.close()
    print(json.dumps(counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
