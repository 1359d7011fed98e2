"""pacsflow: the PACS workflow manager that keeps identity, orders, worklists and images aligned."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pacsflow")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
