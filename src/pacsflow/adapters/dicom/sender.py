"""Outbound DICOM: sending stored instances to a peer by C-STORE, and reading their attributes.

Transfer syntaxes: each instance is offered in the syntax it was stored in; an uncompressed
one is also offered as explicit and implicit VR little endian, so a peer that accepts only
implicit VR still gets it (pydicom re-encodes uncompressed data sets). A compressed instance
whose syntax the peer refuses is reported as refused (nothing is transcoded yet).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.presentation import build_context

from pacsflow.domain.errors import PermanentError, TransientError
from pacsflow.domain.uids import Uid
from pacsflow.workflow.ports import InstanceRecord

log = logging.getLogger(__name__)

_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
#: Presentation contexts per association (PS3.8 allows 128).
_MAX_CONTEXTS = 120
_CONNECT_TIMEOUT = 10.0


def _nodelay(event: evt.Event) -> None:
    sock = event.assoc.dul.socket
    if sock is not None and sock.socket is not None:
        sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _syntaxes(stored: str) -> list[str]:
    if stored in _UNCOMPRESSED or stored == "1.2.840.10008.1.2.2":
        return [stored, *[ts for ts in _UNCOMPRESSED if ts != stored]]
    return [stored]


class DicomSender:
    """Sends instances to configured peers (one association per batch)."""

    def __init__(
        self,
        ae_title: str,
        address: Callable[[str], tuple[str, int] | None],
        local_path: Callable[[InstanceRecord], Path | None],
    ) -> None:
        self._ae_title = ae_title
        self._address = address
        self._local_path = local_path

    def send(self, destination: str, instances: Sequence[InstanceRecord]) -> Mapping[Uid, str]:
        """C-STORE each instance; per SOP Instance UID "" when accepted, else the reason."""
        address = self._address(destination)
        if address is None:
            raise PermanentError(f"{destination} is not a configured peer")
        host, port = address
        results: dict[Uid, str] = {}
        pending = list(instances)
        while pending:
            batch, pending = self._fit(pending)
            results.update(self._send_batch(destination, host, port, batch))
        return results

    def _fit(
        self, instances: list[InstanceRecord]
    ) -> tuple[list[InstanceRecord], list[InstanceRecord]]:
        """As many instances as fit the presentation contexts of one association."""
        contexts: set[tuple[str, str]] = set()
        for n, inst in enumerate(instances):
            key = (inst.sop_class_uid, inst.transfer_syntax_uid)
            if key not in contexts and len(contexts) >= _MAX_CONTEXTS:
                return instances[:n], instances[n:]
            contexts.add(key)
        return instances, []

    def _send_batch(
        self, destination: str, host: str, port: int, batch: list[InstanceRecord]
    ) -> dict[Uid, str]:
        try:
            with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT):
                pass  # pynetdicom leaks its socket when refused: probe first
        except OSError as exc:
            raise TransientError(f"cannot reach {destination} at {host}:{port}: {exc}") from exc
        ae = AE(ae_title=self._ae_title)
        ae.acse_timeout = 30
        ae.dimse_timeout = 120
        ae.network_timeout = 120
        wanted: dict[str, set[str]] = {}
        for inst in batch:
            wanted.setdefault(inst.sop_class_uid, set()).update(_syntaxes(inst.transfer_syntax_uid))
        contexts = [build_context(cls, sorted(ts)) for cls, ts in wanted.items()]
        # One context per (class, syntax) would be more precise; one per class with every
        # syntax lets the peer pick, which keeps within 128 contexts for mixed studies.
        ae.requested_contexts = contexts
        assoc = ae.associate(
            host, port, ae_title=destination, evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay)]
        )
        if not assoc.is_established:
            raise TransientError(f"{destination} did not accept an association")
        results: dict[Uid, str] = {}
        try:
            accepted = {
                (str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in assoc.accepted_contexts
            }
            for inst in batch:
                uid = inst.sop_instance_uid
                syntaxes = [
                    ts
                    for ts in _syntaxes(inst.transfer_syntax_uid)
                    if (inst.sop_class_uid, ts) in accepted
                ]
                if not syntaxes:
                    results[uid] = (
                        f"{destination} accepts {inst.sop_class_uid} in none of "
                        f"{', '.join(_syntaxes(inst.transfer_syntax_uid))}"
                    )
                    continue
                results[uid] = self._store(assoc, inst, syntaxes[0])
                if not assoc.is_established:
                    for rest in batch:
                        results.setdefault(rest.sop_instance_uid, "association lost")
                    break
        finally:
            if assoc.is_established:
                assoc.release()
        return results

    def _store(self, assoc: object, inst: InstanceRecord, syntax: str) -> str:
        path = self._local_path(inst)
        if path is None:
            return "the stored object is not available locally"
        if syntax == inst.transfer_syntax_uid:
            # pynetdicom streams a file in its own syntax straight from disk.
            status = assoc.send_c_store(path)  # type: ignore[attr-defined]
        else:
            ds = dcmread(path)
            ds.file_meta.TransferSyntaxUID = UID(syntax)
            status = assoc.send_c_store(ds)  # type: ignore[attr-defined]
        code = int(getattr(status, "Status", -1)) if status else -1
        if code == 0 or 0xB000 <= code < 0xC000:  # success or warning: stored
            return ""
        return f"C-STORE status {code:#06x}" if code >= 0 else "no C-STORE response"


def read_attributes(path: Path) -> dict[str, tuple[str, ...]]:
    """The top-level attributes of a stored file (no pixel data, no sequences) as text."""
    ds = dcmread(path, stop_before_pixels=True)
    return attributes_of(ds)


def attributes_of(ds: Dataset) -> dict[str, tuple[str, ...]]:
    """keyword -> values as text, for routing conditions."""
    out: dict[str, tuple[str, ...]] = {}
    for elem in ds:
        if not elem.keyword or elem.VR in ("SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN"):
            continue
        value = elem.value
        if value is None or value == "":
            continue
        values = value if elem.VM > 1 else [value]
        out[elem.keyword] = tuple(str(v) for v in values)
    return out


__all__ = ["DicomSender", "attributes_of", "read_attributes"]
