"""exception ownership and targets

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 20:00:00
"""

from __future__ import annotations

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision (reserved; filled by the change that needs it)."""


def downgrade() -> None:
    """Revert this revision."""
