"""Security primitives behind the workflow's ports: secret hashing (argon2id)."""

from pacsflow.adapters.security.hashing import Argon2Hasher
from pacsflow.adapters.security.tls import client_context, server_context

__all__ = ["Argon2Hasher", "client_context", "server_context"]
