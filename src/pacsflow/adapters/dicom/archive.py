"""Remote archives as a Q/R SCU: study-level C-FIND for a patient's studies, C-MOVE to us.

The archive must know pacsflow's AE title as a move destination (Orthanc: DicomModalities;
dcm4chee: an AE entry), or it answers the C-MOVE with 0xA801.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from datetime import date

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from pacsflow.adapters.dicom.datasets import dicom_date
from pacsflow.domain.errors import PermanentError, TransientError
from pacsflow.domain.patients import PatientIdentifier
from pacsflow.domain.prefetch import PriorCandidate

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT = 10.0
#: C-MOVE answers that retrying cannot change (PS3.4 C.4.2.1.5).
_PERMANENT = {0xA801: "the archive does not know pacsflow's AE title as a move destination"}


def _nodelay(event: evt.Event) -> None:
    sock = event.assoc.dul.socket
    if sock is not None and sock.socket is not None:
        sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _values(ds: Dataset, keyword: str) -> tuple[str, ...]:
    value = ds.get(keyword)
    if value is None or value == "":
        return ()
    items = value if isinstance(value, MultiValue | list | tuple) else [value]
    return tuple(str(v).strip() for v in items if str(v).strip())


class DicomArchives:
    """The configured archives, searched and retrieved from by AE title."""

    def __init__(
        self,
        ae_title: str,
        address: Callable[[str], tuple[str, int] | None],
        *,
        with_body_parts: bool = True,
        with_issuer: Callable[[str], bool] = lambda archive: True,
    ) -> None:
        self._ae_title = ae_title
        self._address = address
        self._with_body_parts = with_body_parts
        self._with_issuer = with_issuer

    def _associate(self, archive: str, model: str) -> Association:
        address = self._address(archive)
        if address is None:
            raise PermanentError(f"{archive} is not a configured peer")
        host, port = address
        try:
            with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT):
                pass  # pynetdicom leaks its socket when refused: probe first
        except OSError as exc:
            raise TransientError(f"cannot reach {archive} at {host}:{port}: {exc}") from exc
        ae = AE(ae_title=self._ae_title)
        ae.acse_timeout = 30
        ae.dimse_timeout = 600  # a C-MOVE answers once every sub-operation is done
        ae.network_timeout = 600
        ae.add_requested_context(model)
        assoc = ae.associate(
            host, port, ae_title=archive, evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay)]
        )
        if not assoc.is_established:
            raise TransientError(f"{archive} did not accept an association")
        return assoc

    def find_studies(self, archive: str, patient: PatientIdentifier) -> list[PriorCandidate]:
        """The archive's studies of this patient identifier (study level, Study Root).

        An archive set to be searched by Patient ID only gets an empty IssuerOfPatientID (a
        return key): a study answered with an issuer other than the patient's is another
        patient's and dropped; one stored without an issuer is kept.
        """
        is_id_only = not self._with_issuer(archive)
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.PatientID = patient.value
        if patient.issuer or is_id_only:
            query.IssuerOfPatientID = "" if is_id_only else patient.issuer
        for keyword in (
            "StudyInstanceUID",
            "StudyDate",
            "ModalitiesInStudy",
            "StudyDescription",
            "NumberOfStudyRelatedInstances",
            "BodyPartExamined",
        ):
            setattr(query, keyword, "")
        assoc = self._associate(archive, StudyRootQueryRetrieveInformationModelFind)
        found: list[Dataset] = []
        try:
            found = self._find(assoc, query)
            candidates = []
            for ds in found:
                uid = str(ds.get("StudyInstanceUID", "")).strip()
                if not uid or (is_id_only and _other_issuer(ds, patient)):
                    continue
                parts = _values(ds, "BodyPartExamined")
                if not parts and self._with_body_parts:
                    parts = self._series_body_parts(assoc, uid)
                count = ds.get("NumberOfStudyRelatedInstances")
                candidates.append(
                    PriorCandidate(
                        study_instance_uid=uid,
                        archive=archive,
                        study_date=_date(str(ds.get("StudyDate", ""))),
                        modalities=_values(ds, "ModalitiesInStudy"),
                        body_parts=parts,
                        description=str(ds.get("StudyDescription", "")),
                        instance_count=int(count) if count not in (None, "") else None,
                    )
                )
            return candidates
        finally:
            assoc.release()

    def _find(self, assoc: Association, query: Dataset) -> list[Dataset]:
        found = []
        for status, identifier in assoc.send_c_find(
            query, StudyRootQueryRetrieveInformationModelFind
        ):
            code = int(getattr(status, "Status", -1)) if status else -1
            if code in (0xFF00, 0xFF01) and identifier is not None:
                found.append(identifier)
            elif code == 0:
                break
            else:
                raise TransientError(f"C-FIND answered {code:#06x}")
        return found

    def _series_body_parts(self, assoc: Association, study_uid: str) -> tuple[str, ...]:
        query = Dataset()
        query.QueryRetrieveLevel = "SERIES"
        query.StudyInstanceUID = study_uid
        query.SeriesInstanceUID = ""
        query.BodyPartExamined = ""
        parts: list[str] = []
        for ds in self._find(assoc, query):
            parts.extend(p for p in _values(ds, "BodyPartExamined") if p not in parts)
        return tuple(parts)

    def retrieve_study(self, archive: str, study_uid: str) -> int:
        """C-MOVE the study to pacsflow; how many instances the archive sent."""
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study_uid
        assoc = self._associate(archive, StudyRootQueryRetrieveInformationModelMove)
        try:
            final: Dataset | None = None
            for status, _ in assoc.send_c_move(
                query, self._ae_title, StudyRootQueryRetrieveInformationModelMove
            ):
                if status is None:
                    raise TransientError(f"{archive} did not answer the C-MOVE")
                final = status
        finally:
            if assoc.is_established:
                assoc.release()
        assert final is not None
        code = int(final.Status)
        completed = int(final.get("NumberOfCompletedSuboperations", 0) or 0)
        failed = int(final.get("NumberOfFailedSuboperations", 0) or 0)
        if code in _PERMANENT:
            raise PermanentError(f"C-MOVE {code:#06x}: {_PERMANENT[code]}")
        if code == 0xB000 or failed:
            raise TransientError(
                f"{archive} sent {completed}, {failed} failed (status {code:#06x})"
            )
        if code != 0:
            raise TransientError(f"C-MOVE from {archive} answered {code:#06x}")
        return completed


def _other_issuer(ds: Dataset, patient: PatientIdentifier) -> bool:
    """True when an answer names an issuer and it is not the patient's (another patient)."""
    issuer = str(ds.get("IssuerOfPatientID", "") or "").strip()
    return bool(patient.issuer and issuer and issuer != patient.issuer)


def _date(value: str) -> date | None:
    return dicom_date(value.strip())


__all__ = ["DicomArchives"]
