"""Server-side sessions; ids never reused on SQLite; e-mails in one normal form

Revision ID: 0006
Revises: 0005

* ``access_sessions``: one row per web sign-in (the cookie carries the token, the row its hash).
* On SQLite, the tables whose ids are named outside the row are rebuilt AUTOINCREMENT, so that a
  deleted row's id is never handed out again (PostgreSQL's sequences already never reuse one).
  The users' counter starts above every user id the hub has recorded (usage rows, audit
  subjects), so an id erased before this migration does not come back either. The rebuild runs
  with foreign keys off (env.py): SQLite's DROP TABLE would otherwise cascade-delete the
  memberships, conversations and identities of every person.
* ``users.email`` is rewritten in its normal form (NFKC, casefold, NFKC; as
  ``sovhub.users.normalize_email``, copied here so that this migration never changes). When two
  accounts become the same address the migration stops before changing anything and names them.

Downgrade drops ``access_sessions`` only: AUTOINCREMENT and normalised e-mails stay (both are
valid under 0005, and undoing them would bring the id reuse back).
"""

from __future__ import annotations

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

AUTOINCREMENT_TABLES = (
    "organizations", "users", "api_keys", "access_identities", "access_verifications",
    "content_access_requests", "kb_collections", "assistant_messages", "safety_policy_versions",
)


def _normalize_email(text: str) -> str:
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text.strip()).casefold())


def _email_changes(conn: sa.Connection) -> list[tuple[int, str]]:
    """(id, normal form) of the addresses to rewrite; refuses when two accounts would collide."""
    rows = conn.execute(sa.text("SELECT id, email FROM users ORDER BY id")).all()
    owners: dict[str, list[tuple[int, str]]] = {}
    for user_id, email in rows:
        owners.setdefault(_normalize_email(email), []).append((user_id, email))
    clashes = {norm: found for norm, found in owners.items() if len(found) > 1}
    if clashes:
        from sovhub.errors import ConfigError

        listed = "; ".join(
            f"{norm!r}: " + ", ".join(f"user {uid} {email!r}" for uid, email in found) for norm, found in clashes.items()
        )
        raise ConfigError(
            "migration 0006 stopped, nothing changed: these accounts have the same e-mail address once case and "
            f"width are ignored ({listed}). Keep one account per person: erase the others (`sovhub users erase "
            "ID`, with the hub at its previous version) or give them distinct addresses, then start the hub again."
        )
    return [(uid, norm) for norm, found in owners.items() for uid, email in found if email != norm]


def _highest_user_id_seen(conn: sa.Connection) -> int:
    highest = int(conn.execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM users")).scalar_one())
    highest = max(highest, int(conn.execute(sa.text("SELECT COALESCE(MAX(user_id), 0) FROM usage_records"))
                               .scalar_one()))
    for (subject,) in conn.execute(sa.text("SELECT DISTINCT subject FROM audit_log WHERE subject LIKE 'user:%'")):
        tail = str(subject)[5:]
        if tail.isdigit():
            highest = max(highest, int(tail))
    return highest


def upgrade() -> None:
    conn = op.get_bind()
    changes = _email_changes(conn)  # first: a clash stops the migration before any change

    op.create_table(
        "access_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("acr", sa.String(length=16), nullable=True),
        sa.Column("idp", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(length=40), nullable=True),
        sa.Column("user_agent", sa.String(length=300), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_access_sessions_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_sessions")),
    )
    op.create_index(op.f("ix_access_sessions_user_id"), "access_sessions", ["user_id"], unique=False)
    op.create_index(op.f("ix_access_sessions_expires_at"), "access_sessions", ["expires_at"], unique=False)

    for user_id, email in changes:
        conn.execute(sa.text("UPDATE users SET email = :email WHERE id = :id"), {"email": email, "id": user_id})

    if conn.dialect.name != "sqlite":
        return
    for table in AUTOINCREMENT_TABLES:
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass
    highest = _highest_user_id_seen(conn)
    if conn.execute(sa.text("SELECT COUNT(*) FROM sqlite_sequence WHERE name = 'users'")).scalar_one():
        conn.execute(sa.text("UPDATE sqlite_sequence SET seq = MAX(seq, :n) WHERE name = 'users'"), {"n": highest})
    elif highest:
        conn.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('users', :n)"), {"n": highest})


def downgrade() -> None:
    op.drop_index(op.f("ix_access_sessions_expires_at"), table_name="access_sessions")
    op.drop_index(op.f("ix_access_sessions_user_id"), table_name="access_sessions")
    op.drop_table("access_sessions")
