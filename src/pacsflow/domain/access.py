"""Who may do what: roles, permissions, and the DICOM peer policy. Least privilege by default."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Role(enum.StrEnum):
    """What a person or system does in the imaging workflow."""

    ADMIN = "admin"
    INTEGRATION = "integration"
    TECHNOLOGIST = "technologist"
    RADIOLOGIST = "radiologist"
    RECONCILER = "reconciler"
    CLINICIAN = "clinician"
    AUDITOR = "auditor"


class Permission(enum.StrEnum):
    """One thing a caller may be allowed to do."""

    READ_STUDIES = "studies:read"
    READ_PATIENTS = "patients:read"
    READ_ORDERS = "orders:read"
    WRITE_ORDERS = "orders:write"
    READ_EXCEPTIONS = "exceptions:read"
    RECONCILE = "exceptions:reconcile"
    READ_AUDIT = "audit:read"
    MANAGE_USERS = "users:manage"
    MANAGE_CONFIG = "config:manage"
    WRITE_REPORTS = "reports:write"
    READ_JOBS = "jobs:read"
    MANAGE_JOBS = "jobs:manage"
    CLAIM_READING = "reading:claim"


P = Permission

#: The permission matrix (docs/security.md prints it). Administrators run the system but do
#: not read the audit log; auditors read only the audit log (separation of duties).
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(
        {
            P.READ_STUDIES,
            P.READ_ORDERS,
            P.READ_EXCEPTIONS,
            P.MANAGE_USERS,
            P.MANAGE_CONFIG,
            P.READ_JOBS,
            P.MANAGE_JOBS,
        }
    ),
    Role.INTEGRATION: frozenset(
        {P.READ_STUDIES, P.READ_ORDERS, P.WRITE_ORDERS, P.WRITE_REPORTS, P.READ_JOBS}
    ),
    Role.TECHNOLOGIST: frozenset({P.READ_STUDIES, P.READ_ORDERS, P.READ_EXCEPTIONS}),
    Role.RADIOLOGIST: frozenset({P.READ_STUDIES, P.READ_PATIENTS, P.READ_ORDERS, P.CLAIM_READING}),
    Role.RECONCILER: frozenset(
        {P.READ_STUDIES, P.READ_PATIENTS, P.READ_ORDERS, P.READ_EXCEPTIONS, P.RECONCILE}
    ),
    Role.CLINICIAN: frozenset({P.READ_STUDIES, P.READ_PATIENTS}),
    Role.AUDITOR: frozenset({P.READ_AUDIT}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a user (or system account) and its roles."""

    username: str
    roles: frozenset[Role]
    via: str = "token"

    def can(self, permission: Permission) -> bool:
        """True when any of the caller's roles grants the permission."""
        return allows(self.roles, permission)


def allows(roles: Iterable[Role], permission: Permission) -> bool:
    """True when any of the roles grants the permission."""
    return any(permission in ROLE_PERMISSIONS[role] for role in roles)


class DicomOperation(enum.StrEnum):
    """What a calling AE asks of pacsflow over DICOM."""

    ECHO = "echo"
    STORE = "store"
    WORKLIST = "worklist"
    PROCEDURE_STEP = "procedure_step"
    COMMITMENT = "commitment"
    QUERY = "query"
    RETRIEVE = "retrieve"


#: What any calling AE may do under the default policy: a new modality works on day one
#: (its objects go through matching as usual); reading data needs a configured peer.
OPEN_TO_ANY_AE = frozenset(
    {
        DicomOperation.ECHO,
        DicomOperation.STORE,
        DicomOperation.PROCEDURE_STEP,
        DicomOperation.COMMITMENT,
    }
)


@dataclass(frozen=True, slots=True)
class PeerRights:
    """What one configured DICOM peer may do, and where it may send C-MOVEs."""

    can_store: bool = True
    can_query: bool = True
    can_retrieve: bool = True
    move_destinations: frozenset[str] = frozenset()  # empty: only to itself

    def allows(self, operation: DicomOperation) -> bool:
        """True when this peer may perform the operation."""
        if operation in (DicomOperation.QUERY, DicomOperation.WORKLIST):
            return self.can_query
        if operation is DicomOperation.RETRIEVE:
            return self.can_retrieve
        if operation is DicomOperation.STORE:
            return self.can_store
        return True


def dicom_allows(
    operation: DicomOperation,
    rights: PeerRights | None,
    *,
    is_open: bool = False,
) -> bool:
    """The DICOM access decision for a calling AE (rights None: not a configured peer)."""
    if is_open:
        return True
    if rights is None:
        return operation in OPEN_TO_ANY_AE
    return rights.allows(operation)


def move_allowed(
    caller: str, rights: PeerRights | None, destination: str, *, is_open: bool
) -> bool:
    """True when the caller may C-MOVE to destination (a configured peer, checked elsewhere)."""
    if is_open:
        return True
    if rights is None or not rights.can_retrieve:
        return False
    return (
        destination == caller
        or destination in rights.move_destinations
        or ("*" in rights.move_destinations)
    )


__all__ = [
    "OPEN_TO_ANY_AE",
    "ROLE_PERMISSIONS",
    "DicomOperation",
    "PeerRights",
    "Permission",
    "Principal",
    "Role",
    "allows",
    "dicom_allows",
    "move_allowed",
]
