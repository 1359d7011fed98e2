"""DICOMweb client side: STOW-RS to routing destinations."""

from pacsflow.adapters.dicomweb.stow import StowDestination, StowSender

__all__ = ["StowDestination", "StowSender"]
