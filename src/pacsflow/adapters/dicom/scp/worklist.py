"""Modality Worklist C-FIND SCP: the scheduled procedure steps a modality pulls."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from pacsflow.adapters.dicom.datasets import worklist_dataset, worklist_filter
from pacsflow.adapters.dicom.scp.context import ScpContext
from pacsflow.adapters.dicom.scp.find import find_responses
from pacsflow.domain.access import DicomOperation
from pacsflow.domain.orders import WorklistFilter
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
        flt = worklist_filter(query, zone)
        items = self._queries.worklist(flt)
        return (worklist_dataset(item, zone) for item in items), left_to_match(query, flt)


def left_to_match(query: Dataset, flt: WorklistFilter) -> Dataset:
    """The query's matching keys the store has not already applied exactly.

    The store filters on the accession number, the scheduled station AE title and the modality
    when the query gives one exact value for them; matching them again per candidate would
    only repeat it, so they are emptied here (an empty key matches everything, PS3.4
    C.2.2.2.3). The rest (wildcards, names, dates and times, the patient ID, which the store
    reads from the order and the answer from the registered patient) is matched per candidate.
    """
    keys = copy.deepcopy(query)
    if flt.accession_number:
        keys.AccessionNumber = ""
    steps = keys.get("ScheduledProcedureStepSequence") or []
    if len(steps) == 1:
        if flt.modality:
            steps[0].Modality = ""
        if flt.station_ae:
            steps[0].ScheduledStationAETitle = ""
    return keys


__all__ = ["WorklistScp", "left_to_match"]
