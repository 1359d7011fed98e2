"""One module of routes per capability; the application serves them in this order."""

from pacsflow.adapters.http.routers import (
    alerts,
    audit,
    exceptions,
    health,
    jobs,
    orders,
    patients,
    prefetch,
    reading,
    reconciliation,
    reports,
    routing,
    studies,
)

#: Every capability's routes, each declared with its permission.
CAPABILITIES = (
    health.routes,
    studies.routes,
    exceptions.routes,
    reconciliation.routes,
    orders.routes,
    patients.routes,
    audit.routes,
    jobs.routes,
    routing.routes,
    prefetch.routes,
    alerts.routes,
    reports.routes,
    reading.routes,
)

__all__ = ["CAPABILITIES"]
