"""semantic search: sentence embeddings of messages, titles and sessions

One row per embedded text (``kind`` message, title or session), written by the analysis worker
when the optional ``semantic`` extra is installed; the table stays empty otherwise. Vectors are
float32 blobs on both databases, so brute-force search works everywhere. On PostgreSQL, when
the pgvector extension is available to this server, it is created and a ``pgv vector`` column
holds the same values, so similarity is computed inside the database instead.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "embeddings",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ref_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("dims", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("text_hash", sa.String(length=32), nullable=False),
        sa.Column("embedded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_embeddings_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "kind", "ref_id", name=op.f("pk_embeddings")),
    )
    op.create_index(
        "ix_embeddings_tenant_id_model_kind", "embeddings", ["tenant_id", "model", "kind"]
    )
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    available = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    ).scalar()
    if not available:
        return
    # Creating an extension needs privileges the application role may lack: try it in a
    # savepoint and keep the portable column alone when it fails.
    savepoint = bind.begin_nested()
    try:
        bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
        bind.execute(sa.text("ALTER TABLE embeddings ADD COLUMN pgv vector"))
    except sa.exc.DBAPIError:
        savepoint.rollback()
    else:
        savepoint.commit()


def downgrade() -> None:
    op.drop_index("ix_embeddings_tenant_id_model_kind", table_name="embeddings")
    op.drop_table("embeddings")
