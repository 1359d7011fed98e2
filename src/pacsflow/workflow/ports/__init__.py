"""What the use cases need from the outside world: one module of Protocols per capability.

Import each port from its own module (`pacsflow.workflow.ports.studies`, ...); the records
they carry live in `pacsflow.domain`. This package re-exports nothing.
"""
