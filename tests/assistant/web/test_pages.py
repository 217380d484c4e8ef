"""The web app over HTTP: sign-in, chat streaming, encryption at rest, languages, my data, admin."""

from __future__ import annotations

import io
from typing import Any

import pytest
from sqlalchemy import select

from sovhub.assistant.answer_html import render_markdown
from sovhub.assistant.people import create_user
from sovhub.assistant.tables import Conversation, ConversationMessage
from sovhub.errors import Conflict, ContentBlocked, InvalidRequest
from sovhub.pipeline import ChatContext
from sovhub.store.tables import User

from .conftest import PASSWORD, Web, sse_events

_events = sse_events


# --- sign in ---


def test_pages_need_a_session(web: Web) -> None:
    for path in ("/", "/me", "/admin", "/kb/chunks/1", "/c/abcdefgh"):
        response = web.client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next="), path


def test_sign_in_and_out(web: Web) -> None:
    web.sign_in()
    page = web.client.get("/")
    assert page.status_code == 200 and "Sign out" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    web.client.post("/logout", data={"csrf_token": web.csrf()})
    assert web.client.get("/", follow_redirects=False).status_code == 303


def test_wrong_password_is_refused_and_throttled(web: Web) -> None:
    token = web.csrf("/login")
    for _ in range(web.hub.settings.access.login_max_failures):
        bad = web.client.post("/login", data={"email": web.email, "password": "nope-nope", "csrf_token": token})
        assert bad.status_code in (401, 429)
    locked = web.client.post("/login", data={"email": web.email, "password": PASSWORD, "csrf_token": token})
    assert locked.status_code == 429 and "Too many failed attempts" in locked.text
    assert int(locked.headers["retry-after"]) > 0


def test_unknown_account_and_missing_csrf(web: Web) -> None:
    token = web.csrf("/login")
    unknown = web.client.post("/login", data={"email": "x@example.org", "password": PASSWORD, "csrf_token": token})
    assert unknown.status_code == 401 and "incorrect" in unknown.text
    forged = web.client.post("/login", data={"email": web.email, "password": PASSWORD, "csrf_token": "forged"})
    assert forged.status_code == 403


def test_sign_in_never_redirects_off_site(web: Web) -> None:
    token = web.csrf("/login")
    response = web.client.post("/login", data={"email": web.email, "password": PASSWORD, "csrf_token": token,
                                               "next": "//evil.example/"}, follow_redirects=False)
    assert response.headers["location"] == "/"


def test_users_create_command_hashes_with_argon2(
    web: Web, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sovhub.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    main(["--data-dir", str(web.hub.settings.data_dir), "users", "create", "bo@example.org", "--password-stdin",
          "--staff"])
    assert "created user" in capsys.readouterr().out
    with web.hub.db.session() as s:
        user = s.scalar(select(User).where(User.email == "bo@example.org"))
    assert user is not None and user.is_staff and user.password_hash.startswith("$argon2id$")
    web.sign_in("bo@example.org", "a long password")
    with pytest.raises(Conflict):
        create_user(web.hub, "BO@example.org", "another password")
    with pytest.raises(InvalidRequest):
        create_user(web.hub, "short@example.org", "short")


# --- chat ---


def test_a_streamed_answer_is_stored_encrypted(signed_in: Web) -> None:
    events = _events(signed_in.ask("tell me about passports please"))
    names = [n for n, _ in events]
    assert names[0] == "conversation" and names[1] == "meta" and names[-1] == "done"
    text = "".join(d["text"] for n, d in events if n == "delta")
    assert text == "tell me about passports please"
    assert events[-1][1]["html"] == "<p>tell me about passports please</p>\n"
    conversation_id = events[0][1]["id"]
    with signed_in.hub.db.session() as s:
        blobs = [c.title for c in s.scalars(select(Conversation))] + [
            m.content for m in s.scalars(select(ConversationMessage))]
    assert len(blobs) == 3 and all(b"passports" not in blob for blob in blobs)
    page = signed_in.client.get(f"/c/{conversation_id}")
    assert page.text.count("tell me about passports please") >= 2  # title, question and answer
    follow = _events(signed_in.ask("and visas", conversation_id))
    assert "".join(d["text"] for n, d in follow if n == "delta") == "and visas"


def test_without_javascript_the_form_answers_then_redirects(signed_in: Web) -> None:
    response = signed_in.client.post("/c", data={"content": "plain form post", "csrf_token": signed_in.csrf()},
                                     follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/c/")
    page = signed_in.client.get(response.headers["location"])
    assert page.text.count("plain form post") >= 3


def test_regenerate_replaces_the_last_answer(signed_in: Web) -> None:
    conversation_id = _events(signed_in.ask("one two three"))[0][1]["id"]
    response = signed_in.client.post(f"/c/{conversation_id}/regenerate", data={"csrf_token": signed_in.csrf()},
                                     headers={"accept": "text/event-stream"})
    assert _events(response.text)[-1][0] == "done"
    with signed_in.hub.db.session() as s:
        roles = list(s.scalars(select(ConversationMessage.role).order_by(ConversationMessage.id)))
    assert roles == ["user", "assistant"]


def test_conversations_are_private_and_deletable(signed_in: Web) -> None:
    conversation_id = _events(signed_in.ask("my secret question"))[0][1]["id"]
    create_user(signed_in.hub, "eve@example.org", PASSWORD)
    signed_in.client.post("/logout", data={"csrf_token": signed_in.csrf()})
    signed_in.sign_in("eve@example.org")
    assert signed_in.client.get(f"/c/{conversation_id}").status_code == 404
    refused = signed_in.client.post(f"/c/{conversation_id}/messages", data={
        "content": "hi", "csrf_token": signed_in.csrf()})
    assert refused.status_code == 404
    signed_in.client.post("/logout", data={"csrf_token": signed_in.csrf()})
    signed_in.sign_in()
    signed_in.client.post(f"/c/{conversation_id}/delete", data={"csrf_token": signed_in.csrf()})
    assert signed_in.client.get(f"/c/{conversation_id}").status_code == 404


def test_messages_are_validated(signed_in: Web) -> None:
    token = signed_in.csrf()
    assert signed_in.client.post("/c", data={"content": "  ", "csrf_token": token}).status_code == 400
    assert signed_in.client.post("/c", data={"content": "x", "model": "gpt-9", "csrf_token": token}).status_code == 404
    assert signed_in.client.post("/c", data={"content": "x"}).status_code == 403


class _Blocker:
    name = "tests.blocker"

    async def before(self, ctx: ChatContext) -> None:
        if "forbidden" in str(ctx.messages[-1].get("content")):
            raise ContentBlocked("blocked", extra={"explanation": "Blocked by clause 4.", "decision_id": "mod_1",
                                                  "appeal_url": "/hub/v1/appeals"})

    async def check_output(self, ctx: ChatContext, text: str, final: bool) -> None:
        return None

    async def after(self, ctx: ChatContext, result: Any) -> None:
        return None


def test_a_block_shows_why_in_plain_words_and_a_review_button(signed_in: Web) -> None:
    signed_in.hub.interceptors.append(_Blocker())
    events = _events(signed_in.ask("something forbidden"))
    error = events[-1]
    assert error[0] == "error" and error[1]["block"]["explanation"] == "Blocked by clause 4."
    page = signed_in.client.get(f"/c/{events[0][1]['id']}")
    # The API's explanation (clauses, where to send the decision) is for API clients, not for the page.
    assert "Blocked by clause 4." not in page.text and "Ask for a review" in page.text
    assert 'action="/appeals"' in page.text
    appeal = signed_in.client.post("/appeals", data={"csrf_token": signed_in.csrf(), "decision_id": "mod_unknown",
                                                     "reason": "it was fine",
                                                     "conversation_id": events[0][1]["id"]},
                                   follow_redirects=False)
    assert appeal.status_code == 303 and appeal.headers["location"].endswith("?appeal=invalid")


def test_markdown_is_sanitised() -> None:
    html = render_markdown("**ok** <script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror=y>")
    assert "<strong>ok</strong>" in html and "<script" not in html and "javascript:" not in html.replace(
        "[x](javascript:alert(1))", "") and "onerror=" not in html.replace("&lt;img src=x onerror=y&gt;", "")


# --- languages ---


def test_accept_language_picks_the_ui_language(web: Web) -> None:
    page = web.client.get("/login", headers={"accept-language": "uk-UA,uk;q=0.9"})
    assert '<html lang="uk" dir="ltr">' in page.text and "Увійти" in page.text
    assert page.headers["content-language"] == "uk"


def test_arabic_makes_the_whole_page_rtl_and_is_remembered(signed_in: Web) -> None:
    response = signed_in.client.post("/lang", data={"lang": "ar", "csrf_token": signed_in.csrf(), "next": "/me"},
                                     follow_redirects=False)
    assert response.headers["location"] == "/me"
    signed_in.client.cookies.delete("sovhub_lang")
    page = signed_in.client.get("/me", headers={"accept-language": "de"})
    assert '<html lang="ar" dir="rtl">' in page.text and "بياناتي" in page.text
    with signed_in.hub.db.session() as s:
        assert s.get(User, signed_in.user_id).locale == "ar"  # type: ignore[union-attr]


def test_an_unknown_language_is_ignored(signed_in: Web) -> None:
    signed_in.client.post("/lang", data={"lang": "xx", "csrf_token": signed_in.csrf()})
    assert '<html lang="en"' in signed_in.client.get("/").text


# --- my data ---


def test_my_data_export_includes_conversations_and_erase_ends_everything(signed_in: Web) -> None:
    signed_in.ask("export me")
    page = signed_in.client.get("/me")
    assert 'href="/hub/v1/me/export"' in page.text and "1 conversation" in page.text
    export = signed_in.client.get("/hub/v1/me/export").json()
    messages = export["assistant_conversations"][0]["messages"]
    assert [m["text"] for m in messages] == ["export me", "export me"]
    refused = signed_in.client.post("/me/erase", data={"csrf_token": signed_in.csrf()}, follow_redirects=False)
    assert refused.headers["location"] == "/me?error=confirm"
    erased = signed_in.client.post("/me/erase", data={"csrf_token": signed_in.csrf(), "confirm": "yes"},
                                   follow_redirects=False)
    assert erased.headers["location"] == "/login?erased=1"
    with signed_in.hub.db.session() as s:
        assert s.scalars(select(Conversation)).first() is None
        assert s.get(User, signed_in.user_id) is None


# --- admin and passages ---


def test_admin_is_for_staff_only(signed_in: Web) -> None:
    assert signed_in.client.get("/admin").status_code == 403
    with signed_in.hub.db.session() as s:
        s.get(User, signed_in.user_id).is_staff = True  # type: ignore[union-attr]
    page = signed_in.client.get("/admin")
    assert page.status_code == 200 and "Language fidelity per model" in page.text
    missing = signed_in.client.post("/admin/kb", data={"csrf_token": signed_in.csrf(), "collection": ""},
                                    follow_redirects=False)
    assert missing.headers["location"] == "/admin?status=missing"


def test_an_unknown_passage_is_404(signed_in: Web) -> None:
    assert signed_in.client.get("/kb/chunks/999999").status_code == 404


def test_a_web_user_has_a_quota_and_is_told_in_their_language(signed_in: Web) -> None:
    # A signed-in person is limited like a key, or one browser could use a whole backend.
    signed_in.hub.settings.access.user_limits = {"rpm": 2}
    signed_in.client.cookies.set("sovhub_lang", "de")
    for _ in range(2):
        assert _events(signed_in.ask("hello"))[-1][0] == "done"
    error = _events(signed_in.ask("hello"))[-1]
    assert error[0] == "error" and error[1]["code"] == "rate_limit_exceeded"
    assert error[1]["message"].startswith("Sie haben Ihr Nutzungslimit vorerst erreicht.")
    assert "Sek." in error[1]["message"]


def test_quota_message_languages() -> None:
    from sovhub.assistant.quota_text import quota_message

    assert quota_message("uk-UA", 30) == "Ви поки що вичерпали свій ліміт використання. Писати знову можна через 30 с."
    assert quota_message("pt", 600).endswith("in 10 min.")
    assert quota_message(None, 0.2).endswith("in 1 s.")


def test_without_a_source_the_model_is_told_there_is_none(signed_in: Web) -> None:
    from sovhub.assistant.chat_store import StoredMessage
    from sovhub.assistant.grounding import NO_SOURCES
    from sovhub.assistant.turns import Turn, plan_turn

    history = [StoredMessage(1, "user", "write hello world in Python")]
    plan = plan_turn(signed_in.hub, Turn(signed_in.user_id, "c1", "echo", "en"), history)
    assert plan.quoted is None and plan.hits == [] and plan.cited == []
    assert plan.messages[0]["role"] == "system" and plan.messages[0]["content"].endswith(NO_SOURCES)
    assert plan.messages[1:] == [{"role": "user", "content": "write hello world in Python"}]


def test_staff_delete_a_knowledge_document_and_no_one_else_can(signed_in: Web) -> None:
    from sovhub.assistant.knowledge import KnowledgeBase
    from sovhub.assistant.tables import KbChunk, KbDocument
    from tests.assistant.conftest import remember_embeddings

    hub = signed_in.hub
    remember_embeddings(hub)
    kb = hub.services.get(KnowledgeBase)
    added = kb.ingest_bytes("dogs.txt", b"Dog licences cost twelve euros a year at the town hall.", "town")
    assert added.document_id is not None and kb.search("dog licence price", "town")
    path = f"/admin/kb/{added.document_id}/delete"
    # Not staff: refused, nothing deleted.
    assert signed_in.client.post(path, data={"csrf_token": signed_in.csrf()}, follow_redirects=False).status_code == 403
    with hub.db.session() as s:
        s.get(User, signed_in.user_id).is_staff = True  # type: ignore[union-attr]
    # Staff without the form's CSRF token: refused, nothing deleted.
    assert signed_in.client.post(path, data={}, follow_redirects=False).status_code == 403
    with hub.db.session() as s:
        assert s.get(KbDocument, added.document_id) is not None
    done = signed_in.client.post(path, data={"csrf_token": signed_in.csrf()}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/admin?status=deleted"
    assert "The document was removed from the knowledge base." in signed_in.client.get(done.headers["location"]).text
    with hub.db.session() as s:
        assert s.get(KbDocument, added.document_id) is None
        assert s.scalars(select(KbChunk).where(KbChunk.document_id == added.document_id)).first() is None
    assert kb.search("dog licence price", "town") == []
    again = signed_in.client.post(path, data={"csrf_token": signed_in.csrf()}, follow_redirects=False)
    assert again.status_code == 404
