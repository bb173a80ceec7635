"""conversation intelligence: search index, analysis jobs, insights, summaries, tag suggestions

The search index (``search_docs``) holds one row per searchable text: a message, a session
title, a tag, an annotation. Database triggers keep it in step with its sources inside the
writing transaction, so every writer (REST, socket, relay, importers) is covered and a crash can
never leave the index behind. SQLite adds an FTS5 table over it (external content); PostgreSQL
a generated ``tsvector`` column with a GIN index. The same triggers queue the session for
analysis in ``analysis_jobs`` (one row per session: the queue debounces by construction).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

# Private-use characters mark highlights in snippets; they are removed from indexed text so a
# message can never forge a highlight. On PostgreSQL a third one stands in for "<" while text is
# parsed: its default parser reads "<script> ..." as markup and would drop the words after it.
_SQLITE_EPOCH = "((julianday('now') - 2440587.5) * 86400.0)"
# Message text sealed by encryption at rest starts with ESC "penc:" (governance/crypto): it is
# not indexed, since ciphertext matches nothing (docs/privacy.md, "What stays searchable").
_SQLITE_BODY = (
    "CASE WHEN substr(NEW.text, 1, 6) = char(27) || 'penc:' THEN ''"
    " ELSE replace(replace(NEW.text, char(57344), ''), char(57345), '') END"
)

_SQLITE_TRIGGERS = [
    # search_docs -> FTS5 (external content: the FTS table stores only the index)
    """CREATE TRIGGER search_docs_ai AFTER INSERT ON search_docs BEGIN
        INSERT INTO search_fts(rowid, body) VALUES (NEW.id, NEW.body);
    END""",
    """CREATE TRIGGER search_docs_ad AFTER DELETE ON search_docs BEGIN
        INSERT INTO search_fts(search_fts, rowid, body) VALUES ('delete', OLD.id, OLD.body);
    END""",
    """CREATE TRIGGER search_docs_au AFTER UPDATE OF body ON search_docs BEGIN
        INSERT INTO search_fts(search_fts, rowid, body) VALUES ('delete', OLD.id, OLD.body);
        INSERT INTO search_fts(rowid, body) VALUES (NEW.id, NEW.body);
    END""",
    # sources -> search_docs, and messages -> analysis_jobs
    f"""CREATE TRIGGER messages_search_ai AFTER INSERT ON messages BEGIN
        INSERT INTO search_docs(tenant_id, session_id, kind, ref_id, author_id, created_at, body)
        VALUES (NEW.tenant_id, NEW.session_id, 'message', NEW.id, NEW.author_id,
                NEW.created_at, {_SQLITE_BODY});
        INSERT INTO analysis_jobs(session_id, tenant_id, first_requested_at, requested_at, attempts)
        VALUES (NEW.session_id, NEW.tenant_id, {_SQLITE_EPOCH}, {_SQLITE_EPOCH}, 0)
        ON CONFLICT(session_id) DO UPDATE SET requested_at = excluded.requested_at;
    END""",
    f"""CREATE TRIGGER messages_search_au AFTER UPDATE OF text ON messages BEGIN
        UPDATE search_docs
           SET body = {_SQLITE_BODY}
         WHERE session_id = NEW.session_id AND kind = 'message' AND ref_id = NEW.id;
        INSERT INTO analysis_jobs(session_id, tenant_id, first_requested_at, requested_at, attempts)
        VALUES (NEW.session_id, NEW.tenant_id, {_SQLITE_EPOCH}, {_SQLITE_EPOCH}, 0)
        ON CONFLICT(session_id) DO UPDATE SET requested_at = excluded.requested_at;
    END""",
    """CREATE TRIGGER messages_search_ad AFTER DELETE ON messages BEGIN
        DELETE FROM search_docs
         WHERE session_id = OLD.session_id AND kind = 'message' AND ref_id = OLD.id;
    END""",
    """CREATE TRIGGER sessions_search_ai AFTER INSERT ON sessions BEGIN
        INSERT INTO search_docs(tenant_id, session_id, kind, ref_id, author_id, created_at, body)
        VALUES (NEW.tenant_id, NEW.id, 'title', NEW.id, NEW.created_by, NEW.created_at,
                replace(replace(NEW.title, char(57344), ''), char(57345), ''));
    END""",
    """CREATE TRIGGER sessions_search_au AFTER UPDATE OF title ON sessions BEGIN
        UPDATE search_docs
           SET body = replace(replace(NEW.title, char(57344), ''), char(57345), '')
         WHERE session_id = NEW.id AND kind = 'title';
    END""",
    """CREATE TRIGGER sessions_search_ad AFTER DELETE ON sessions BEGIN
        DELETE FROM search_docs WHERE session_id = OLD.id;
        DELETE FROM analysis_jobs WHERE session_id = OLD.id;
    END""",
    """CREATE TRIGGER session_tags_search_ai AFTER INSERT ON session_tags BEGIN
        INSERT INTO search_docs(tenant_id, session_id, kind, ref_id, author_id, created_at, body)
        VALUES (NEW.tenant_id, NEW.session_id, 'tag', NEW.tag, NULL,
                (SELECT created_at FROM sessions WHERE id = NEW.session_id),
                replace(replace(NEW.tag, char(57344), ''), char(57345), ''));
    END""",
    """CREATE TRIGGER session_tags_search_ad AFTER DELETE ON session_tags BEGIN
        DELETE FROM search_docs
         WHERE session_id = OLD.session_id AND kind = 'tag' AND ref_id = OLD.tag;
    END""",
    """CREATE TRIGGER events_search_ai AFTER INSERT ON events
    WHEN NEW.name = 'annotation.created' BEGIN
        INSERT OR IGNORE INTO search_docs(
            tenant_id, session_id, kind, ref_id, author_id, created_at, body)
        VALUES (NEW.tenant_id, NEW.session_id, 'annotation',
                coalesce(json_extract(NEW.data, '$.annotation.id'), 'seq:' || NEW.seq),
                coalesce(json_extract(NEW.data, '$.annotation.author'), NEW.actor_id),
                NEW.created_at,
                replace(replace(coalesce(json_extract(NEW.data, '$.annotation.body'), ''),
                        char(57344), ''), char(57345), ''));
    END""",
]

_PG_STRIP = "replace(replace(replace({0}, U&'\\E000', ''), U&'\\E001', ''), U&'\\E002', '')"
_PG_BODY = (
    "CASE WHEN left(NEW.text, 6) = chr(27) || 'penc:' THEN '' ELSE "
    + _PG_STRIP.format("NEW.text")
    + " END"
)
_PG_ENQUEUE = """
        INSERT INTO analysis_jobs(session_id, tenant_id, first_requested_at, requested_at, attempts)
        VALUES (NEW.session_id, NEW.tenant_id, extract(epoch from clock_timestamp()),
                extract(epoch from clock_timestamp()), 0)
        ON CONFLICT (session_id) DO UPDATE SET requested_at = excluded.requested_at;"""

_PG_FUNCTIONS = {
    "parley_messages_search": f"""
    BEGIN
      IF TG_OP = 'INSERT' THEN
        INSERT INTO search_docs(tenant_id, session_id, kind, ref_id, author_id, created_at, body)
        VALUES (NEW.tenant_id, NEW.session_id, 'message', NEW.id, NEW.author_id, NEW.created_at,
                {_PG_BODY});
        {_PG_ENQUEUE}
      ELSIF TG_OP = 'UPDATE' THEN
        IF NEW.text IS DISTINCT FROM OLD.text THEN
          UPDATE search_docs SET body = {_PG_BODY}
           WHERE session_id = NEW.session_id AND kind = 'message' AND ref_id = NEW.id;
          {_PG_ENQUEUE}
        END IF;
      ELSE
        DELETE FROM search_docs
         WHERE session_id = OLD.session_id AND kind = 'message' AND ref_id = OLD.id;
      END IF;
      RETURN NULL;
    END""",
    "parley_sessions_search": f"""
    BEGIN
      IF TG_OP = 'INSERT' THEN
        INSERT INTO search_docs(tenant_id, session_id, kind, ref_id, author_id, created_at, body)
        VALUES (NEW.tenant_id, NEW.id, 'title', NEW.id, NEW.created_by, NEW.created_at,
                {_PG_STRIP.format("NEW.title")});
      ELSIF TG_OP = 'UPDATE' THEN
        IF NEW.title IS DISTINCT FROM OLD.title THEN
          UPDATE search_docs SET body = {_PG_STRIP.format("NEW.title")}
           WHERE session_id = NEW.id AND kind = 'title';
        END IF;
      ELSE
        DELETE FROM search_docs WHERE session_id = OLD.id;
        DELETE FROM analysis_jobs WHERE session_id = OLD.id;
      END IF;
      RETURN NULL;
    END""",
    "parley_session_tags_search": f"""
    BEGIN
      IF TG_OP = 'INSERT' THEN
        INSERT INTO search_docs(tenant_id, session_id, kind, ref_id, author_id, created_at, body)
        VALUES (NEW.tenant_id, NEW.session_id, 'tag', NEW.tag, NULL,
                (SELECT created_at FROM sessions WHERE id = NEW.session_id),
                {_PG_STRIP.format("NEW.tag")});
      ELSE
        DELETE FROM search_docs
         WHERE session_id = OLD.session_id AND kind = 'tag' AND ref_id = OLD.tag;
      END IF;
      RETURN NULL;
    END""",
    "parley_events_search": f"""
    BEGIN
      INSERT INTO search_docs(tenant_id, session_id, kind, ref_id, author_id, created_at, body)
      VALUES (NEW.tenant_id, NEW.session_id, 'annotation',
              coalesce(NEW.data->'annotation'->>'id', 'seq:' || NEW.seq),
              coalesce(NEW.data->'annotation'->>'author', NEW.actor_id), NEW.created_at,
              {_PG_STRIP.format("coalesce(NEW.data->'annotation'->>'body', '')")})
      ON CONFLICT DO NOTHING;
      RETURN NULL;
    END""",
}

_PG_TRIGGERS = [
    "CREATE TRIGGER messages_search AFTER INSERT OR UPDATE OF text OR DELETE ON messages"
    " FOR EACH ROW EXECUTE FUNCTION parley_messages_search()",
    "CREATE TRIGGER sessions_search AFTER INSERT OR UPDATE OF title OR DELETE ON sessions"
    " FOR EACH ROW EXECUTE FUNCTION parley_sessions_search()",
    "CREATE TRIGGER session_tags_search AFTER INSERT OR DELETE ON session_tags"
    " FOR EACH ROW EXECUTE FUNCTION parley_session_tags_search()",
    "CREATE TRIGGER events_search AFTER INSERT ON events FOR EACH ROW"
    " WHEN (NEW.name = 'annotation.created') EXECUTE FUNCTION parley_events_search()",
]


def _session_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["session_id"],
        ["sessions.id"],
        name=op.f(f"fk_{table}_session_id_sessions"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "search_docs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ref_id", sa.String(length=128), nullable=False),
        sa.Column("author_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_docs")),
        sa.UniqueConstraint(
            "session_id", "kind", "ref_id", name=op.f("uq_search_docs_session_id_kind_ref_id")
        ),
    )
    op.create_index(op.f("ix_search_docs_tenant_id"), "search_docs", ["tenant_id"])
    op.create_table(
        "analysis_jobs",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("first_requested_at", sa.Float(), nullable=False),
        sa.Column("requested_at", sa.Float(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_analysis_jobs")),
    )
    op.create_table(
        "message_insights",
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("author_id", sa.String(length=128), nullable=False),
        sa.Column("text_hash", sa.String(length=32), nullable=False),
        sa.Column("sentiment", sa.Float(), nullable=False),
        sa.Column("sentiment_label", sa.String(length=16), nullable=False),
        sa.Column("intent", sa.String(length=16), nullable=False),
        sa.Column("analyzed_at", sa.DateTime(timezone=True), nullable=False),
        _session_fk("message_insights"),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_message_insights")),
    )
    op.create_index(
        op.f("ix_message_insights_session_id_seq"), "message_insights", ["session_id", "seq"]
    )
    op.create_table(
        "session_insights",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("terms", JSON, nullable=False),
        sa.Column("keywords", JSON, nullable=False),
        sa.Column("topics", JSON, nullable=False),
        sa.Column("sentiment", JSON, nullable=False),
        sa.Column("intents", JSON, nullable=False),
        sa.Column("auto_title", sa.String(length=500), nullable=True),
        sa.Column("analyzed_seq", sa.BigInteger(), nullable=False),
        sa.Column("message_count", sa.Integer(), nullable=False),
        sa.Column("analyzed_at", sa.DateTime(timezone=True), nullable=False),
        _session_fk("session_insights"),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_session_insights")),
    )
    op.create_index(op.f("ix_session_insights_tenant_id"), "session_insights", ["tenant_id"])
    op.create_table(
        "session_summaries",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("from_seq", sa.BigInteger(), nullable=False),
        sa.Column("to_seq", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _session_fk("session_summaries"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_summaries")),
    )
    op.create_index(
        op.f("ix_session_summaries_session_id_from_seq_to_seq"),
        "session_summaries",
        ["session_id", "from_seq", "to_seq"],
    )
    op.create_table(
        "tag_suggestions",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("words", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        _session_fk("tag_suggestions"),
        sa.PrimaryKeyConstraint("session_id", "tag", name=op.f("pk_tag_suggestions")),
    )
    op.create_table(
        "tag_rules",
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=128), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "tag", name=op.f("pk_tag_rules")),
    )
    op.create_table(
        "session_reads",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("last_seen_seq", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        _session_fk("session_reads"),
        sa.PrimaryKeyConstraint("session_id", "user_id", name=op.f("pk_session_reads")),
    )

    if dialect == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE search_fts USING fts5(body, content='search_docs',"
            " content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')"
        )
        for ddl in _SQLITE_TRIGGERS:
            op.execute(ddl)
    elif dialect == "postgresql":
        op.execute(
            "ALTER TABLE search_docs ADD COLUMN tsv tsvector"
            " GENERATED ALWAYS AS (to_tsvector('english', replace(body, '<', U&'\\E002'))) STORED"
        )
        op.execute("CREATE INDEX ix_search_docs_tsv ON search_docs USING gin (tsv)")
        for name, body in _PG_FUNCTIONS.items():
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $fn${body}$fn$"
            )
        for ddl in _PG_TRIGGERS:
            op.execute(ddl)
    _backfill()


def _backfill() -> None:
    """Index what existed before this migration (the triggers see only new writes)."""
    esc = "char(27)" if op.get_bind().dialect.name == "sqlite" else "chr(27)"
    op.execute(
        "INSERT INTO search_docs(tenant_id, session_id, kind, ref_id, author_id, created_at, body)"
        " SELECT tenant_id, session_id, 'message', id, author_id, created_at,"
        f" CASE WHEN substr(text, 1, 6) = {esc} || 'penc:' THEN '' ELSE text END FROM messages"
    )
    op.execute(
        "INSERT INTO search_docs(tenant_id, session_id, kind, ref_id, author_id, created_at, body)"
        " SELECT tenant_id, id, 'title', id, created_by, created_at, title FROM sessions"
    )
    op.execute(
        "INSERT INTO search_docs(tenant_id, session_id, kind, ref_id, author_id, created_at, body)"
        " SELECT t.tenant_id, t.session_id, 'tag', t.tag, NULL, s.created_at, t.tag"
        " FROM session_tags t JOIN sessions s ON s.id = t.session_id"
    )
    op.execute(
        "INSERT INTO analysis_jobs(session_id, tenant_id, first_requested_at, requested_at,"
        " attempts) SELECT DISTINCT session_id, tenant_id, 0, 0, 0 FROM messages"
    )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for ddl in _SQLITE_TRIGGERS:
            name = ddl.split()[2]
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS search_fts")
    elif dialect == "postgresql":
        for ddl in _PG_TRIGGERS:
            name, table = ddl.split()[2], ddl.split(" ON ")[1].split()[0]
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        for name in _PG_FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    for table in (
        "session_reads",
        "tag_rules",
        "tag_suggestions",
        "session_summaries",
        "session_insights",
        "message_insights",
        "analysis_jobs",
        "search_docs",
    ):
        op.drop_table(table)
