"""Users, API tokens and authentication."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Iterable
from datetime import timedelta

from pacsflow.domain.access import Principal, Role
from pacsflow.domain.accounts import TokenRecord, UserRecord
from pacsflow.domain.audit import ActiveParticipant, AuditSource, Code, EventTypes
from pacsflow.domain.audit_events import security_alert
from pacsflow.domain.errors import ConflictingState, InvalidInput, Unauthenticated
from pacsflow.workflow.ports.accounts import SecretHasher
from pacsflow.workflow.ports.clock import Clock
from pacsflow.workflow.ports.uow import UnitOfWork, UnitOfWorkFactory

_USERNAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
_TOKEN = re.compile(r"^pf_([0-9a-f]{12})_([0-9a-f]{48})$")
#: A verified token is trusted this long without re-hashing (argon2 costs ~0.1 s a check).
CACHE_SECONDS = 60.0


class Accounts:
    """Creates users and tokens and tells who a caller is."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        hasher: SecretHasher,
        clock: Clock,
        audit_source: AuditSource | None = None,
        operator: str = "pacsflow-cli",
    ) -> None:
        self._source = audit_source or AuditSource("pacsflow")
        self._operator = ActiveParticipant(operator, is_requestor=True)
        self._uow = uow
        self._hasher = hasher
        self._clock = clock
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def create_user(self, username: str, roles: Iterable[Role], password: str = "") -> UserRecord:
        """Create a user or system account with at least one role."""
        if not _USERNAME.match(username):
            raise InvalidInput(
                "a username has 1-64 letters, digits or . _ @ -", location="username"
            )
        role_set = frozenset(roles)
        if not role_set:
            raise InvalidInput("a user needs at least one role", location="role")
        if password and len(password) < 12:
            raise InvalidInput("a password needs at least 12 characters", location="password")
        user = UserRecord(
            username=username,
            roles=role_set,
            password_hash=self._hasher.hash(password) if password else "",
        )
        with self._uow() as uow:
            if uow.accounts.user(username) is not None:
                raise ConflictingState(f"user {username!r} already exists")
            uow.accounts.add_user(user, self._clock.now())
            self._alert(uow, EventTypes.SECURITY_ROLES_CHANGED, f"user:{username}")
            uow.commit()
        return user

    def create_token(self, username: str, name: str, ttl: timedelta | None = None) -> str:
        """A new API token for the user; the only time its secret is ever shown."""
        token_id, secret = secrets.token_hex(6), secrets.token_hex(24)
        now = self._clock.now()
        with self._uow() as uow:
            user = uow.accounts.user(username)
            if user is None:
                raise InvalidInput(f"no user {username!r}", location="username")
            uow.accounts.add_token(
                TokenRecord(
                    token_id=token_id,
                    username=username,
                    secret_hash=self._hasher.hash(secret),
                    name=name,
                    created_at=now,
                    expires_at=now + ttl if ttl else None,
                )
            )
            self._alert(uow, EventTypes.USER_SECURITY_ATTRIBUTES_CHANGED, f"token:{token_id}")
            uow.commit()
        return f"pf_{token_id}_{secret}"

    def revoke_token(self, token_id: str) -> None:
        """Revoke a token (takes effect everywhere within the cache lifetime)."""
        with self._uow() as uow:
            if not uow.accounts.revoke_token(token_id, self._clock.now()):
                raise InvalidInput(f"no live token {token_id!r}", location="token")
            self._alert(uow, EventTypes.USER_SECURITY_ATTRIBUTES_CHANGED, f"token:{token_id}")
            uow.commit()
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if v[0].via != token_id}

    def _alert(self, uow: UnitOfWork, kind: Code, resource: str) -> None:
        """Record a change to who may do what (audited in the same transaction)."""
        event = security_alert(
            self._source, self._operator, self._clock.now(), alert=kind, resource=resource
        )
        uow.audit.append(event, self._clock.now())

    def authenticate_token(self, token: str) -> Principal:
        """The principal a bearer token stands for, or Unauthenticated."""
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        match = _TOKEN.match(token)
        if match is None:
            raise Unauthenticated("malformed token")
        token_id, secret = match.groups()
        with self._uow(read_only=True) as uow:
            record = uow.accounts.token(token_id)
            user = uow.accounts.user(record.username) if record else None
        if record is None or user is None or not self._hasher.verify(record.secret_hash, secret):
            raise Unauthenticated("unknown token")
        clock_now = self._clock.now()
        if record.revoked_at is not None or (
            record.expires_at is not None and record.expires_at <= clock_now
        ):
            raise Unauthenticated("token expired or revoked")
        if user.is_disabled:
            raise Unauthenticated("account disabled")
        principal = Principal(user.username, user.roles, via=token_id)
        with self._lock:
            self._cache[key] = (principal, now + CACHE_SECONDS)
        return principal

    def authenticate_password(self, username: str, password: str) -> Principal:
        """The principal for a username and password, or Unauthenticated."""
        with self._uow() as uow:
            user = uow.accounts.user(username)
        if (
            user is None
            or user.is_disabled
            or not user.password_hash
            or not self._hasher.verify(user.password_hash, password)
        ):
            raise Unauthenticated("wrong username or password")
        return Principal(user.username, user.roles, via="password")


__all__ = ["CACHE_SECONDS", "Accounts"]
