"""ATNA audit forwarding: DICOM audit messages (PS3.15 A.5) in syslog over TLS (RFC 5425)."""

from pacsflow.adapters.syslog.messages import audit_message, octet_counted, syslog_frame
from pacsflow.adapters.syslog.sender import SyslogTlsSender, client_tls_context

__all__ = [
    "SyslogTlsSender",
    "audit_message",
    "client_tls_context",
    "octet_counted",
    "syslog_frame",
]
