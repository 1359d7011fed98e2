"""The workflow services the HTTP routes call, kept on the application and handed to each route."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from pacsflow.workflow.accounts import Accounts
from pacsflow.workflow.audit import AuditTrail
from pacsflow.workflow.exception_queue import ExceptionQueue
from pacsflow.workflow.jobs import Jobs
from pacsflow.workflow.prefetch import Prefetch
from pacsflow.workflow.queries import Queries
from pacsflow.workflow.reading import ReadingWorklist
from pacsflow.workflow.reconciliation import Reconciliation
from pacsflow.workflow.results import Results
from pacsflow.workflow.routing import Routing

#: The state of each listener by name ("up" or "down").
HealthCheck = Callable[[], dict[str, str]]


@dataclass(frozen=True, slots=True)
class ApiServices:
    """What the routes of one application work with."""

    queries: Queries
    health: HealthCheck
    accounts: Accounts
    trail: AuditTrail
    reconciliation: Reconciliation
    jobs: Jobs
    routing: Routing
    prefetch: Prefetch
    results: Results
    reading: ReadingWorklist
    exception_queue: ExceptionQueue


def api_services(request: Request) -> ApiServices:
    """The services of the application serving this request."""
    found: ApiServices = request.app.state.services
    return found


#: A route parameter that receives the application's services.
Services = Annotated[ApiServices, Depends(api_services)]

__all__ = ["ApiServices", "HealthCheck", "Services", "api_services"]
