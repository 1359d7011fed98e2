"""The error tree of pacsflow.

PacsflowError
├── InvalidInput              input that can never be applied as sent (answer AE / 4xx / Cxxx)
│   ├── MissingIdentifier     a required identifier is absent
│   ├── UnsupportedMessage    a message type or event we do not handle
│   └── MalformedMessage      the message cannot be parsed
├── ConflictingState          input that disagrees with what is stored
│   ├── UnknownOrder          an order change for an order we never saw
│   ├── DuplicateAccession    a new order reusing another order's accession number
│   ├── IdentifierInUse       a changed patient identifier already names another patient
│   ├── UnknownProcedureStep  an update for a performed procedure step never created
│   ├── DuplicateProcedureStep  a performed procedure step created a second time
│   ├── ProcedureStepFinished  a change to a step already COMPLETED or DISCONTINUED
│   └── InstanceRejected      an instance arrives again after a rejection note rejected it
├── NotFound                  what the caller asked for does not exist (answer 404)
│   └── (workflow) UnknownJob, UnknownVersion, UnknownStudy: no such job, rules version, study
├── AccessDenied              the caller may not do this
│   ├── Unauthenticated       no valid credentials were presented
│   └── Forbidden             valid credentials, but not the permission
└── TransientError            the store or a peer is unavailable; retrying may succeed
    └── StorageFull           no space left where objects or their records are written
"""


class PacsflowError(Exception):
    """Root of every error pacsflow raises on purpose."""


class InvalidInput(PacsflowError):
    """Input that can never be applied as sent."""

    def __init__(self, message: str, *, location: str = "") -> None:
        super().__init__(message)
        self.location = location


class MissingIdentifier(InvalidInput):
    """A required identifier (patient ID, accession number, UID) is absent."""


class UnsupportedMessage(InvalidInput):
    """A message type, event or order control pacsflow does not handle."""


class MalformedMessage(InvalidInput):
    """The message cannot be parsed."""


class ConflictingState(PacsflowError):
    """Input that disagrees with what is already stored."""


class UnknownOrder(ConflictingState):
    """A change or cancel for an order pacsflow never received."""


class DuplicateAccession(ConflictingState):
    """A new order reuses an accession number that belongs to another order."""


class IdentifierInUse(ConflictingState):
    """A patient identifier cannot change to one that already names another patient."""


class UnknownProcedureStep(ConflictingState):
    """An update for a performed procedure step that was never created."""


class DuplicateProcedureStep(ConflictingState):
    """A performed procedure step is created again with the SOP Instance UID of an existing one."""


class ProcedureStepFinished(ConflictingState):
    """A change to a performed procedure step that is already COMPLETED or DISCONTINUED."""


class InstanceRejected(ConflictingState):
    """An instance arrives whose SOP Instance UID a rejection note rejected (IHE IOCM)."""


class NotFound(PacsflowError):
    """What the caller asked for (a study, a job, a rules version...) does not exist."""


class AccessDenied(PacsflowError):
    """The caller may not do this."""


class Unauthenticated(AccessDenied):
    """No valid credentials were presented."""


class Forbidden(AccessDenied):
    """The caller is known but lacks the permission."""


class TransientError(PacsflowError):
    """The store or a peer is unavailable; the same input may succeed later."""


class StorageFull(TransientError):
    """No space is left where objects, their spool files or their records are written."""


class PermanentError(PacsflowError):
    """Retrying cannot help (a peer refused for good, the work names what is gone)."""


def quote(value: str) -> str:
    """A received value for an error text, in quotes and as received (no doubled backslashes).

    Only characters that cannot be shown (controls) are written as \\xNN, so the text
    stays one line and keeps the frame it travels in intact.
    """
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in value)
    return f"'{shown}'"


__all__ = [
    "AccessDenied",
    "ConflictingState",
    "DuplicateAccession",
    "DuplicateProcedureStep",
    "Forbidden",
    "IdentifierInUse",
    "InstanceRejected",
    "InvalidInput",
    "MalformedMessage",
    "MissingIdentifier",
    "NotFound",
    "PacsflowError",
    "PermanentError",
    "ProcedureStepFinished",
    "StorageFull",
    "TransientError",
    "Unauthenticated",
    "UnknownOrder",
    "UnknownProcedureStep",
    "UnsupportedMessage",
    "quote",
]
