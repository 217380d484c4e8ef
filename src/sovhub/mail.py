"""Outgoing e-mail through the operator's SMTP server (``[mail]``): STARTTLS, SSL or a local relay.

The only SMTP client of the hub. :meth:`Mailer.send` blocks (run it in a worker thread) and
raises :class:`MailFailed` when the server cannot be reached or refuses the message; callers
keep what they wanted to send and try again later, so a mail server being down never fails a
request. TLS checks the server's certificate and name (against ``mail.ca_file`` or the
system's CAs); STARTTLS is required, never skipped, when chosen. The password is read once, at
start, from ``mail.password`` (given by reference: an environment variable from a secret store)
or ``mail.password_file``.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from .errors import ConfigError
from .settings.mail import MailSettings

__all__ = ["Mail", "MailFailed", "Mailer"]


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    text: str
    html: str | None = None
    language: str | None = None


class MailFailed(Exception):
    """The message was not accepted by the SMTP server (it may be tried again)."""


class Mailer:
    """Sends :class:`Mail` as configured; :attr:`configured` is False when ``mail.host`` is unset."""

    def __init__(self, settings: MailSettings, data_dir: Path) -> None:
        self.settings = settings
        self._password = settings.password
        if settings.password_file is not None:
            path = data_dir / settings.password_file
            try:
                self._password = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"mail.password_file {path}: {exc.strerror or exc}") from exc
        self._ca = str(data_dir / settings.ca_file) if settings.ca_file else None
        if self._ca is not None and not Path(self._ca).is_file():
            raise ConfigError(f"mail.ca_file {self._ca} is not a file")

    @property
    def configured(self) -> bool:
        return self.settings.host is not None

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self._ca)

    def message(self, mail: Mail) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = str(self.settings.from_address)
        msg["To"] = mail.to
        msg["Subject"] = mail.subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = make_msgid(domain=str(self.settings.from_address).rpartition("@")[2] or None)
        msg.set_content(mail.text)
        if mail.html is not None:
            msg.add_alternative(mail.html, subtype="html")
        if mail.language:  # after the content: setting it drops every Content-* header
            msg["Content-Language"] = mail.language
        return msg

    def send(self, mail: Mail) -> None:
        """Hand `mail` to the SMTP server; raises MailFailed (blocking: call it from a worker thread)."""
        s = self.settings
        if s.host is None:
            raise MailFailed("mail is not configured (mail.host)")
        msg = self.message(mail)
        try:
            client: smtplib.SMTP
            if s.security == "ssl":
                client = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s, context=self._tls())
            else:
                client = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
            with client:
                client.ehlo()
                if s.security == "starttls":
                    if not client.has_extn("starttls"):
                        raise MailFailed(f"{s.host}:{s.port} does not offer STARTTLS (mail.security = starttls)")
                    client.starttls(context=self._tls())
                    client.ehlo()
                if s.username is not None:
                    client.login(s.username, self._password or "")
                client.send_message(msg)
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            raise MailFailed(f"{s.host}:{s.port}: {exc}") from exc
