"""Modality Worklist C-FIND SCP: the scheduled procedure steps a modality pulls."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from pacsflow.adapters.dicom.datasets import worklist_dataset, worklist_filter
from pacsflow.adapters.dicom.scp.context import ScpContext
from pacsflow.adapters.dicom.scp.find import find_responses
from pacsflow.domain.access import DicomOperation
from pacsflow.workflow.queries import Queries


class WorklistScp:
    """Answers Modality Worklist queries from the orders."""

    def __init__(self, context: ScpContext, queries: Queries) -> None:
        self._context = context
        self._queries = queries

    def find(self, event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """The C-FIND handler."""
        return find_responses(event, self._context, DicomOperation.WORKLIST, self._search)

    def _search(self, query: Dataset) -> tuple[Iterable[Dataset], Dataset]:
        zone = self._context.clock.zone
        items = self._queries.worklist(worklist_filter(query, zone))
        return (worklist_dataset(item, zone) for item in items), query


__all__ = ["WorklistScp"]
