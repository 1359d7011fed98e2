"""Security primitives behind the workflow's ports: secret hashing (argon2id)."""

from pacsflow.adapters.security.hashing import Argon2Hasher

__all__ = ["Argon2Hasher"]
