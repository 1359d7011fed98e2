"""STOW-RS (PS3.18 10.5): send stored instances to a DICOMweb endpoint.

One POST {base}/studies per batch, a multipart/related body of application/dicom parts
streamed from the stored files. The answer's Referenced SOP Sequence (0008,1199) and Failed
SOP Sequence (0008,1198) say which instances the origin server kept (200 all, 202 some,
409 none); an instance the answer does not mention counts as failed.
"""

from __future__ import annotations

import logging
import ssl
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pacsflow.domain.errors import PermanentError, TransientError
from pacsflow.domain.studies import InstanceRecord
from pacsflow.domain.uids import Uid

log = logging.getLogger(__name__)

_REFERENCED = "00081199"
_FAILED = "00081198"
_SOP_INSTANCE = "00081155"
_REASON = "00081197"
_CHUNK = 1 << 20
#: Instances per request: one answer per batch, without holding a huge request open.
_BATCH = 50


@dataclass(frozen=True, slots=True)
class StowDestination:
    """A DICOMweb endpoint routing can send to."""

    name: str
    base_url: str  # e.g. http://pacs:8042/dicom-web
    bearer_token: str = ""
    username: str = ""
    password: str = ""
    timeout: float = 120.0
    verify: ssl.SSLContext | bool = True


def _body(files: Sequence[Path], boundary: str) -> Iterator[bytes]:
    for path in files:
        yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                yield chunk
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def _uids(answer: Mapping[str, Any], tag: str) -> dict[str, str]:
    """SOP Instance UID -> failure reason (or "") from one sequence of a STOW answer."""
    found: dict[str, str] = {}
    for item in answer.get(tag, {}).get("Value", []) or []:
        uid = (item.get(_SOP_INSTANCE, {}).get("Value") or [""])[0]
        reason = (item.get(_REASON, {}).get("Value") or [""])[0]
        if uid:
            found[str(uid)] = f"failure reason {int(reason):#06x}" if reason != "" else ""
    return found


class StowSender:
    """Sends instances to configured STOW-RS destinations by name."""

    def __init__(
        self,
        destinations: Mapping[str, StowDestination],
        local_path: Callable[[InstanceRecord], Path | None],
    ) -> None:
        self._destinations = dict(destinations)
        self._local_path = local_path

    def knows(self, name: str) -> bool:
        """True when name is a configured STOW-RS destination."""
        return name in self._destinations

    def send(self, destination: str, instances: Sequence[InstanceRecord]) -> Mapping[Uid, str]:
        """POST the instances; per SOP Instance UID "" when stored, else why not."""
        target = self._destinations.get(destination)
        if target is None:
            raise PermanentError(f"{destination} is not a configured DICOMweb destination")
        results: dict[Uid, str] = {}
        for start in range(0, len(instances), _BATCH):
            results.update(self._post(target, instances[start : start + _BATCH]))
        return results

    def _post(self, target: StowDestination, batch: Sequence[InstanceRecord]) -> dict[Uid, str]:
        results: dict[Uid, str] = {}
        files: list[Path] = []
        sent: list[InstanceRecord] = []
        for inst in batch:
            path = self._local_path(inst)
            if path is None:
                results[inst.sop_instance_uid] = "the stored object is not available locally"
            else:
                files.append(path)
                sent.append(inst)
        if not sent:
            return results
        boundary = uuid.uuid4().hex
        headers = {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        }
        if target.bearer_token:
            headers["Authorization"] = f"Bearer {target.bearer_token}"
        auth = httpx.BasicAuth(target.username, target.password) if target.username else None
        url = target.base_url.rstrip("/") + "/studies"
        try:
            with httpx.Client(timeout=target.timeout, verify=target.verify, auth=auth) as client:
                response = client.post(url, content=_body(files, boundary), headers=headers)
        except httpx.HTTPError as exc:
            raise TransientError(f"cannot reach {target.name} at {url}: {exc}") from exc
        if response.status_code in (401, 403):
            raise TransientError(f"{target.name} refused our credentials ({response.status_code})")
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise TransientError(f"{target.name} answered {response.status_code}")
        try:
            answer: Mapping[str, Any] = response.json() if response.content else {}
        except ValueError:
            answer = {}
        stored = _uids(answer, _REFERENCED)
        failed = _uids(answer, _FAILED)
        for inst in sent:
            uid = str(inst.sop_instance_uid)
            if uid in failed:
                results[inst.sop_instance_uid] = failed[uid] or "refused"
            elif uid in stored or (response.status_code == 200 and not answer):
                results[inst.sop_instance_uid] = ""
            else:
                results[inst.sop_instance_uid] = f"not acknowledged (HTTP {response.status_code})"
        return results


__all__ = ["StowDestination", "StowSender"]
