"""The C-FIND answer loop both find services share (worklist, query/retrieve)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from pacsflow.adapters.dicom import status
from pacsflow.adapters.dicom.datasets import with_character_set
from pacsflow.adapters.dicom.matching import matches, project
from pacsflow.adapters.dicom.scp.context import ScpContext, request_uid
from pacsflow.domain import audit as atna
from pacsflow.domain.access import DicomOperation
from pacsflow.domain.errors import Forbidden, PacsflowError

log = logging.getLogger(__name__)

#: The candidates for a query and the keys they must match.
Search = Callable[[Dataset], tuple[Iterable[Dataset], Dataset]]


def find_responses(
    event: Event, context: ScpContext, operation: DicomOperation, search: Search
) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    """The C-FIND responses: each matching candidate projected on the query, then the end."""
    query, model = event.identifier, request_uid(event, "AffectedSOPClassUID")
    try:
        try:
            context.check(event, operation)
        except Forbidden:
            context.audit_query(event, model, query, atna.Outcome.MINOR_FAILURE)
            raise
        context.audit_query(event, model, query, atna.Outcome.SUCCESS)
        candidates, keys = search(query)
        for candidate in candidates:
            if event.is_cancelled:
                yield status.CANCEL, None
                return
            if matches(keys, candidate):
                yield status.PENDING, with_character_set(project(query, candidate))
        yield status.SUCCESS, None
    except Forbidden as exc:
        yield status.failure(status.NOT_AUTHORIZED, str(exc)), None
    except PacsflowError as exc:
        log.warning("C-FIND refused: %s", exc)
        yield status.CANNOT_UNDERSTAND, None
    except Exception:
        log.exception("C-FIND failed")
        yield status.UNABLE_TO_PROCESS, None


__all__ = ["Search", "find_responses"]
