"""User accounts and API tokens as stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pacsflow.domain.access import Role


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user or system account as stored: roles and a password hash (never the password)."""

    username: str
    roles: frozenset[Role]
    password_hash: str = ""
    is_disabled: bool = False


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An API token as stored: its public id and the hash of its secret."""

    token_id: str
    username: str
    secret_hash: str
    name: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


__all__ = [
    "TokenRecord",
    "UserRecord",
]
