"""Credit notices by e-mail through a real SMTP server on 127.0.0.1 (aiosmtpd): STARTTLS with a login, SSL,
each admin in their own language; a server down or refusing is logged and retried and never fails a
request; nothing is sent when [mail] is not configured."""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select, update

from sovhub.accounts import create_org
from sovhub.assistant.people import create_user
from sovhub.credits.amounts import MICRO
from sovhub.credits.applications import decide, submit_application
from sovhub.credits.control import Credits
from sovhub.credits.notice_mail import NoticeMail
from sovhub.credits.notices import add_notice
from sovhub.credits.programmes import ProgrammeRules, create_programme
from sovhub.credits.tables import CreditNotice
from sovhub.errors import ConfigError
from sovhub.hub import Hub, build_hub
from sovhub.mail import Mail, Mailer, MailFailed
from sovhub.members import add_member
from sovhub.settings import load_settings
from sovhub.settings.mail import MailSettings
from sovhub.store.base import utcnow
from sovhub.store.tables import User
from tests.conftest import make_settings

PASSWORD = "correct horse battery"
PORTS = iter(range(19610, 19700))


class Sink:
    """What the SMTP server received: every message, and how each session was secured and logged in."""

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.messages: list[Any] = []
        self.sessions: list[tuple[bool, bool]] = []
        self.refuse = refuse if refuse is not None else set()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refuse:
            return "550 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        encrypted = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        self.sessions.append((encrypted, bool(session.authenticated)))
        return "250 OK"

    def to(self, address: str) -> list[Any]:
        return [m for m in self.messages if m["To"] == address]


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"hub" and auth_data.password == b"s3cret-pw"
    return AuthResult(success=ok)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A CA and a certificate for 127.0.0.1 it signed (files), and a server context with it."""
    folder = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test mail CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(folder / "server.pem", folder / "server.key")
    return {"ca": folder / "ca.pem", "server": server}


@pytest.fixture
def smtp() -> Iterator[Callable[..., tuple[Sink, int]]]:
    """Start SMTP servers on 127.0.0.1 (each on its own port); all stopped after the test."""
    started: list[Controller] = []

    def start(sink: Sink | None = None, port: int | None = None, **kwargs: Any) -> tuple[Sink, int]:
        sink = sink or Sink()
        port = port or next(PORTS)
        controller = Controller(sink, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        started.append(controller)
        return sink, port

    yield start
    for controller in started:
        controller.stop()


def _hub(data_dir: Path, **mail: Any) -> Hub:
    return build_hub(make_settings(data_dir, safety={"enabled": False, "warm_up": False}, embeddings_enabled=False,
                                   mail=mail, access={"public_url": "https://hub.example"}))


def _world(hub: Hub) -> dict[str, Any]:
    org = create_org(hub, "acme")
    ids = {}
    for email, role, locale in (("ann@acme.example", "admin", "uk"), ("ben@acme.example", "admin", "de"),
                                ("cat@acme.example", "member", "fr")):
        ids[email] = create_user(hub, email, PASSWORD)
        with hub.db.session() as s:
            s.execute(update(User).where(User.id == ids[email]).values(locale=locale))
        add_member(hub, "acme", email, role)
    officer = create_user(hub, "officer@fund.example", PASSWORD, staff=True)
    programme = create_programme(hub, "Gateway", 1000 * MICRO, [("Fund", 10_000)], ProgrammeRules(),
                                 actor="tests")
    application = submit_application(hub, programme.id, org.id, purpose="a legal model", amount=5 * MICRO,
                                     actor="tests")
    return {"org": org.id, "officer": officer, "application": application.id, **ids}


def _starttls(tls: dict[str, Any], port: int, data_dir: Path) -> dict[str, Any]:
    (data_dir / "smtp-password").write_text("s3cret-pw\n")
    return {"host": "127.0.0.1", "port": port, "security": "starttls", "ca_file": str(tls["ca"]),
            "username": "hub", "password_file": "smtp-password", "from_address": "credits@hub.example"}


def _mail(hub: Hub) -> NoticeMail:
    notice_mail = hub.services.get(Credits).notice_mail
    assert notice_mail is not None
    return notice_mail


def _notice(hub: Hub) -> CreditNotice:
    with hub.db.session() as s:
        return s.scalars(select(CreditNotice)).one()


def test_a_decision_is_mailed_to_each_admin_in_their_language_over_starttls_with_a_login(
        data_dir: Path, smtp, tls) -> None:
    sink, port = smtp(tls_context=tls["server"], require_starttls=True, authenticator=_authenticator,
                      auth_required=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    hub = _hub(data_dir, **_starttls(tls, port, data_dir))
    try:
        world = _world(hub)
        decide(hub, world["application"], "approved", reason="Сильний план", reviewer_id=world["officer"])
        assert sink.messages == []  # nothing is sent on the decision's path
        assert _mail(hub).run_once() == 2
        assert sink.sessions == [(True, True), (True, True)]  # STARTTLS, then AUTH, each time
        ann, = sink.to("ann@acme.example")
        assert ann["Subject"] == "Заявку схвалено: Gateway" and ann["From"] == "credits@hub.example"
        assert ann["Content-Language"] == "uk"
        text = ann.get_body(("plain",)).get_content()
        assert "Вашу заявку до програми Gateway схвалено: надано 5 кредитів." in text
        assert "Сильний план" in text and "<https://hub.example/credits>" in text and "acme" in text
        html = ann.get_body(("html",)).get_content()
        assert '<html lang="uk"' in html and 'href="https://hub.example/credits"' in html
        ben, = sink.to("ben@acme.example")
        assert ben["Subject"] == "Antrag bewilligt: Gateway" and ben["Content-Language"] == "de"
        assert sink.to("cat@acme.example") == []  # a plain member is not mailed; admins are
        notice = _notice(hub)
        assert notice.mailed_at is not None and sorted(notice.mail_sent_to or []) == sorted(
            [world["ann@acme.example"], world["ben@acme.example"]])
        assert _mail(hub).run_once() == 0 and len(sink.messages) == 2  # never twice
        assert notice.dismissed_at is None  # still shown in the web app
    finally:
        hub.close()


def test_a_low_balance_notice_goes_over_ssl(data_dir: Path, smtp, tls) -> None:
    sink, port = smtp(ssl_context=tls["server"])
    hub = _hub(data_dir, host="127.0.0.1", port=port, security="ssl", ca_file=str(tls["ca"]),
               from_address="credits@hub.example")
    try:
        world = _world(hub)
        with hub.db.session() as s:
            add_notice(s, world["org"], "low_balance", grant_id=7, programme="Gateway", balance=0.5, granted=5,
                       percent=10.0)
        assert _mail(hub).run_once() == 2 and sink.sessions[0] == (True, False)
        ann, = sink.to("ann@acme.example")
        assert ann["Subject"] == "Кредити закінчуються: Gateway"
        assert "Грант 7 програми Gateway" in ann.get_body(("plain",)).get_content()
    finally:
        hub.close()


def test_a_server_that_is_down_is_retried_and_never_fails_the_request(
        data_dir: Path, database_url: str | None, smtp, caplog) -> None:
    port = next(PORTS)  # nothing listens yet
    hub = build_hub(make_settings(data_dir, database_url=database_url, safety={"enabled": False, "warm_up": False},
                                  embeddings_enabled=False,
                                  mail={"host": "127.0.0.1", "port": port, "security": "none", "poll_s": 0.05,
                                        "retry_base_s": 0.5, "timeout_s": 2, "from_address": "c@hub.example"}))
    from fastapi.testclient import TestClient

    from sovhub.accounts import create_staff_key
    from sovhub.app import create_app

    try:
        world = _world(hub)
        create_org(hub, "fund-office")
        key = create_staff_key(hub, "fund-office", "officer@fund.example")
        caplog.set_level(logging.WARNING, logger="sovhub.credits")
        with TestClient(create_app(hub)) as client:  # the credits lifespan runs the mail loop
            r = client.post(f"/hub/v1/admin/applications/{world['application']}/decision",
                            headers={"authorization": f"Bearer {key.secret}"},
                            json={"decision": "reject", "reason": "budget spent"})
            assert r.status_code == 200 and r.json()["status"] == "rejected"
            deadline = time.monotonic() + 20
            while _notice(hub).mail_attempts < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            notice = _notice(hub)
            assert notice.mail_attempts >= 1 and notice.mailed_at is None and notice.mail_next_at is not None
            assert "e-mail failed (attempt 1 of 6), will retry" in caplog.text
            sink, _ = smtp(port=port)  # the server comes back
            while not _notice(hub).mailed_at and time.monotonic() < deadline:
                time.sleep(0.05)
        assert _notice(hub).mailed_at is not None
        assert {m["To"] for m in sink.messages} == {"ann@acme.example", "ben@acme.example"}
        assert len(sink.messages) == 2 and sink.to("ben@acme.example")[0]["Subject"] == "Antrag abgelehnt: Gateway"
    finally:
        hub.close()


def test_a_refused_recipient_is_retried_alone_and_gives_up_after_max_attempts(data_dir: Path, smtp, caplog) -> None:
    sink, port = smtp(Sink(refuse={"ben@acme.example"}))
    hub = _hub(data_dir, host="127.0.0.1", port=port, security="none", from_address="c@hub.example",
               max_attempts=3, retry_base_s=10)
    try:
        world = _world(hub)
        decide(hub, world["application"], "rejected", reason="no", reviewer_id=world["officer"])
        mail = _mail(hub)
        now = utcnow()
        assert mail.run_once(now) == 1  # ann; ben refused
        assert mail.run_once(now + dt.timedelta(seconds=5)) == 0  # not due yet (10 s)
        assert mail.run_once(now + dt.timedelta(seconds=11)) == 0  # ben refused again: attempt 2
        sink.refuse.clear()
        assert mail.run_once(now + dt.timedelta(seconds=25)) == 0  # next is 20 s after the second try
        assert mail.run_once(now + dt.timedelta(seconds=32)) == 1  # ben, and ann not again
        assert [m["To"] for m in sink.messages] == ["ann@acme.example", "ben@acme.example"]
        assert _notice(hub).mailed_at is not None
        # A notice that never gets through is given up after mail.max_attempts, with an error logged.
        sink.refuse.update({"ann@acme.example", "ben@acme.example"})
        with hub.db.session() as s:
            add_notice(s, world["org"], "low_balance", grant_id=1, programme="Gateway", balance=0, granted=1,
                       percent=10.0)
        caplog.set_level(logging.WARNING, logger="sovhub.credits")
        for minutes in range(0, 60, 5):
            mail.run_once(now + dt.timedelta(minutes=minutes))
        with hub.db.session() as s:
            low = s.scalars(select(CreditNotice).where(CreditNotice.kind == "low_balance")).one()
        assert low.mail_attempts == 3 and low.mailed_at is None
        assert "e-mail given up after 3 attempts" in caplog.text
    finally:
        hub.close()


def test_nothing_is_sent_without_mail_configured_and_old_notices_are_not_mailed(data_dir: Path, smtp) -> None:
    sink, port = smtp()
    hub = _hub(data_dir)
    try:
        assert hub.services.get(Credits).notice_mail is None and not hub.services.get(Mailer).configured
        world = _world(hub)
        decide(hub, world["application"], "approved", reason="ok", reviewer_id=world["officer"])
        with pytest.raises(MailFailed):
            hub.services.get(Mailer).send(Mail(to="ann@acme.example", subject="x", text="x"))
    finally:
        hub.close()
    assert sink.messages == []
    # Configured later: the notice made before then is older than mail.max_age_s, and is not mailed.
    hub = _hub(data_dir, host="127.0.0.1", port=port, security="none", from_address="c@hub.example",
               max_age_s=60)
    try:
        with hub.db.session() as s:
            s.execute(update(CreditNotice).values(created_at=utcnow() - dt.timedelta(minutes=2)))
        assert _mail(hub).run_once() == 0 and sink.messages == []
    finally:
        hub.close()


def test_starttls_is_required_and_the_certificate_checked(data_dir: Path, smtp, tls) -> None:
    plain, plain_port = smtp()  # offers no STARTTLS
    mailer = Mailer(MailSettings(host="127.0.0.1", port=plain_port, from_address="c@hub.example"), data_dir)
    with pytest.raises(MailFailed, match="does not offer STARTTLS"):
        mailer.send(Mail(to="x@example.org", subject="s", text="t"))
    other, tls_port = smtp(tls_context=tls["server"])
    unknown_ca = Mailer(MailSettings(host="127.0.0.1", port=tls_port, from_address="c@hub.example"), data_dir)
    with pytest.raises(MailFailed, match="CERTIFICATE_VERIFY_FAILED"):
        unknown_ca.send(Mail(to="x@example.org", subject="s", text="t"))
    trusted = Mailer(MailSettings(host="127.0.0.1", port=tls_port, from_address="c@hub.example",
                                  ca_file=str(tls["ca"])), data_dir)
    trusted.send(Mail(to="x@example.org", subject="s", text="t"))
    assert plain.messages == [] and len(other.messages) == 1


@pytest.mark.parametrize(("mail", "problem"), [
    ({"host": "smtp.example"}, "from_address"),
    ({"host": "smtp.example", "from_address": "c@hub.example", "username": "u", "security": "none"}, "in clear"),
    ({"host": "smtp.example", "from_address": "c@hub.example", "username": "u", "password": "p",
      "password_file": "f"}, "not both"),
    ({"host": "smtp.example", "from_address": "c@hub.example", "password": "p"}, "needs mail.username"),
])
def test_unsafe_or_incomplete_mail_settings_are_refused(data_dir: Path, mail: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_settings(data_dir=str(data_dir), mail=mail)


def test_a_missing_password_file_stops_the_start(data_dir: Path) -> None:
    settings = MailSettings(host="smtp.example", from_address="c@hub.example", username="u",
                            password_file="nope")
    with pytest.raises(ConfigError, match="password_file"):
        Mailer(settings, data_dir)
