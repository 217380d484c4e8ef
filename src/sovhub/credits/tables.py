"""credits: partners, programmes, grants, applications, prices, and the double-entry ledger.

Every amount is a whole number of micro-credits (:mod:`.amounts`). The ledger is append-only:
``credit_transfers`` rows are inserted, never changed; ``credit_accounts`` carries running totals
that ``sovhub ledger verify`` recomputes from the transfers. An account marked ``no_overdraft``
(a programme's pool, a grant) cannot have more debits, posted and pending, than posted credits:
a CHECK constraint holds it in the database itself, whatever code writes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..store.base import Base, UTCDateTime, utcnow

__all__ = [
    "CreditAccount",
    "CreditApplication",
    "CreditGrant",
    "CreditJournalCursor",
    "CreditNotice",
    "CreditPartner",
    "CreditPartnerMember",
    "CreditPartnerUsage",
    "CreditPrice",
    "CreditProgramme",
    "CreditTransfer",
    "ProgrammePartner",
]

_ID = BigInteger().with_variant(Integer, "sqlite")


class CreditPartner(Base):
    """A co-funder: the national fund, a bank, a foundation."""

    __tablename__ = "credit_partners"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CreditProgramme(Base):
    """A call for compute: its budget, partners' shares, window, eligibility and grant rules."""

    __tablename__ = "credit_programmes"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    budget: Mapped[int] = mapped_column(BigInteger)
    opens_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closes_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    require_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    jurisdictions: Mapped[list[str]] = mapped_column(JSON, default=list)
    org_kinds: Mapped[list[str]] = mapped_column(JSON, default=list)
    max_grant: Mapped[int | None] = mapped_column(BigInteger)
    grant_validity_days: Mapped[int | None] = mapped_column(Integer)
    models: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ProgrammePartner(Base):
    __tablename__ = "credit_programme_partners"
    __table_args__ = (CheckConstraint("share > 0 AND share <= 10000", name="share_range"),)

    programme_id: Mapped[int] = mapped_column(ForeignKey("credit_programmes.id", ondelete="CASCADE"),
                                              primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("credit_partners.id"), primary_key=True)
    #: Hundredths of a percent; a programme's shares sum to 10,000.
    share: Mapped[int] = mapped_column(Integer)


class CreditGrant(Base):
    __tablename__ = "credit_grants"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("credit_programmes.id"), index=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    application_id: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: When its remainder went back to the programme (the grant then pays for nothing more).
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Since when its balance has been under the low-balance threshold (None: above it); set once per crossing.
    low_since: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CreditPartnerMember(Base):
    """A person who works for a partner: they see that partner's dashboard, and no other's."""

    __tablename__ = "credit_partner_members"

    partner_id: Mapped[int] = mapped_column(ForeignKey("credit_partners.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    added_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CreditNotice(Base):
    """Something an organization must see once: a decision on its application, a grant running low.

    The text is not stored: each reader gets it in their own UI language from ``kind`` and ``data``.
    """

    __tablename__ = "credit_notices"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    #: application_approved, application_rejected, low_balance.
    kind: Mapped[str] = mapped_column(String(30))
    grant_id: Mapped[int | None] = mapped_column(Integer)
    application_id: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dismissed_by: Mapped[str | None] = mapped_column(String(200))
    # E-mail delivery (credits/notice_mail.py): tries so far, when the next may start (also the claim
    # of the replica sending it), the users already mailed, and when every recipient was.
    mail_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    mail_next_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    mail_sent_to: Mapped[list[int] | None] = mapped_column(JSON)
    mailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CreditApplication(Base):
    """An organization's request for a grant, from submission to a staff decision."""

    __tablename__ = "credit_applications"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("credit_programmes.id"), index=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20), index=True, default="pending")
    applied_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_by_user_id: Mapped[int | None] = mapped_column(Integer)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    grant_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CreditPrice(Base):
    """A model's prices from `effective_from` on (until the next row); amounts in micro-credits."""

    __tablename__ = "credit_prices"
    __table_args__ = (
        UniqueConstraint("model", "effective_from", name="uq_credit_prices_model_from"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(200), index=True)
    #: Micro-credits per million tokens (a credit per million tokens is a micro-credit per token).
    input_per_1m: Mapped[int] = mapped_column(BigInteger, default=0)
    output_per_1m: Mapped[int] = mapped_column(BigInteger, default=0)
    embedding_per_1m: Mapped[int] = mapped_column(BigInteger, default=0)
    moderation_per_request: Mapped[int] = mapped_column(BigInteger, default=0)
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CreditAccount(Base):
    """One ledger account with its running totals (TigerBeetle's four balances)."""

    __tablename__ = "credit_accounts"
    __table_args__ = (
        UniqueConstraint("kind", "ref_id", name="uq_credit_accounts_kind_ref"),
        CheckConstraint(
            "debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0 AND credits_pending >= 0",
            name="totals_non_negative",
        ),
        CheckConstraint("NOT no_overdraft OR debits_posted + debits_pending <= credits_posted", name="no_overdraft"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: partner, programme (its pool), grant, usage (a programme's spending).
    kind: Mapped[str] = mapped_column(String(20))
    ref_id: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(300))
    no_overdraft: Mapped[bool] = mapped_column(Boolean, default=False)
    debits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    debits_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CreditTransfer(Base):
    """One immutable ledger entry. ``kind``: posted (one phase), pending, post, void or expire.

    A post, void or expire names the pending transfer it resolves (``pending_id``, unique: a
    reservation is resolved once); a post may move less than was pending, the rest is released.
    """

    __tablename__ = "credit_transfers"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_non_negative"),
        Index("ix_credit_transfers_org_ts", "org_id", "ts"),
    )

    seq: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    debit_account_id: Mapped[int] = mapped_column(ForeignKey("credit_accounts.id"), index=True)
    credit_account_id: Mapped[int] = mapped_column(ForeignKey("credit_accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    pending_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    timeout_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: What it is for: funding, grant, usage, return (an expired grant's remainder), adjustment.
    code: Mapped[str] = mapped_column(String(20))
    org_id: Mapped[int | None] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String(100), index=True)
    model: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: A usage debit's parts by partner id (largest remainder by the programme's shares); they sum to `amount`.
    split: Mapped[dict[str, int] | None] = mapped_column(JSON)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CreditPartnerUsage(Base):
    """What each partner's share of a programme has paid for so far: the sum of its parts of every usage debit."""

    __tablename__ = "credit_partner_usage"

    programme_id: Mapped[int] = mapped_column(ForeignKey("credit_programmes.id", ondelete="CASCADE"),
                                              primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("credit_partners.id"), primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)


class CreditJournalCursor(Base):
    """How far the live store's journal has been written into the ledger (see :mod:`.journal`)."""

    __tablename__ = "credit_journal_cursor"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    position: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
