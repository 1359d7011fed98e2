"""pynetdicom with pacsflow's event-driven reactor waits (adapters/dicom/_tuning) applied.

Regression: the association reactor's wait on the DIMSE queue once took the one
notification Queue.put gives, so a send_c_find waiting in get_msg() slept until its DIMSE
timeout with the answer already queued (seen as a prefetch hanging against Orthanc: after a
C-FIND, pynetdicom's reactor may resume for one loop while the next request is sent).
"""

from __future__ import annotations

import queue
import threading
import time
from types import SimpleNamespace
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
)

from pacsflow.adapters.dicom._tuning import _assoc_wait
from pacsflow.app import Pacsflow


def test_a_message_queued_while_the_reactor_waits_still_wakes_the_getter() -> None:
    q: queue.Queue[Any] = queue.Queue()
    assoc: Any = SimpleNamespace(dimse=SimpleNamespace(msg_queue=q))
    reactor = threading.Thread(target=_assoc_wait, args=(assoc, 2.0))
    reactor.start()  # waits first: Queue.put's single notify goes to it
    time.sleep(0.1)
    got: list[str] = []
    getter = threading.Thread(target=lambda: got.append(q.get(timeout=5)))
    getter.start()
    time.sleep(0.1)
    start = time.monotonic()
    q.put("C-FIND-RSP")
    getter.join(6)
    reactor.join(3)
    assert got == ["C-FIND-RSP"]
    assert time.monotonic() - start < 1.0, "the getter slept until its timeout"


def _queries(port: int, count: int) -> int:
    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.dimse_timeout = 60
    assoc = ae.associate("127.0.0.1", port, ae_title="PACSFLOW")
    assert assoc.is_established
    answered = 0
    try:
        for _ in range(count):
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.StudyInstanceUID = ""
            for status, _identifier in assoc.send_c_find(
                query, StudyRootQueryRetrieveInformationModelFind
            ):
                if status is not None and status.Status == 0:
                    answered += 1
    finally:
        assoc.release()
    return answered


def test_many_c_finds_on_one_association_from_this_process_never_stall(node: Pacsflow) -> None:
    # The node applied the tuning to this whole process, SCU associations included.
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(_queries(node.dicom.port, 60)))
    worker.start()
    worker.join(30)  # 60 queries take well under a second; a stolen wake-up costs 60 s
    assert done == [60], "a C-FIND answer waited for the DIMSE timeout"
