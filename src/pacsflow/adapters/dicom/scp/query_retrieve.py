"""Query/Retrieve SCP (patient and study root): C-FIND, C-MOVE and C-GET from the index.

Objects leave with the index's identity coerced in (the stored files stay as received).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import evt
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext, build_context

from pacsflow.adapters.dicom import status
from pacsflow.adapters.dicom.byte_order import as_little_endian, is_big_endian
from pacsflow.adapters.dicom.datasets import (
    coerce_identity,
    image_level_dataset,
    patient_level_dataset,
    series_level_dataset,
    study_level_dataset,
)
from pacsflow.adapters.dicom.scp.context import ScpContext, caller, participant
from pacsflow.adapters.dicom.scp.find import find_responses
from pacsflow.domain import audit as atna
from pacsflow.domain import audit_events as atna_events
from pacsflow.domain.access import DicomOperation, move_allowed
from pacsflow.domain.errors import InvalidInput, PacsflowError
from pacsflow.domain.patients import Issuer, Patient, PatientId, PatientIdentifier
from pacsflow.domain.studies import InstanceRecord, StudyFilter
from pacsflow.domain.uids import Uid
from pacsflow.workflow.queries import Queries, StudyView

log = logging.getLogger(__name__)

_UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a C-MOVE destination AE title can be reached."""

    host: str
    port: int


PeerLookup = Callable[[str], Destination | None]


class QueryRetrieveScp:
    """Answers Q/R C-FIND from the index and sends what C-MOVE and C-GET select."""

    def __init__(self, context: ScpContext, queries: Queries, peers: PeerLookup) -> None:
        self._context = context
        self._queries = queries
        self._peers = peers

    def find(self, event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """The C-FIND handler (patient, study, series and image level)."""
        return find_responses(event, self._context, DicomOperation.QUERY, self._search)

    def _search(self, query: Dataset) -> tuple[Iterable[Dataset], Dataset]:
        return self._qr_candidates(query), _identity_resolved(query)

    def _audit_retrieve(
        self, event: Event, instances: list[InstanceRecord], destination: str
    ) -> None:
        if self._context.audit is None:
            return
        studies = sorted({i.study_instance_uid for i in instances})
        requestor = participant(caller(event))
        receiver = (
            requestor
            if destination == requestor.user_id
            else atna.ActiveParticipant(user_id=destination)
        )
        self._context.record(
            atna_events.instances_transferred(
                self._context.audit.source,
                atna.ActiveParticipant(user_id=self._context.ae_title),
                receiver,
                self._context.clock.now(),
                action=atna.Action.READ,
                requestor=requestor if receiver is not requestor else None,
                studies=[atna_events.study_object(uid) for uid in studies],
            )
        )

    def _studies_for(self, query: Dataset) -> list[StudyView]:
        patient_id = str(query.get("PatientID", "") or "")
        uids = [u for u in str(query.get("StudyInstanceUID", "") or "").split("\\") if u]
        accession = str(query.get("AccessionNumber", "") or "")
        issuer = str(query.get("IssuerOfPatientID", "") or "")
        flt = StudyFilter(
            patient=(
                PatientIdentifier(
                    PatientId(patient_id), Issuer("" if any(c in issuer for c in "*?") else issuer)
                )
                if patient_id and not any(c in patient_id for c in "*?")
                else None
            ),
            study_instance_uids=tuple(Uid(u) for u in uids),
            accession_number="" if any(c in accession for c in "*?") else accession,
            limit=100_000,
        )
        return self._queries.studies(flt)

    def _qr_candidates(self, query: Dataset) -> Iterator[Dataset]:
        level = str(query.get("QueryRetrieveLevel", "")).strip().upper()
        if level not in ("PATIENT", "STUDY", "SERIES", "IMAGE"):
            raise InvalidInput(f"unknown Query/Retrieve Level {level!r}")
        views = self._studies_for(query)
        if level == "PATIENT":
            yield from self._patient_candidates(views)
            return
        for view in views:
            study_ds = study_level_dataset(view)
            if level == "STUDY":
                yield study_ds
                continue
            instances = self._queries.instances(study_uids=[view.study.study_instance_uid])
            by_series: dict[str, list[InstanceRecord]] = {}
            for inst in instances:
                by_series.setdefault(inst.series_instance_uid, []).append(inst)
            for members in by_series.values():
                series_ds = series_level_dataset(study_ds, members[0], len(members))
                if level == "SERIES":
                    yield series_ds
                    continue
                for inst in members:
                    yield image_level_dataset(series_ds, inst)

    def _patient_candidates(self, views: list[StudyView]) -> Iterator[Dataset]:
        counts: dict[PatientIdentifier, tuple[Patient, int]] = {}
        for view in views:
            if view.patient is None:
                continue
            key = view.patient.primary
            patient, n = counts.get(key, (view.patient, 0))
            counts[key] = (patient, n + 1)
        for patient, n in counts.values():
            yield patient_level_dataset(patient, n)

    # -- C-MOVE / C-GET ------------------------------------------------------------------------

    def _selected(self, query: Dataset) -> list[InstanceRecord]:
        level = str(query.get("QueryRetrieveLevel", "")).strip().upper()

        def uids(keyword: str) -> list[Uid]:
            return [Uid(u) for u in str(query.get(keyword, "") or "").split("\\") if u]

        if level == "IMAGE" and uids("SOPInstanceUID"):
            return list(self._queries.instances(sop_uids=uids("SOPInstanceUID")))
        if level in ("SERIES", "IMAGE") and uids("SeriesInstanceUID"):
            return list(self._queries.instances(series_uids=uids("SeriesInstanceUID")))
        if level in ("STUDY", "SERIES", "IMAGE") and uids("StudyInstanceUID"):
            return list(self._queries.instances(study_uids=uids("StudyInstanceUID")))
        # Lenient like most archives: a Patient ID alone retrieves the patient's studies.
        if query.get("PatientID"):
            views = self._studies_for(query)
            return list(
                self._queries.instances(study_uids=[v.study.study_instance_uid for v in views])
            )
        raise InvalidInput(f"no unique key to retrieve at level {level!r}")

    def _outgoing(self, instances: list[InstanceRecord]) -> Iterator[Dataset]:
        """Stored instances with the index's identity coerced in (files stay as received)."""
        views: dict[str, StudyView | None] = {}
        for inst in instances:
            uid = inst.study_instance_uid
            if uid not in views:
                views[uid] = self._queries.study(uid)
            path = self._queries.local_file(inst)
            if path is None:
                raise InvalidInput(f"instance {inst.sop_instance_uid} has no local file")
            ds = dcmread(path, defer_size="1 MB")
            view = views[uid]
            if view is not None and view.patient is not None:
                coerce_identity(ds, view.patient, view.study.accession_number, uid)
            yield ds

    def _big_endian_accepted(self, event: Event, sop_class: str) -> bool:
        """True when the C-GET peer accepted Big Endian for the class (never for C-MOVE)."""
        if event.event is not evt.EVT_C_GET:
            return False  # C-MOVE proposes little endian only for these (_contexts_for)
        return any(
            cx.abstract_syntax == sop_class and cx.transfer_syntax[0] == ExplicitVRBigEndian
            for cx in event.assoc.accepted_contexts
        )

    def move(self, event: Event) -> Iterator[Any]:
        """The C-MOVE handler: the destination's address, the count, then each instance."""
        target = str(event.move_destination).strip()
        calling = str(event.assoc.requestor.ae_title).strip()
        destination = self._peers(target)
        if destination is None or not move_allowed(
            calling, self._context.rights(calling), target, is_open=self._context.is_open
        ):
            # Unknown and not-allowed destinations get the same answer (0xA801).
            log.warning("C-MOVE from %r to %r refused", calling, target)
            yield None, None
            return
        try:
            instances, error = self._selected(event.identifier), None
        except PacsflowError as exc:
            instances, error = [], exc
        yield destination.host, destination.port, {"contexts": _contexts_for(instances)}
        if error is not None:
            log.warning("C-MOVE refused: %s", error)
            raise error  # pynetdicom answers the count step with a failure status
        self._audit_retrieve(event, instances, target)
        yield len(instances)
        yield from self._send(event, instances)

    def get(self, event: Event) -> Iterator[Any]:
        """The C-GET handler: the count, then each instance on the caller's association."""
        self._context.check(event, DicomOperation.RETRIEVE)  # raising here fails the C-GET
        instances = self._selected(event.identifier)
        self._audit_retrieve(event, instances, str(event.assoc.requestor.ae_title).strip())
        yield len(instances)
        yield from self._send(event, instances)

    def _send(self, event: Event, instances: list[InstanceRecord]) -> Iterator[Any]:
        for ds in self._outgoing(instances):
            if event.is_cancelled:
                yield status.CANCEL, None
                return
            if is_big_endian(ds) and not self._big_endian_accepted(event, str(ds.SOPClassUID)):
                # Little endian was accepted (getscu +xb proposes big endian first, in one
                # context with little endian): re-encoded losslessly.
                ds = as_little_endian(ds)
            yield status.PENDING, ds


def _identity_resolved(query: Dataset) -> Dataset:
    """The query keys left to match once the index has chosen the studies of its Patient ID.

    An exact Patient ID (with its issuer) selects the studies of the patient holding it and of
    the patients linked to it (ADT A24); each answer carries its own patient's identity, which
    may be a linked patient's ID, so the ID is not matched again (it is still returned).
    """
    patient_id = str(query.get("PatientID", "") or "")
    if not patient_id or any(c in patient_id for c in "*?"):
        return query
    keys = Dataset()
    keys.update(query)  # shares the elements: replace the two below, never assign into them
    del keys.PatientID
    keys.PatientID = ""
    if "IssuerOfPatientID" in keys:
        del keys.IssuerOfPatientID
        keys.IssuerOfPatientID = ""
    return keys


def _contexts_for(instances: list[InstanceRecord]) -> list[PresentationContext]:
    """Presentation contexts for sending these instances as stored (at most 128)."""
    wanted: dict[str, set[str]] = {}
    for inst in instances:
        wanted.setdefault(inst.sop_class_uid, set()).add(inst.transfer_syntax_uid)
    contexts = []
    for sop_class, syntaxes in sorted(wanted.items()):
        # Big Endian leaves as little endian (lossless): one context fewer to be refused.
        for ts in sorted((syntaxes - {ExplicitVRBigEndian}) | set(_UNCOMPRESSED)):
            contexts.append(build_context(sop_class, [ts]))
    return contexts[:128]


__all__ = ["Destination", "PeerLookup", "QueryRetrieveScp"]
