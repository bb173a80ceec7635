"""sessions.history_rev: a counter bumped whenever a session's stored events are rewritten

A user purge blanks content inside stored events. Servers keep a session's most recent events
in memory to answer reconnects (``since_seq``) without a storage read; every subscribe reads
this counter with the session's access facts, so a memory copy older than a purge is never
served (see ``hub/feed.py``).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases (a constant default needs no table rebuild, which
    # would drop the triggers on sessions).
    op.add_column(
        "sessions", sa.Column("history_rev", sa.BigInteger(), server_default="0", nullable=False)
    )


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("history_rev")
