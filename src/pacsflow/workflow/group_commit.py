"""Group commit: work that arrives together is written in one transaction.

Each stored instance needs a few index statements and a commit, and the commit waits for the
disk (SQLite `synchronous=FULL`, PostgreSQL's WAL flush). With several associations storing
at once, committing each instance alone makes them queue for the one writer and pay the disk
wait each. Here the first caller to arrive becomes the leader: it takes every piece of work
waiting at that moment, runs them in one unit of work, commits once and hands each caller its
own result; whoever arrived meanwhile waits for the next round (leader/follower, no extra
thread). A caller alone runs its work at once, as before.

A round may end with one more step over every piece's result before it commits (`finish`):
ingest publishes the round's events there, so subscribers read study-level facts once per
round. A caller's answer still comes only after the commit that contains its work. If any piece
fails, the round is rolled back and each piece is run again in a transaction of its own, so
one caller's failure is never another's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from pacsflow.workflow.ports.uow import UnitOfWork, UnitOfWorkFactory

R = TypeVar("R")

#: A piece of work: its writes through the unit of work; it must not commit.
Work = Callable[[UnitOfWork], R]
#: The last step of a round, over the results of its pieces in order: it must not commit.
Finish = Callable[[UnitOfWork, Sequence[object]], None]


@dataclass(slots=True)
class _Ticket(Generic[R]):
    work: Work[R]
    result: R | None = None
    error: BaseException | None = None
    done: bool = False


class GroupCommit:
    """Runs pieces of work that arrive together in one transaction."""

    def __init__(self, uow: UnitOfWorkFactory, finish: Finish | None = None) -> None:
        self._uow = uow
        self._finish = finish
        self._cond = threading.Condition()
        self._queue: list[_Ticket[object]] = []
        self._leading = False
        #: Transactions committed and pieces of work run (for tests and diagnostics).
        self.rounds = 0
        self.pieces = 0

    def run(self, work: Work[R]) -> R:
        """Run work in a transaction, possibly shared; return once that transaction commits."""
        ticket: _Ticket[R] = _Ticket(work)
        with self._cond:
            self._queue.append(ticket)  # type: ignore[arg-type]
            while self._leading and not ticket.done:
                self._cond.wait()
            if not ticket.done:  # lead a round: everything queued, this ticket included
                self._leading = True
                batch, self._queue = self._queue, []
        if not ticket.done:
            try:
                self._round(batch)
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        if ticket.error is not None:
            raise ticket.error
        return ticket.result  # type: ignore[return-value]

    def _round(self, batch: list[_Ticket[object]]) -> None:
        try:
            with self._uow() as uow:
                results = [ticket.work(uow) for ticket in batch]
                if self._finish is not None:
                    self._finish(uow, results)
                uow.commit()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller it belongs to
            if len(batch) == 1:
                batch[0].error, batch[0].done = exc, True
                return
            for ticket in batch:  # each alone: one failure must not fail the others
                self._round([ticket])
            return
        self.rounds += 1
        self.pieces += len(batch)
        for ticket, result in zip(batch, results, strict=True):
            ticket.result, ticket.done = result, True


__all__ = ["GroupCommit", "Work"]
