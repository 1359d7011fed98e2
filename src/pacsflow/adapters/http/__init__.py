"""HTTP: the admin/API surface, health and (later) DICOMweb and FHIR."""

from pacsflow.adapters.http.app import HealthCheck, create_app
from pacsflow.adapters.http.server import HttpServer

__all__ = ["HealthCheck", "HttpServer", "create_app"]
