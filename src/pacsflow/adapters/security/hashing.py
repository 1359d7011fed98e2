"""argon2id hashing of passwords and token secrets (RFC 9106 parameters of argon2-cffi)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class Argon2Hasher:
    """Salted argon2id hashes; each verification costs ~0.1 s by design."""

    def __init__(self, *, fast_for_tests: bool = False) -> None:
        self._ph = (
            PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
            if fast_for_tests
            else PasswordHasher()
        )

    def hash(self, secret: str) -> str:
        """A self-describing argon2id hash."""
        return self._ph.hash(secret)

    def verify(self, hashed: str, secret: str) -> bool:
        """True when the secret matches the hash."""
        try:
            return self._ph.verify(hashed, secret)
        except (VerificationError, InvalidHashError):
            return False


__all__ = ["Argon2Hasher"]
