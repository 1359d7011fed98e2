"""Where a site's RIS puts the order values in ORM^O01, OMI^O23 and ORU^R01, per sender.

The accession number is read from its location, else from each fallback in turn: by default
the filler order number (ORC-3, then OBR-3), which many RIS use as the accession number and
which ORU^R01 always fell back to. Orders and results use the same chain, so a report finds
the order it belongs to. The placer order number (ORC-2/OBR-2) is not a default fallback: it
is the ordering system's number, unique only per placer; a site whose RIS sends nothing
better can add it, for one sender only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from pacsflow.adapters.hl7.codec import Location

_FILLER_ORDER_NUMBER = "ORC-3.1, OBR-3.1"


@dataclass(frozen=True, slots=True)
class OrderFieldLocations:
    """Where one message structure (ORM^O01, OMI^O23, ORU^R01) carries the site-dependent values.

    An empty location means the structure does not carry the value (e.g. no station AE in
    ORM); the accession number must always have one. `accession_fallbacks` lists, comma
    separated, where to look when the accession number's location is empty.
    """

    accession_number: str
    accession_fallbacks: str = ""
    requested_procedure_id: str = ""
    study_instance_uid: str = ""
    scheduled_procedure_step_id: str = ""
    modality: str = ""
    station_ae: str = ""
    station_name: str = ""

    def __post_init__(self) -> None:
        if not self.accession_number:
            raise ValueError("the accession number needs a location")
        for f in fields(self):
            value: str = getattr(self, f.name)
            for part in _split(value):
                Location.parse(part)  # ValueError names the malformed location

    def location(self, key: str) -> Location | None:
        """The parsed location of one value, or None when it is not mapped."""
        text: str = getattr(self, key)
        return Location.parse(text) if text else None

    def accession_chain(self) -> tuple[Location, ...]:
        """Where the accession number is read: its location, then each fallback in turn."""
        return tuple(
            Location.parse(part)
            for part in (self.accession_number, *_split(self.accession_fallbacks))
        )


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


ORM_DEFAULTS = OrderFieldLocations(
    accession_number="OBR-18",
    accession_fallbacks=_FILLER_ORDER_NUMBER,
    requested_procedure_id="OBR-19",
    study_instance_uid="ZDS-1.1",
    scheduled_procedure_step_id="OBR-20",
    modality="OBR-24",
)
"""IHE RAD-4/RAD-13 ORM^O01 (v2.3.1) placement."""

OMI_DEFAULTS = OrderFieldLocations(
    accession_number="IPC-1.1",
    accession_fallbacks=_FILLER_ORDER_NUMBER,
    requested_procedure_id="IPC-2",
    study_instance_uid="IPC-3",
    scheduled_procedure_step_id="IPC-4",
    modality="IPC-5",
    station_name="IPC-7",
    station_ae="IPC-9",
)
"""IHE RAD-4/RAD-13 OMI^O23 (v2.5.1) placement."""

ORU_DEFAULTS = OrderFieldLocations(
    accession_number="OBR-18", accession_fallbacks=_FILLER_ORDER_NUMBER
)
"""ORU^R01 (IHE RAD-28 style): only the accession number is read through the map."""

FIELD_MAP_KEYS = tuple(f.name for f in fields(OrderFieldLocations))
_STRUCTURES = ("ORM", "OMI", "ORU")


@dataclass(frozen=True, slots=True)
class FieldMap:
    """Where the order values sit in ORM^O01, OMI^O23 and ORU^R01, for a site's RIS."""

    orm: OrderFieldLocations = ORM_DEFAULTS
    omi: OrderFieldLocations = OMI_DEFAULTS
    oru: OrderFieldLocations = ORU_DEFAULTS

    def with_overrides(self, mapping: Mapping[str, str]) -> FieldMap:
        """This map with some locations replaced; ValueError on an unknown key or location.

        A key is a value name ("accession_number") and applies to every structure, or is
        qualified by one ("ORM.accession_number", "OMI.station_ae", "ORU.accession_fallbacks").
        An empty location unmaps a value.
        """
        changes: dict[str, dict[str, str]] = {name: {} for name in _STRUCTURES}
        for key, location in mapping.items():
            structure, _, name = key.rpartition(".")
            targets = (structure.upper(),) if structure else _STRUCTURES
            if name not in FIELD_MAP_KEYS or not set(targets) <= set(_STRUCTURES):
                raise ValueError(
                    f"unknown field map key {key!r}; use one of {', '.join(FIELD_MAP_KEYS)}, "
                    "optionally prefixed by ORM., OMI. or ORU."
                )
            for target in targets:
                changes[target][name] = location.strip()
        return FieldMap(
            orm=replace(self.orm, **changes["ORM"]),
            omi=replace(self.omi, **changes["OMI"]),
            oru=replace(self.oru, **changes["ORU"]),
        )


@dataclass(frozen=True, slots=True)
class SenderFieldMaps:
    """The site's field map, and the maps of senders (MSH-3, or MSH-3^MSH-4) that differ."""

    site: FieldMap = FieldMap()
    senders: Mapping[str, FieldMap] | None = None

    @classmethod
    def from_settings(cls, mapping: Mapping[str, str | Mapping[str, str]]) -> SenderFieldMaps:
        """From the `hl7_fields` setting: plain keys for the site, a table per sender on top.

        ValueError on an unknown key or a malformed location, naming the sender.
        """
        site = FieldMap().with_overrides({k: v for k, v in mapping.items() if isinstance(v, str)})
        senders: dict[str, FieldMap] = {}
        for sender, table in mapping.items():
            if isinstance(table, str):
                continue
            try:
                senders[sender] = site.with_overrides(table)
            except ValueError as exc:
                raise ValueError(f"hl7_fields for sender {sender!r}: {exc}") from exc
        return cls(site, senders)

    def for_sender(self, application: str, facility: str) -> FieldMap:
        """The map of one sender: its own (MSH-3^MSH-4 first, then MSH-3), else the site's."""
        senders = self.senders or {}
        return senders.get(f"{application}^{facility}") or senders.get(application) or self.site


__all__ = [
    "FIELD_MAP_KEYS",
    "OMI_DEFAULTS",
    "ORM_DEFAULTS",
    "ORU_DEFAULTS",
    "FieldMap",
    "OrderFieldLocations",
    "SenderFieldMaps",
]
