"""reading worklist claims and triage

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 20:00:00
"""

from __future__ import annotations

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision (reserved; filled by the change that needs it)."""


def downgrade() -> None:
    """Revert this revision."""
