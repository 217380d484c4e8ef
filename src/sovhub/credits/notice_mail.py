"""Notices by e-mail: a decision on an application, a grant running low, mailed to the organization's admins.

Only when the operator configured SMTP (``[mail]``, :mod:`sovhub.mail`); otherwise nothing here
runs and notices stay in the web app and the API as before. The notice row is the outbox: a
notice is created in the same transaction as the decision (or the low-balance mark), and the loop
every replica runs mails it afterwards (within ``mail.poll_s``), so sending never sits on a request's
path and a mail server being down never fails one. Each recipient (the organization's admins;
every member when it has none) gets it in their own UI language. A failure is logged and the
notice is tried again after ``mail.retry_base_s``, doubling each time, up to
``mail.max_attempts``; recipients already mailed are not mailed twice. A replica claims a
notice with one conditional update (``mail_next_at`` moved past the time a delivery can take),
so two replicas never send the same notice. Notices older than ``mail.max_age_s`` are not mailed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select, update

from ..assistant.i18n import UiCatalogs
from ..assistant.web.render import render_markup
from ..mail import Mail, Mailer, MailFailed
from ..store.base import utcnow
from ..store.tables import Membership, Organization, User
from .notices import notice_view
from .tables import CreditNotice

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["NoticeMail"]

log = logging.getLogger("sovhub.credits")

TEMPLATE = "mail_credits_notice.html"


@dataclass(frozen=True, slots=True)
class _Recipient:
    user_id: int
    email: str
    locale: str | None


class _Text(HTMLParser):
    """The text of an HTML e-mail: its title (the subject) and its body as plain paragraphs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: list[str] = []
        self.body: list[str] = []
        self._in_title = False
        self._in_body = False
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag == "body":
            self._in_body = True
        elif tag == "p" and self._in_body:
            self.body.append("\n\n")
        elif tag == "a":
            self._href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag == "a" and self._href:
            self.body.append(f" <{self._href}>")
            self._href = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        elif self._in_body:
            self.body.append(data)


def _squeeze(text: str) -> str:
    return " ".join(text.split())


class NoticeMail:
    def __init__(self, hub: Hub, mailer: Mailer) -> None:
        self.hub = hub
        self.mailer = mailer
        self.sent = 0

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Mail due notices every ``mail.poll_s``, for ever (a failure is logged; the next round retries)."""
        while True:
            await asyncio.sleep(self.hub.settings.mail.poll_s)
            try:
                await asyncio.to_thread(self.run_once)
            except Exception as exc:  # noqa: BLE001 - a database hiccup: the notices wait for the next round
                log.warning("mailing credit notices failed, will retry: %s", exc)

    def run_once(self, now: datetime | None = None, limit: int = 50) -> int:
        """Mail the notices due at `now`; returns the number of e-mails the server accepted."""
        now = now or utcnow()
        cfg = self.hub.settings.mail
        with self.hub.db.session() as s:
            due = s.execute(
                select(CreditNotice.id, CreditNotice.mail_attempts)
                .where(CreditNotice.mailed_at.is_(None), CreditNotice.mail_attempts < cfg.max_attempts,
                       CreditNotice.created_at >= now - timedelta(seconds=cfg.max_age_s),
                       or_(CreditNotice.mail_next_at.is_(None), CreditNotice.mail_next_at <= now))
                .order_by(CreditNotice.id).limit(limit)).all()
        sent = 0
        for notice_id, attempts in due:
            if self._claim(notice_id, attempts, now):
                sent += self._deliver(notice_id, now)
        self.sent += sent
        return sent

    def _claim(self, notice_id: int, attempts: int, now: datetime) -> bool:
        # Past the longest a delivery can take (each recipient: connect, TLS, login, send): another
        # replica looking meanwhile sees it as not due; if this one dies, it is due again after.
        cfg = self.hub.settings.mail
        hold = now + timedelta(seconds=cfg.timeout_s * 6 + 60)
        with self.hub.db.session() as s:
            won = s.execute(update(CreditNotice).where(
                CreditNotice.id == notice_id, CreditNotice.mailed_at.is_(None),
                CreditNotice.mail_attempts == attempts,
                or_(CreditNotice.mail_next_at.is_(None), CreditNotice.mail_next_at <= now),
            ).values(mail_next_at=hold))
            return bool(won.rowcount == 1)  # type: ignore[attr-defined]

    # --- one notice -------------------------------------------------------------------------

    def _recipients(self, s: Any, org_id: int) -> list[_Recipient]:
        rows = s.execute(select(User.id, User.email, User.locale, Membership.role)
                         .join(Membership, Membership.user_id == User.id)
                         .where(Membership.org_id == org_id).order_by(User.id)).all()
        admins = [r for r in rows if r.role == "admin"]
        return [_Recipient(int(r.id), str(r.email), r.locale) for r in (admins or rows)]

    def compose(self, notice: dict[str, Any], organization: str, to: _Recipient) -> Mail:
        """The notice as an e-mail to `to`, in their UI language."""
        catalogs = self.hub.services.get(UiCatalogs)
        ui = catalogs.get(to.locale if catalogs.supports(to.locale) else None)
        base = (self.hub.settings.access.public_url or "").rstrip("/")
        html = render_markup(ui, TEMPLATE, n=notice, organization=organization,
                             link=f"{base}/credits" if base else None)
        text = _Text()
        text.feed(html)
        text.close()
        paragraphs = [_squeeze(p) for p in "".join(text.body).split("\n\n")]
        return Mail(to=to.email, subject=_squeeze("".join(text.title)),
                    text="\n\n".join(p for p in paragraphs if p) + "\n", html=html, language=ui.code)

    def _deliver(self, notice_id: int, now: datetime) -> int:
        cfg = self.hub.settings.mail
        with self.hub.db.session() as s:
            row = s.get(CreditNotice, notice_id)
            assert row is not None
            notice, done = notice_view(row), set(row.mail_sent_to or [])
            organization = s.scalar(select(Organization.name).where(Organization.id == row.org_id)) or ""
            recipients = [r for r in self._recipients(s, row.org_id) if r.user_id not in done]
        sent, failure = 0, None
        for to in recipients:
            try:
                self.mailer.send(self.compose(notice, organization, to))
            except MailFailed as exc:
                failure = exc
                break
            done.add(to.user_id)
            sent += 1
        with self.hub.db.session() as s:
            values: dict[str, Any] = {"mail_sent_to": sorted(done)}
            if failure is None:
                values.update(mailed_at=utcnow(), mail_next_at=None)
            else:
                attempts = s.scalar(select(CreditNotice.mail_attempts).where(CreditNotice.id == notice_id)) or 0
                attempts += 1
                values.update(mail_attempts=func.coalesce(CreditNotice.mail_attempts, 0) + 1,
                              mail_next_at=now + timedelta(seconds=cfg.retry_base_s * 2 ** (attempts - 1)))
                if attempts >= cfg.max_attempts:
                    log.error("credit notice %d: e-mail given up after %d attempts: %s", notice_id, attempts, failure)
                else:
                    log.warning("credit notice %d: e-mail failed (attempt %d of %d), will retry: %s", notice_id,
                                attempts, cfg.max_attempts, failure)
            s.execute(update(CreditNotice).where(CreditNotice.id == notice_id).values(**values))
        return sent
