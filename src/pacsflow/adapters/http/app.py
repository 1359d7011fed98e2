"""The FastAPI application factory: the routers of every capability, auth, problems, limits."""

from __future__ import annotations

from fastapi import FastAPI

from pacsflow import __version__
from pacsflow.adapters.http.context import ApiServices, HealthCheck
from pacsflow.adapters.http.limits import install_body_limits
from pacsflow.adapters.http.problems import install_problem_handlers
from pacsflow.adapters.http.routers import CAPABILITIES
from pacsflow.domain.access import Permission
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

#: Every route and the permission it needs (None: public), as the routes declare them. A test
#: walks the app and checks that each route is enforced for every role.
ROUTE_PERMISSIONS: dict[tuple[str, str], Permission | None] = {
    route: permission for routes in CAPABILITIES for route, permission in routes.permissions.items()
}


def create_app(
    queries: Queries,
    health: HealthCheck,
    accounts: Accounts,
    trail: AuditTrail,
    reconciliation: Reconciliation,
    jobs: Jobs,
    routing: Routing,
    prefetch: Prefetch,
    results: Results,
    *,
    reading: ReadingWorklist,
    exception_queue: ExceptionQueue,
) -> FastAPI:
    """The HTTP application over the read side of the workflow."""
    app = FastAPI(
        title="pacsflow",
        version=__version__,
        description=(
            "PACS workflow manager: studies, exceptions, orders and patients. "
            "Every /api route needs `Authorization: Bearer <token>` (`pacsflow tokens create`)."
        ),
    )
    app.state.services = ApiServices(
        queries=queries,
        health=health,
        accounts=accounts,
        trail=trail,
        reconciliation=reconciliation,
        jobs=jobs,
        routing=routing,
        prefetch=prefetch,
        results=results,
        reading=reading,
        exception_queue=exception_queue,
    )
    install_body_limits(app)
    install_problem_handlers(app)
    for routes in CAPABILITIES:
        routes.add_to(app)
    return app


__all__ = ["ROUTE_PERMISSIONS", "HealthCheck", "create_app"]
