"""The one Settings class: an optional TOML file, overridden by PACSFLOW_* environment variables."""

from __future__ import annotations

import time
import tomllib
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, PositiveInt, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from pacsflow.domain.matching import ExceptionReason

Listener = Literal["dicom", "hl7", "http"]
LISTENERS: tuple[Listener, ...] = ("dicom", "hl7", "http")


class DicomPeer(BaseModel):
    """A remote DICOM application entity pacsflow knows (a C-MOVE destination, a modality)."""

    ae_title: str
    host: str
    port: int = Field(ge=1, le=65535)
    description: str = ""
    can_store: bool = True
    can_query: bool = True
    can_retrieve: bool = True
    #: AE titles this peer may C-MOVE to besides itself ("*": any configured peer).
    move_destinations: list[str] = Field(default_factory=list)
    #: Jobs (forwarding, prefetch) talking to this peer at the same time, across the node.
    max_concurrent_jobs: int = Field(default=2, ge=1)
    #: As a prefetch archive: search with IssuerOfPatientID too (false: by Patient ID only, for
    #: an archive whose old studies were stored without an issuer).
    query_with_issuer: bool = True

    @field_validator("ae_title")
    @classmethod
    def _ae_title(cls, value: str) -> str:
        value = value.strip()
        if not 0 < len(value) <= 16 or "\\" in value:
            raise ValueError("an AE title has 1 to 16 characters and no backslash")
        return value


class DicomwebDestination(BaseModel):
    """A DICOMweb origin server routing can send to by STOW-RS (by its name)."""

    name: str
    #: The DICOMweb base URL, e.g. http://pacs:8042/dicom-web (STOW-RS posts to {url}/studies).
    url: str
    bearer_token: str = ""
    username: str = ""
    password: str = ""
    verify_tls: bool = True
    ca_file: Path | None = None
    max_concurrent_jobs: int = Field(default=2, ge=1)


ResultEvent = Literal["report", "images_available"]
ResultStatusCode = Literal["I", "P", "F", "C", "X"]
_REPORTS_ONLY: tuple[ResultEvent, ...] = ("report",)
_SENT_STATUSES: tuple[ResultStatusCode, ...] = ("P", "F", "C", "X")


class ResultSubscriber(BaseModel):
    """A system (RIS, EHR) that gets results over HL7 MLLP."""

    name: str
    host: str
    port: int = Field(ge=1, le=65535)
    #: HL7 version written in MSH-12.
    version: str = "2.5.1"
    receiving_application: str = ""
    receiving_facility: str = ""
    #: What it wants: "report" (ORU^R01 per report version) and/or "images_available".
    events: list[ResultEvent] = Field(default_factory=lambda: list(_REPORTS_ONLY))
    #: Which result statuses it wants (OBR-25 codes).
    statuses: list[ResultStatusCode] = Field(default_factory=lambda: list(_SENT_STATUSES))
    #: A message delivered (ACK AA) within this long counts as on time (success rate).
    target_seconds: float = Field(default=300.0, gt=0)
    timeout_seconds: float = Field(default=30.0, gt=0)
    tls: bool = False
    max_concurrent_jobs: int = Field(default=1, ge=1)


class StationMapping(BaseModel):
    """Which scheduled station (AE title) performs a modality and/or procedure code."""

    station_ae: str
    modality: str = ""
    procedure_code: str = ""
    station_name: str = ""


class PrefetchRule(BaseModel):
    """Which priors matter for a procedure code (empty code: the default rule)."""

    procedure_code: str = ""
    same_modality: bool = True
    #: Modalities that are relevant whatever the current one (e.g. ["CR", "DX"] for chest).
    modalities: list[str] = Field(default_factory=list)
    same_body_part: bool = False
    years: int = Field(default=5, ge=0)
    max_priors: int = Field(default=3, ge=0)


class Settings(BaseSettings):
    """Everything pacsflow can be told; see docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix="PACSFLOW_", extra="forbid")

    data_dir: Path = Path("./pacsflow-data")
    database_url: str = ""
    storage_url: str = ""
    host: str = "127.0.0.1"
    ae_title: str = "PACSFLOW"
    dicom_port: int = Field(default=11112, ge=0, le=65535)
    hl7_port: int = Field(default=2575, ge=0, le=65535)
    http_port: int = Field(default=8080, ge=0, le=65535)
    #: Reject associations from AE titles that are not configured peers.
    dicom_strict: bool = False
    #: Lab mode: any AE may do everything (the start-up log warns). Never in production.
    dicom_open: bool = False
    #: Sending applications (MSH-3, or MSH-3^MSH-4) allowed to send HL7; empty: any.
    hl7_allowed_senders: list[str] = Field(default_factory=list)
    dicom_max_associations: int = Field(default=32, ge=1)
    #: Associations one source address may hold at a time (0: only the global limit).
    dicom_max_associations_per_address: int = Field(default=16, ge=0)
    #: Seconds a new connection may take to send its whole A-ASSOCIATE-RQ (PS3.8 ARTIM).
    dicom_artim_timeout: float = Field(default=5.0, gt=0, le=300)
    dicom_max_pdu: int = Field(default=262144, ge=0)
    #: Serve storage-only associations on pacsflow's own C-STORE receive path (see
    #: docs/interfaces.md); false sends every association through pynetdicom.
    dicom_fast_storage: bool = True
    peers: list[DicomPeer] = Field(default_factory=list)
    #: Systems that get reports and "images available" over HL7 MLLP.
    result_subscribers: list[ResultSubscriber] = Field(default_factory=list)
    #: STOW-RS endpoints routing rules may name in send_to (besides DICOM peers).
    dicomweb_destinations: list[DicomwebDestination] = Field(default_factory=list)
    station_mappings: list[StationMapping] = Field(default_factory=list)
    #: Where order values sit (key -> location); a table keyed by MSH-3 or MSH-3^MSH-4
    #: holds one sender's own overrides on top (docs/configuration.md).
    hl7_fields: dict[str, str | dict[str, str]] = Field(default_factory=dict)
    hl7_application: str = "PACSFLOW"
    hl7_facility: str = "PACSFLOW"
    #: TLS: with a certificate and key, the listeners named in tls_listeners speak TLS only.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    #: CA bundle for client certificates (and for our own TLS connections to peers).
    tls_ca_file: Path | None = None
    tls_require_client_cert: bool = False
    tls_listeners: list[Listener] = Field(default_factory=lambda: list(LISTENERS))
    #: Forward audit records to a syslog collector over TLS (RFC 5424/5425); empty: don't.
    audit_syslog_host: str = ""
    audit_syslog_port: int = Field(default=6514, ge=1, le=65535)
    audit_syslog_ca_file: Path | None = None
    audit_syslog_cert_file: Path | None = None
    audit_syslog_key_file: Path | None = None
    #: Job workers: threads per node, lease (a dead worker's job runs again after it),
    #: attempts before a job is dead-lettered, and the first retry delay (doubling, jittered).
    job_workers: int = Field(default=2, ge=0)
    job_lease_seconds: float = Field(default=60.0, gt=0)
    job_max_attempts: int = Field(default=8, ge=1)
    job_retry_base_seconds: float = Field(default=2.0, gt=0)
    job_retry_max_seconds: float = Field(default=600.0, gt=0)
    job_poll_seconds: float = Field(default=0.25, gt=0)
    #: Archives (AE titles of configured peers) searched for priors; empty: no prefetch.
    prefetch_archives: list[str] = Field(default_factory=list)
    prefetch_rules: list[PrefetchRule] = Field(default_factory=list)
    #: Body part examined per procedure code (e.g. {"CTCHEST": "CHEST"}), for the rules'
    #: same_body_part on an order; a code not listed: the words of its text.
    prefetch_body_parts: dict[str, str] = Field(default_factory=dict)
    #: This node's site, a context field routing rules can test.
    site: str = ""
    #: The site's time zone (IANA name, e.g. "Europe/Berlin"); every day boundary (today,
    #: worklist dates, reports, routing schedules, CLI dates) is computed in it. Empty: the
    #: host's zone.
    site_timezone: str = ""
    #: A study is stable (study_stable routing rules run) after this long without new instances.
    routing_stable_seconds: float = Field(default=60.0, ge=0)
    #: Reading worklist: minutes from arrival to final report per priority (STAT, ASAP,
    #: ROUTINE; a priority left out keeps its default 60, 240, 1440), and how long a
    #: radiologist's claim on a study lasts.
    reading_targets: dict[str, float] = Field(default_factory=dict)
    reading_claim_minutes: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    #: Minutes to resolve an exception, per reason (e.g. {"no_order": 480}); reasons not named
    #: keep their default: 60 for wrong-patient-like reasons, 240 for the rest.
    exception_targets: dict[ExceptionReason, PositiveInt] = Field(default_factory=dict)
    #: A query (C-FIND, C-MOVE/C-GET by Patient ID, the API) by a patient identifier merged or
    #: changed away (ADT A40/A47): "nothing" finds nothing, "redirect" finds the survivor's.
    merged_id_queries: Literal["nothing", "redirect"] = "nothing"
    log_level: str = "INFO"
    #: Cheap argon2 parameters so test suites can create many tokens; never in production.
    fast_hashing_for_tests: bool = False

    @field_validator("reading_targets")
    @classmethod
    def _reading_targets(cls, value: dict[str, float]) -> dict[str, float]:
        targets = {name.strip().upper(): minutes for name, minutes in value.items()}
        for priority, minutes in targets.items():
            if priority not in ("STAT", "ASAP", "ROUTINE"):
                raise ValueError(f"reading targets are for STAT, ASAP, ROUTINE, not {priority}")
            if not 0 < minutes < float("inf"):
                raise ValueError(f"the {priority} reading target must be positive minutes")
        return targets

    @field_validator("site_timezone")
    @classmethod
    def _site_timezone(cls, value: str) -> str:
        name = value.strip()
        if name:
            _zone(name)
        return name

    @field_validator("prefetch_body_parts")
    @classmethod
    def _prefetch_body_parts(cls, value: dict[str, str]) -> dict[str, str]:
        return {code.strip(): part.strip().upper() for code, part in value.items()}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment variables override the values read from the TOML file."""
        return env_settings, dotenv_settings, init_settings, file_secret_settings

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to SQLite in the data directory."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'pacsflow.db').resolve()}"

    @property
    def effective_storage_url(self) -> str:
        """The blob store URL, defaulting to files in the data directory."""
        return self.storage_url or (self.data_dir / "objects").resolve().as_uri()

    @property
    def site_zone(self) -> tzinfo:
        """The site time zone: site_timezone, else the host's."""
        return _zone(self.site_timezone) if self.site_timezone else host_zone()

    def tls_for(self, listener: str) -> bool:
        """True when the listener must speak TLS."""
        return self.tls_cert_file is not None and listener in self.tls_listeners

    def peer(self, ae_title: str) -> DicomPeer | None:
        """The configured peer with this AE title."""
        wanted = ae_title.strip()
        return next((p for p in self.peers if p.ae_title == wanted), None)

    def peer_address(self, ae_title: str) -> tuple[str, int] | None:
        """Host and port of the configured peer with this AE title."""
        peer = self.peer(ae_title)
        return (peer.host, peer.port) if peer else None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(
            f"site_timezone {name!r} is not a known IANA time zone (e.g. Europe/Berlin)"
        ) from exc


class _HostZone(tzinfo):
    """The host's local time zone as the C library keeps it (TZ, /etc/localtime), with its
    daylight saving rules: the offset is looked up per instant, not fixed at start."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        if dt is None:
            return timedelta(seconds=time.localtime().tm_gmtoff)
        wall = (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, 0, 0, -1)
        return timedelta(seconds=time.localtime(time.mktime(wall)).tm_gmtoff)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return time.strftime("%Z")

    def fromutc(self, dt: datetime) -> datetime:
        stamp = (dt.replace(tzinfo=None) - _EPOCH) / timedelta(seconds=1)
        return dt + timedelta(seconds=time.localtime(stamp).tm_gmtoff)

    def __repr__(self) -> str:
        return "host local time"


_EPOCH = datetime(1970, 1, 1)


def host_zone() -> tzinfo:
    """The host's local time zone (the site's when site_timezone is not set)."""
    return _HostZone()


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from an optional TOML file; PACSFLOW_* variables win over the file."""
    values: dict[str, Any] = {}
    if config_file is not None:
        with config_file.open("rb") as fh:
            values = tomllib.load(fh)
        values = values.get("pacsflow", values)
    values.update(overrides)
    return Settings(**values)


__all__ = [
    "DicomPeer",
    "DicomwebDestination",
    "PrefetchRule",
    "ResultSubscriber",
    "Settings",
    "StationMapping",
    "host_zone",
    "load_settings",
]
