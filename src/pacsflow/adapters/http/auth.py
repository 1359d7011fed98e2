"""Bearer tokens and permissions: who is calling, and may they call this route."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from pacsflow.adapters.http.context import Services
from pacsflow.domain.access import Permission, Principal
from pacsflow.domain.audit import ActiveParticipant, Outcome
from pacsflow.domain.audit_events import query as audit_query
from pacsflow.domain.audit_events import user_authentication
from pacsflow.domain.errors import Forbidden, Unauthenticated


def participant(request: Request, username: str) -> ActiveParticipant:
    """The caller as the audit trail names them: user and network address."""
    host = request.client.host if request.client else ""
    return ActiveParticipant(user_id=username, is_requestor=True, network_access_point=host)


def principal(request: Request, services: Services) -> Principal:
    """The caller of a bearer token; a failed attempt is audited."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send Authorization: Bearer <token> (pacsflow tokens create)")
    try:
        return services.accounts.authenticate_token(token.strip())
    except Unauthenticated as exc:
        trail = services.trail
        trail.record(
            user_authentication(
                trail.source,
                participant(request, token.strip()[:15]),
                trail.clock.now(),
                outcome=Outcome.MINOR_FAILURE,
                description=str(exc),
            )
        )
        raise


#: A route parameter that receives the authenticated caller (authenticated once a request).
Caller = Annotated[Principal, Depends(principal)]


def _actor(request: Request, caller: Caller) -> ActiveParticipant:
    return participant(request, caller.username)


#: A route parameter that receives the caller as the audit trail names them.
Actor = Annotated[ActiveParticipant, Depends(_actor)]


def requires(permission: Permission) -> Any:
    """The dependency that lets a caller through with this permission (and audits the call)."""

    def check(request: Request, services: Services, caller: Caller) -> None:
        trail = services.trail
        who = participant(request, caller.username)
        allowed = caller.can(permission)
        if permission is Permission.READ_AUDIT:
            if not allowed:
                trail.refused(who)
        else:
            # Every read of patient data through the API is audited (110112 Query).
            trail.record(
                audit_query(
                    trail.source,
                    who,
                    trail.clock.now(),
                    query_text=f"{request.method} {request.url.path}?{request.url.query}",
                    outcome=Outcome.SUCCESS if allowed else Outcome.MINOR_FAILURE,
                )
            )
        if not allowed:
            raise Forbidden(f"{caller.username} lacks the permission {permission.value}")

    return Depends(check)


__all__ = ["Actor", "Caller", "participant", "principal", "requires"]
