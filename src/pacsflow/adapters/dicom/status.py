"""The one map from pacsflow errors to DICOM status codes (PS3.4 B.2.3, C.4, F.7, J.3)."""

from __future__ import annotations

from pydicom.dataset import Dataset

from pacsflow.domain.errors import (
    AccessDenied,
    ConflictingState,
    DuplicateProcedureStep,
    InstanceRejected,
    InvalidInput,
    PacsflowError,
    ProcedureStepFinished,
    TransientError,
    UnknownProcedureStep,
)

SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
OUT_OF_RESOURCES = 0xA700
MOVE_DESTINATION_UNKNOWN = 0xA801
IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
UNABLE_TO_PROCESS = 0xC001
NO_SUCH_OBJECT_INSTANCE = 0x0112
DUPLICATE_SOP_INSTANCE = 0x0111
NOT_AUTHORIZED = 0x0124
PROCESSING_FAILURE = 0x0110
INVALID_ATTRIBUTE_VALUE = 0x0106
#: C-STORE of an instance an IOCM rejection note rejected: dcm4chee-arc's "Subsequent
#: occurrence of rejected object", in PS3.4's Refused (A7xx) range (IHE RAD-66 leaves the
#: code to the Image Manager).
SUBSEQUENT_OCCURRENCE_OF_REJECTED_OBJECT = 0xA771

_STORE = (
    (AccessDenied, NOT_AUTHORIZED),
    (TransientError, OUT_OF_RESOURCES),
    (InvalidInput, CANNOT_UNDERSTAND),
    (InstanceRejected, SUBSEQUENT_OCCURRENCE_OF_REJECTED_OBJECT),
    (ConflictingState, UNABLE_TO_PROCESS),
)

_N_SERVICE = (
    (AccessDenied, NOT_AUTHORIZED),
    (TransientError, PROCESSING_FAILURE),
    (UnknownProcedureStep, NO_SUCH_OBJECT_INSTANCE),
    (DuplicateProcedureStep, DUPLICATE_SOP_INSTANCE),
    # PS3.4 F.7.2.2.2: a finished step refuses every N-SET with Processing failure.
    (ProcedureStepFinished, PROCESSING_FAILURE),
    (InvalidInput, INVALID_ATTRIBUTE_VALUE),
    (ConflictingState, PROCESSING_FAILURE),
)


def store_status(error: Exception) -> int:
    """The C-STORE failure status for an error (never success)."""
    return _lookup(_STORE, error, UNABLE_TO_PROCESS)


def n_service_status(error: Exception) -> int:
    """The N-CREATE/N-SET failure status for an error."""
    return _lookup(_N_SERVICE, error, PROCESSING_FAILURE)


def _lookup(
    table: tuple[tuple[type[PacsflowError], int], ...], error: Exception, default: int
) -> int:
    for kind, status in table:
        if isinstance(error, kind):
            return status
    return default


def failure(status: int, comment: str) -> Dataset:
    """A status dataset with an Error Comment (LO, at most 64 characters)."""
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment.encode("ascii", "replace").decode()[:64]
    return ds


__all__ = [
    "CANCEL",
    "CANNOT_UNDERSTAND",
    "DATASET_MISMATCH",
    "DUPLICATE_SOP_INSTANCE",
    "MOVE_DESTINATION_UNKNOWN",
    "NOT_AUTHORIZED",
    "NO_SUCH_OBJECT_INSTANCE",
    "OUT_OF_RESOURCES",
    "PENDING",
    "PROCESSING_FAILURE",
    "SUBSEQUENT_OCCURRENCE_OF_REJECTED_OBJECT",
    "SUCCESS",
    "UNABLE_TO_PROCESS",
    "failure",
    "n_service_status",
    "store_status",
]
