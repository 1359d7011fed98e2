"""Users, API tokens and the hashing of their secrets."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from pacsflow.domain.accounts import TokenRecord, UserRecord


class AccountRepository(Protocol):
    """Users and their API tokens."""

    def user(self, username: str) -> UserRecord | None:
        """One user."""
        ...

    def add_user(self, user: UserRecord, at: datetime) -> None:
        """Create a user (the username must be new)."""
        ...

    def users(self) -> Sequence[UserRecord]:
        """Every user, by name."""
        ...

    def token(self, token_id: str) -> TokenRecord | None:
        """One token by its public id."""
        ...

    def add_token(self, token: TokenRecord) -> None:
        """Store a new token."""
        ...

    def revoke_token(self, token_id: str, at: datetime) -> bool:
        """Revoke a token; False when there is no such live token."""
        ...


class SecretHasher(Protocol):
    """Slow, salted hashing of passwords and token secrets (argon2 in production)."""

    def hash(self, secret: str) -> str:
        """A self-describing hash of the secret."""
        ...

    def verify(self, hashed: str, secret: str) -> bool:
        """True when the secret matches the hash."""
        ...


__all__ = [
    "AccountRepository",
    "SecretHasher",
]
