"""TLS contexts for the listeners, per BCP 195 (RFC 9325) as DICOM PS3.15 B.9-B.13 asks."""

from __future__ import annotations

import ssl
from pathlib import Path

#: Forward-secret AEAD suites only (TLS 1.2); TLS 1.3 suites are fixed by OpenSSL and all good.
BCP195_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"


def server_context(
    cert_file: Path, key_file: Path, ca_file: Path | None = None, *, require_client: bool = False
) -> ssl.SSLContext:
    """A server context: TLS 1.2 or newer, BCP 195 ciphers, optional client certificates."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(BCP195_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(str(cert_file), str(key_file))
    if ca_file is not None:
        ctx.load_verify_locations(str(ca_file))
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_OPTIONAL
    elif require_client:
        raise ValueError("requiring client certificates needs a CA file to check them")
    return ctx


def client_context(
    ca_file: Path | None = None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """A client context that checks the server against ca_file (or the system store)."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(BCP195_CIPHERS)
    if cert_file is not None:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return ctx


__all__ = ["BCP195_CIPHERS", "client_context", "server_context"]
