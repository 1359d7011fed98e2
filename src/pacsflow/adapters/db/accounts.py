"""Users and API tokens in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pacsflow.adapters.db import tables as t
from pacsflow.adapters.db.timestamps import aware
from pacsflow.domain.access import Role
from pacsflow.domain.accounts import TokenRecord, UserRecord


class SqlAccountRepository:
    """Users and API tokens in SQL."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def user(self, username: str) -> UserRecord | None:
        """One user."""
        row = self._c.execute(sa.select(t.users).where(t.users.c.username == username)).first()
        return None if row is None else _user(row)

    def users(self) -> Sequence[UserRecord]:
        """Every user, by name."""
        rows = self._c.execute(sa.select(t.users).order_by(t.users.c.username)).all()
        return [_user(r) for r in rows]

    def add_user(self, user: UserRecord, at: datetime) -> None:
        """Create a user."""
        self._c.execute(
            sa.insert(t.users).values(
                username=user.username,
                roles=",".join(sorted(r.value for r in user.roles)),
                password_hash=user.password_hash,
                is_disabled=user.is_disabled,
                created_at=at,
            )
        )

    def token(self, token_id: str) -> TokenRecord | None:
        """One token by its public id."""
        row = self._c.execute(
            sa.select(t.api_tokens).where(t.api_tokens.c.token_id == token_id)
        ).first()
        if row is None:
            return None
        m = row._mapping
        return TokenRecord(
            token_id=m["token_id"],
            username=m["username"],
            secret_hash=m["secret_hash"],
            name=m["name"],
            created_at=aware(m["created_at"]),
            expires_at=aware(m["expires_at"]) if m["expires_at"] else None,
            revoked_at=aware(m["revoked_at"]) if m["revoked_at"] else None,
        )

    def add_token(self, token: TokenRecord) -> None:
        """Store a new token."""
        self._c.execute(
            sa.insert(t.api_tokens).values(
                token_id=token.token_id,
                username=token.username,
                secret_hash=token.secret_hash,
                name=token.name,
                created_at=token.created_at,
                expires_at=token.expires_at,
            )
        )

    def revoke_token(self, token_id: str, at: datetime) -> bool:
        """Revoke a live token."""
        done = self._c.execute(
            sa.update(t.api_tokens)
            .where(t.api_tokens.c.token_id == token_id, t.api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return bool(done.rowcount)


def _user(row: sa.Row[Any]) -> UserRecord:
    m = row._mapping
    return UserRecord(
        username=m["username"],
        roles=frozenset(Role(r) for r in m["roles"].split(",") if r),
        password_hash=m["password_hash"],
        is_disabled=bool(m["is_disabled"]),
    )


__all__ = ["SqlAccountRepository"]
