"""Worklist C-FIND: what the store filtered exactly is not matched again per candidate."""

from __future__ import annotations

from datetime import UTC

from pydicom.dataset import Dataset

from pacsflow.adapters.dicom.datasets import worklist_filter
from pacsflow.adapters.dicom.scp.worklist import left_to_match


def _query(accession: str, modality: str, station: str, name: str) -> Dataset:
    query = Dataset()
    query.AccessionNumber = accession
    query.PatientName = name
    query.PatientID = "P1"
    step = Dataset()
    step.Modality = modality
    step.ScheduledStationAETitle = station
    step.ScheduledProcedureStepStartDate = "20240501"
    query.ScheduledProcedureStepSequence = [step]
    return query


def test_exact_keys_the_store_applied_are_left_out_of_matching():
    query = _query("ACC1", "CT", "CT_1", "DOE^*")

    keys = left_to_match(query, worklist_filter(query, UTC))

    step = keys.ScheduledProcedureStepSequence[0]
    assert (keys.AccessionNumber, step.Modality, step.ScheduledStationAETitle) == ("", "", "")
    assert (keys.PatientName, keys.PatientID) == ("DOE^*", "P1")
    assert step.ScheduledProcedureStepStartDate == "20240501"
    assert query.AccessionNumber == "ACC1"  # the query itself, projected on answers, is kept


def test_wildcard_keys_stay_for_the_matcher():
    query = _query("ACC*", "", "CT_*", "")

    keys = left_to_match(query, worklist_filter(query, UTC))

    step = keys.ScheduledProcedureStepSequence[0]
    assert (keys.AccessionNumber, step.Modality, step.ScheduledStationAETitle) == (
        "ACC*",
        "",
        "CT_*",
    )
