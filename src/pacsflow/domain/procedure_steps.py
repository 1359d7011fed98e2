"""Performed procedure steps (MPPS) as reported by the modality."""

from __future__ import annotations

from dataclasses import dataclass

from pacsflow.domain.uids import Uid


@dataclass(frozen=True, slots=True)
class PerformedStep:
    """A Modality Performed Procedure Step as reported by the modality."""

    sop_instance_uid: Uid
    status: str
    accession_number: str = ""
    study_instance_uid: str = ""
    performed_station_ae: str = ""


__all__ = [
    "PerformedStep",
]
