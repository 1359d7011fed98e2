"""SQLAlchemy table definitions of the index and the journals."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_TS = sa.DateTime(timezone=True)

patients = sa.Table(
    "patients",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("family_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("given_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("middle_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("name_prefix", sa.String(64), nullable=False, server_default=""),
    sa.Column("name_suffix", sa.String(64), nullable=False, server_default=""),
    sa.Column("birth_date", sa.Date, nullable=True),
    sa.Column("sex", sa.String(16), nullable=False, server_default=""),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
)

patient_identifiers = sa.Table(
    "patient_identifiers",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("patient_pk", sa.ForeignKey("patients.pk"), nullable=False, index=True),
    sa.Column("value", sa.String(64), nullable=False),
    sa.Column("issuer", sa.String(64), nullable=False, server_default=""),
    sa.Column("position", sa.Integer, nullable=False, server_default="0"),
    sa.UniqueConstraint("value", "issuer", name="uq_patient_identifiers_value_issuer"),
)

patient_merges = sa.Table(
    "patient_merges",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("survivor_id", sa.String(64), nullable=False),
    sa.Column("survivor_issuer", sa.String(64), nullable=False, server_default=""),
    sa.Column("merged_id", sa.String(64), nullable=False, index=True),
    sa.Column("merged_issuer", sa.String(64), nullable=False, server_default=""),
    sa.Column("at", _TS, nullable=False),
    # "merge" (ADT A40) or "change" (A47): either way the merged identifier is now an alias.
    sa.Column("kind", sa.String(16), nullable=False, server_default="merge"),
)

# Patients that are one person (ADT A24): both records stay, with their own identifiers,
# demographics, orders and studies; an unlink (A37) deletes the row and nothing else.
patient_links = sa.Table(
    "patient_links",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("patient_pk", sa.ForeignKey("patients.pk"), nullable=False, index=True),
    sa.Column("linked_pk", sa.ForeignKey("patients.pk"), nullable=False, index=True),
    sa.Column("at", _TS, nullable=False),
    sa.UniqueConstraint("patient_pk", "linked_pk", name="uq_patient_links_pair"),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("accession_number", sa.String(64), nullable=False, unique=True),
    sa.Column("patient_id", sa.String(64), nullable=False, index=True),
    sa.Column("patient_issuer", sa.String(64), nullable=False, server_default=""),
    sa.Column("study_instance_uid", sa.String(64), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("placer_order_number", sa.String(64), nullable=False, server_default=""),
    sa.Column("filler_order_number", sa.String(64), nullable=False, server_default=""),
    sa.Column("requested_procedure_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("requested_procedure_description", sa.String(200), nullable=False, server_default=""),
    sa.Column("procedure_code", sa.String(64), nullable=False, server_default=""),
    sa.Column("procedure_code_scheme", sa.String(64), nullable=False, server_default=""),
    sa.Column("procedure_code_meaning", sa.String(200), nullable=False, server_default=""),
    sa.Column("modality", sa.String(16), nullable=False, server_default=""),
    sa.Column("scheduled_station_ae", sa.String(16), nullable=False, server_default=""),
    sa.Column("scheduled_station_name", sa.String(64), nullable=False, server_default=""),
    sa.Column("scheduled_procedure_step_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("scheduled_start", _TS, nullable=True),
    sa.Column("priority", sa.String(16), nullable=False, server_default="ROUTINE"),
    sa.Column("referring_physician", sa.String(200), nullable=False, server_default=""),
    sa.Column("reason", sa.String(200), nullable=False, server_default=""),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
)

studies = sa.Table(
    "studies",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("study_instance_uid", sa.String(64), nullable=False, unique=True),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("patient_id", sa.String(64), nullable=True, index=True),
    sa.Column("patient_issuer", sa.String(64), nullable=True),
    sa.Column("accession_number", sa.String(64), nullable=False, server_default="", index=True),
    sa.Column("received_patient_id", sa.String(64), nullable=False),
    sa.Column("received_issuer", sa.String(64), nullable=False, server_default=""),
    sa.Column("received_family_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("received_given_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("received_middle_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("received_birth_date", sa.Date, nullable=True),
    sa.Column("received_sex", sa.String(16), nullable=False, server_default=""),
    sa.Column("received_accession", sa.String(64), nullable=False, server_default=""),
    sa.Column("study_date", sa.Date, nullable=True),
    sa.Column("study_time", sa.String(16), nullable=False, server_default=""),
    sa.Column("study_description", sa.String(200), nullable=False, server_default=""),
    sa.Column("study_id", sa.String(16), nullable=False, server_default=""),
    sa.Column("referring_physician", sa.String(200), nullable=False, server_default=""),
    sa.Column("source_ae", sa.String(16), nullable=False, server_default=""),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
    #: AI triage score (higher reads first on the reading worklist); NULL: not scored.
    sa.Column("triage_score", sa.Float, nullable=True),
)

series = sa.Table(
    "series",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("study_pk", sa.ForeignKey("studies.pk"), nullable=False, index=True),
    sa.Column("series_instance_uid", sa.String(64), nullable=False, unique=True),
    sa.Column("modality", sa.String(16), nullable=False, server_default=""),
    sa.Column("series_number", sa.String(16), nullable=False, server_default=""),
    sa.Column("series_description", sa.String(200), nullable=False, server_default=""),
    sa.Column("body_part", sa.String(64), nullable=False, server_default=""),
    sa.Column("series_date", sa.String(8), nullable=False, server_default=""),
    sa.Column("series_time", sa.String(16), nullable=False, server_default=""),
)

instances = sa.Table(
    "instances",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("series_pk", sa.ForeignKey("series.pk"), nullable=False, index=True),
    sa.Column("sop_instance_uid", sa.String(64), nullable=False, unique=True),
    sa.Column("sop_class_uid", sa.String(64), nullable=False),
    sa.Column("transfer_syntax_uid", sa.String(64), nullable=False),
    sa.Column("instance_number", sa.String(16), nullable=False, server_default=""),
    sa.Column("blob_key", sa.String(300), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("received_at", _TS, nullable=False),
    # The reason code when the instance is an IOCM rejection note (a control object, hidden).
    sa.Column("rejection_note", sa.String(16), nullable=True),
)

# Instances hidden by an IOCM rejection note, by SOP Instance UID: kept, never deleted here,
# and recorded even before the instance arrives (it is then refused when it does).
rejections = sa.Table(
    "rejections",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("sop_instance_uid", sa.String(64), nullable=False, unique=True),
    sa.Column("sop_class_uid", sa.String(64), nullable=False, server_default=""),
    sa.Column("series_instance_uid", sa.String(64), nullable=False),
    sa.Column("study_instance_uid", sa.String(64), nullable=False, index=True),
    sa.Column("reason", sa.String(16), nullable=False),
    sa.Column("rejected_at", _TS, nullable=False),
    sa.Column("rejected_by", sa.String(64), nullable=False, index=True),
)

exceptions = sa.Table(
    "exceptions",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("study_pk", sa.ForeignKey("studies.pk"), nullable=False, index=True),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("candidate_accession", sa.String(64), nullable=True),
    sa.Column("received_patient_id", sa.String(64), nullable=False),
    sa.Column("received_issuer", sa.String(64), nullable=False, server_default=""),
    sa.Column("received_family_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("received_given_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("received_birth_date", sa.Date, nullable=True),
    sa.Column("received_sex", sa.String(16), nullable=False, server_default=""),
    sa.Column("received_accession", sa.String(64), nullable=False, server_default=""),
    sa.Column("opened_at", _TS, nullable=False, index=True),
    sa.Column("resolved_at", _TS, nullable=True, index=True),
    sa.Column("resolution", sa.String(32), nullable=False, server_default=""),
    sa.Column("owner", sa.String(64), nullable=False, server_default=""),
)

reconciliation_actions = sa.Table(
    "reconciliation_actions",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    # NULL: an action on a study without an open exception (a correction or a split).
    sa.Column("exception_pk", sa.ForeignKey("exceptions.pk"), nullable=True, index=True),
    sa.Column("study_instance_uid", sa.String(64), nullable=False, index=True),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("at", _TS, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("before_state", sa.String(16), nullable=False),
    sa.Column("before_patient_id", sa.String(64), nullable=True),
    sa.Column("before_issuer", sa.String(64), nullable=True),
    sa.Column("before_accession", sa.String(64), nullable=False, server_default=""),
    sa.Column("undone_at", _TS, nullable=True),
    sa.Column("before_owner", sa.String(64), nullable=False, server_default=""),
    # Why the exception held the study before a correction that left it held (JSON: reason,
    # source, detail, candidate, received identity), restored by undo.
    sa.Column("before_hold", sa.Text, nullable=True),
    # The exception the action opened (a published study held again, a new study of a split);
    # no foreign key: undoing a split removes that exception with its study.
    sa.Column("opened_exception_pk", sa.Integer, nullable=True),
    # A split: the series moved, the study it went to, and whether the split created it.
    sa.Column("series_instance_uid", sa.String(64), nullable=True),
    sa.Column("target_study_uid", sa.String(64), nullable=True, index=True),
    sa.Column("is_new_target", sa.Boolean, nullable=False, server_default=sa.false()),
)

match_events = sa.Table(
    "match_events",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("study_instance_uid", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(32), nullable=True),
    sa.Column("source", sa.String(32), nullable=True),
    sa.Column("at", _TS, nullable=False, index=True),
)

order_events = sa.Table(
    "order_events",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("accession_number", sa.String(64), nullable=False, index=True),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("at", _TS, nullable=False, index=True),
)

hl7_messages = sa.Table(
    "hl7_messages",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("received_at", _TS, nullable=False, index=True),
    sa.Column("peer", sa.String(128), nullable=False, server_default=""),
    sa.Column("sending_application", sa.String(180), nullable=False, server_default=""),
    sa.Column("sending_facility", sa.String(180), nullable=False, server_default=""),
    sa.Column("control_id", sa.String(199), nullable=False, server_default=""),
    sa.Column("message_type", sa.String(32), nullable=False, server_default=""),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("ack", sa.LargeBinary, nullable=True),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    sa.Column("settled_at", _TS, nullable=True),
    sa.Column("digest", sa.String(64), nullable=False, server_default=""),
    sa.Column("reuses_pk", sa.Integer, nullable=True),
    sa.Index(
        "ix_hl7_messages_sender_control", "sending_application", "sending_facility", "control_id"
    ),
)

procedure_steps = sa.Table(
    "procedure_steps",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("sop_instance_uid", sa.String(64), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("accession_number", sa.String(64), nullable=False, server_default=""),
    sa.Column("study_instance_uid", sa.String(64), nullable=False, server_default=""),
    sa.Column("performed_station_ae", sa.String(16), nullable=False, server_default=""),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("roles", sa.String(200), nullable=False),
    sa.Column("password_hash", sa.String(200), nullable=False, server_default=""),
    sa.Column("is_disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", _TS, nullable=False),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("token_id", sa.String(32), nullable=False, unique=True),
    sa.Column("username", sa.String(64), nullable=False, index=True),
    sa.Column("secret_hash", sa.String(200), nullable=False),
    sa.Column("name", sa.String(200), nullable=False, server_default=""),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("expires_at", _TS, nullable=True),
    sa.Column("revoked_at", _TS, nullable=True),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False, server_default="{}"),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("run_at", _TS, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
    sa.Column("destination", sa.String(64), nullable=False, server_default=""),
    sa.Column("ordering_key", sa.String(200), nullable=False, server_default=""),
    sa.Column("last_error", sa.Text, nullable=False, server_default=""),
    sa.Column("lease_owner", sa.String(128), nullable=False, server_default=""),
    sa.Column("lease_until", _TS, nullable=True),
    sa.Column("finished_at", _TS, nullable=True),
    sa.Index("ix_jobs_state_run_at", "state", "run_at"),
    sa.Index("ix_jobs_ordering_key", "ordering_key", "state"),
)

routing_versions = sa.Table(
    "routing_versions",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("author", sa.String(64), nullable=False),
    sa.Column("comment", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", _TS, nullable=False),
)

routing_activations = sa.Table(
    "routing_activations",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("version", sa.ForeignKey("routing_versions.version"), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("at", _TS, nullable=False),
)

forwards = sa.Table(
    "forwards",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("sop_instance_uid", sa.String(64), nullable=False),
    sa.Column("destination", sa.String(64), nullable=False),
    sa.Column("blob_key", sa.String(300), nullable=False),
    sa.Column("study_instance_uid", sa.String(64), nullable=False, index=True),
    sa.Column("rule_version", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("queued_at", _TS, nullable=False),
    sa.Column("sent_at", _TS, nullable=True),
    sa.Column("last_error", sa.Text, nullable=False, server_default=""),
    sa.UniqueConstraint(
        "sop_instance_uid", "destination", "blob_key", name="uq_forwards_instance_destination"
    ),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("peer", sa.String(64), nullable=False, server_default=""),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("first_at", _TS, nullable=False),
    sa.Column("last_at", _TS, nullable=False),
    sa.Column("count", sa.Integer, nullable=False, server_default="1"),
    sa.UniqueConstraint("kind", "subject", "peer", name="uq_alerts_kind_subject_peer"),
)

priors = sa.Table(
    "priors",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("request_key", sa.String(200), nullable=False, index=True),
    sa.Column("study_instance_uid", sa.String(64), nullable=False, index=True),
    sa.Column("archive", sa.String(64), nullable=False),
    sa.Column("patient_id", sa.String(64), nullable=False),
    sa.Column("issuer", sa.String(64), nullable=False, server_default=""),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("study_date", sa.Date, nullable=True),
    sa.Column("modalities", sa.String(200), nullable=False, server_default=""),
    sa.Column("description", sa.String(200), nullable=False, server_default=""),
    sa.Column("requested_at", _TS, nullable=False),
    sa.Column("completed_at", _TS, nullable=True),
    sa.Column("instances", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=False, server_default=""),
    sa.UniqueConstraint("request_key", "study_instance_uid", name="uq_priors_request_study"),
)

reports = sa.Table(
    "reports",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("accession_number", sa.String(64), nullable=False, server_default="", index=True),
    sa.Column("study_instance_uid", sa.String(64), nullable=False, server_default="", index=True),
    sa.Column("attached_study_uid", sa.String(64), nullable=True, index=True),
    sa.Column("patient_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("issuer", sa.String(64), nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("text", sa.Text, nullable=False, server_default=""),
    sa.Column("radiologist", sa.String(200), nullable=False, server_default=""),
    sa.Column("observed_at", _TS, nullable=True),
    sa.Column("report_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("received_at", _TS, nullable=False),
    sa.Column("source", sa.String(64), nullable=False, server_default=""),
    sa.Column("flag", sa.String(200), nullable=False, server_default=""),
)

result_deliveries = sa.Table(
    "result_deliveries",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("subscriber", sa.String(64), nullable=False, index=True),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("study_instance_uid", sa.String(64), nullable=False),
    sa.Column("report_pk", sa.Integer, nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("queued_at", _TS, nullable=False),
    sa.Column("settled_at", _TS, nullable=True),
    sa.Column("ack_code", sa.String(4), nullable=False, server_default=""),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
)

reading_claims = sa.Table(
    "reading_claims",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("study_instance_uid", sa.String(64), nullable=False, unique=True),
    sa.Column("reader", sa.String(64), nullable=False, index=True),
    sa.Column("claimed_at", _TS, nullable=False),
    sa.Column("expires_at", _TS, nullable=False),
)

settings_log = sa.Table(
    "settings_log",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("node", sa.String(200), nullable=False, index=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("at", _TS, nullable=False),
)

__all__ = [
    "alerts",
    "api_tokens",
    "exceptions",
    "forwards",
    "hl7_messages",
    "instances",
    "jobs",
    "match_events",
    "metadata",
    "order_events",
    "orders",
    "patient_identifiers",
    "patient_links",
    "patient_merges",
    "patients",
    "priors",
    "procedure_steps",
    "reading_claims",
    "reconciliation_actions",
    "rejections",
    "reports",
    "result_deliveries",
    "routing_activations",
    "routing_versions",
    "series",
    "settings_log",
    "studies",
    "users",
]
