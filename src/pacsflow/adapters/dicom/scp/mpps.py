"""Modality Performed Procedure Step SCP: N-CREATE and N-SET from the modality."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from pacsflow.adapters.dicom import status
from pacsflow.adapters.dicom.scp.context import NReply, n_service_reply, request_uid
from pacsflow.domain.errors import InvalidInput
from pacsflow.domain.procedure_steps import PerformedStep
from pacsflow.domain.uids import Uid
from pacsflow.workflow.procedure_steps import ProcedureSteps


class MppsScp:
    """Records the steps a modality performs (start, completion, discontinuation)."""

    def __init__(self, steps: ProcedureSteps) -> None:
        self._steps = steps

    def n_create(self, event: Event) -> NReply:
        """The N-CREATE handler: a step has started."""

        def start() -> NReply:
            attrs = event.attribute_list
            sop_uid = request_uid(event, "AffectedSOPInstanceUID")
            if not sop_uid:
                raise InvalidInput("N-CREATE without an Affected SOP Instance UID")
            step = _performed_step(sop_uid, attrs, event.assoc.requestor.ae_title)
            self._steps.start(step)
            return status.SUCCESS, attrs

        return n_service_reply("MPPS N-CREATE", start)

    def n_set(self, event: Event) -> NReply:
        """The N-SET handler: a step's status changes."""

        def update() -> NReply:
            mods = event.modification_list
            sop_uid = Uid(request_uid(event, "RequestedSOPInstanceUID"))
            new_status = str(mods.get("PerformedProcedureStepStatus", "") or "").strip()
            self._steps.update(sop_uid, new_status)
            return status.SUCCESS, mods

        return n_service_reply("MPPS N-SET", update)


def _performed_step(sop_uid: str, attrs: Dataset, station: str) -> PerformedStep:
    accession, study_uid = "", ""
    for item in attrs.get("ScheduledStepAttributesSequence", []):
        accession = accession or str(item.get("AccessionNumber", "") or "")
        study_uid = study_uid or str(item.get("StudyInstanceUID", "") or "")
    return PerformedStep(
        sop_instance_uid=Uid(sop_uid),
        status=str(attrs.get("PerformedProcedureStepStatus", "") or "").strip(),
        accession_number=accession,
        study_instance_uid=study_uid,
        performed_station_ae=str(attrs.get("PerformedStationAETitle", "") or station),
    )


__all__ = ["MppsScp"]
