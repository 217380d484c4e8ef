"""Chat basics: the new chat shows at once, rename, search, delete with confirmation, edit and resend,
regenerate keeping earlier answers, code highlighted on the server, a failed first question leaves no
empty chat, the icon and the translated transparency page."""

from __future__ import annotations

import html
import re
from typing import Any

from sovhub.assistant.answer_html import render_markdown
from sovhub.assistant.chat_store import ChatStore
from sovhub.errors import BackendUnavailable, NotFound
from sovhub.pipeline import ChatContext

from .conftest import PASSWORD, Web, sse_events
from .test_blocked import _use_language


class _Outage:
    """Every model call fails before the first word, as when the model server is down."""

    name = "tests.outage"

    async def before(self, ctx: ChatContext) -> None:
        raise BackendUnavailable("the model server is down")

    async def check_output(self, ctx: ChatContext, text: str, final: bool) -> None:
        return None

    async def after(self, ctx: ChatContext, result: Any) -> None:
        return None


def _new(web: Web, text: str) -> str:
    events = sse_events(web.ask(text))
    assert events[0][0] == "conversation"
    return str(events[0][1]["id"])


def _export(web: Web) -> list[dict]:  # type: ignore[type-arg]
    return web.client.get("/hub/v1/me/export").json()["assistant_conversations"]  # type: ignore[no-any-return]


def test_the_first_event_of_a_new_chat_carries_its_title(signed_in: Web) -> None:
    events = sse_events(signed_in.ask("How do I renew   my passport?"))
    name, data = events[0]
    assert name == "conversation" and data["title"] == "How do I renew my passport?"
    assert data["url"] == f"/c/{data['id']}"
    # The page the script adds the entry to: the list exists even before the first chat.
    signed_in.client.get("/")  # still a fresh page for a new chat
    assert 'id="conversation-list"' in signed_in.client.get("/").text


def test_rename_changes_the_title_and_refuses_an_empty_or_long_one(signed_in: Web) -> None:
    conversation_id = _new(signed_in, "first question")
    renamed = signed_in.client.post(f"/c/{conversation_id}/rename",
                                    data={"csrf_token": signed_in.csrf(), "title": "  Passport   renewal "},
                                    follow_redirects=False)
    assert renamed.status_code == 303
    page = signed_in.client.get(f"/c/{conversation_id}").text
    assert '<h1 id="chat-title">Passport renewal</h1>' in page
    for bad in ("   ", "x" * 81):
        refused = signed_in.client.post(f"/c/{conversation_id}/rename",
                                        data={"csrf_token": signed_in.csrf(), "title": bad}, follow_redirects=False)
        assert refused.headers["location"].endswith("?renamed=invalid")
    assert _export(signed_in)[0]["title"] == "Passport renewal"
    shown = signed_in.client.get(f"/c/{conversation_id}?renamed=invalid").text
    assert "A title needs at least one letter and at most 80 characters." in shown
    no_token = signed_in.client.post(f"/c/{conversation_id}/rename", data={"title": "forged"}, follow_redirects=False)
    assert no_token.status_code == 403 and _export(signed_in)[0]["title"] == "Passport renewal"


def test_someone_else_cannot_rename_edit_or_find_my_conversation(signed_in: Web) -> None:
    from sovhub.assistant.people import create_user

    conversation_id = _new(signed_in, "my private tax question")
    create_user(signed_in.hub, "eve@example.org", PASSWORD)
    signed_in.sign_in("eve@example.org")
    token = signed_in.csrf()
    assert signed_in.client.post(f"/c/{conversation_id}/rename", data={"csrf_token": token, "title": "mine"},
                                 follow_redirects=False).status_code == 404
    first = ChatStore(signed_in.hub).messages(signed_in.user_id, conversation_id)[0]
    edited = signed_in.client.post(f"/c/{conversation_id}/messages/{first.id}/edit",
                                   data={"csrf_token": token, "content": "hijack"})
    assert edited.status_code == 404
    assert "No conversation matches your search." in signed_in.client.get("/?q=tax").text
    signed_in.sign_in()
    assert _export(signed_in)[0]["title"] == "my private tax question"
    assert [m["text"] for m in _export(signed_in)[0]["messages"]][0] == "my private tax question"


def test_search_finds_words_in_titles_and_messages_in_any_case(signed_in: Web) -> None:
    passport = _new(signed_in, "Passport renewal fee")
    tenancy = _new(signed_in, "My landlord keeps the deposit")
    signed_in.ask("What about the Hryvnia amount?", conversation=passport)
    found = signed_in.client.get("/?q=HRYVNIA").text
    assert f'href="/c/{passport}"' in found and f'href="/c/{tenancy}"' not in found
    both = signed_in.client.get("/?q=the").text
    assert f'href="/c/{passport}"' in both and f'href="/c/{tenancy}"' in both
    none = signed_in.client.get("/?q=pension").text
    assert "No conversation matches your search." in none and "Show all conversations" in none
    assert f'href="/c/{passport}"' not in none


def test_delete_asks_for_confirmation_then_deletes(signed_in: Web) -> None:
    conversation_id = _new(signed_in, "to be deleted")
    page = signed_in.client.get(f"/c/{conversation_id}").text
    # The delete button sits behind a disclosure that says what will happen (works without script).
    confirm = page[page.index('id="delete-confirm"'):]
    assert confirm.index("Delete this conversation and all its messages? This cannot be undone.") < confirm.index(
        "Yes, delete it")
    deleted = signed_in.client.post(f"/c/{conversation_id}/delete", data={"csrf_token": signed_in.csrf()},
                                    follow_redirects=False)
    assert deleted.status_code == 303 and _export(signed_in) == []


def test_edit_and_resend_replaces_the_question_and_what_came_after(signed_in: Web) -> None:
    conversation_id = _new(signed_in, "first question")
    signed_in.ask("second question", conversation=conversation_id)
    first = ChatStore(signed_in.hub).messages(signed_in.user_id, conversation_id)[0]
    body = signed_in.client.post(f"/c/{conversation_id}/messages/{first.id}/edit",
                                 data={"csrf_token": signed_in.csrf(), "content": "better question"},
                                 headers={"accept": "text/event-stream"}).text
    assert sse_events(body)[-1][0] == "done"
    messages = _export(signed_in)[0]["messages"]
    assert [(m["role"], m["text"].strip()) for m in messages] == [("user", "better question"),
                                                                 ("assistant", "better question")]
    question = ChatStore(signed_in.hub).messages(signed_in.user_id, conversation_id)[0]
    empty = signed_in.client.post(f"/c/{conversation_id}/messages/{question.id}/edit",
                                  data={"csrf_token": signed_in.csrf(), "content": "  "})
    assert empty.status_code == 400
    assert [m["text"].strip() for m in _export(signed_in)[0]["messages"]] == ["better question"] * 2


def test_regenerate_keeps_the_earlier_answers(signed_in: Web) -> None:
    conversation_id = _new(signed_in, "tell me about benefits")
    for _ in range(2):
        body = signed_in.client.post(f"/c/{conversation_id}/regenerate", data={"csrf_token": signed_in.csrf()},
                                     headers={"accept": "text/event-stream"}).text
        assert sse_events(body)[-1][0] == "done"
    messages = _export(signed_in)[0]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    earlier = messages[1]["earlier_versions"]
    assert len(earlier) == 2 and all(v["text"].strip() == "tell me about benefits" for v in earlier)
    page = signed_in.client.get(f"/c/{conversation_id}").text
    assert "2 earlier versions" in page and "Version 2" in page


def test_regenerate_without_a_question_changes_nothing(signed_in: Web) -> None:
    conversation_id = _new(signed_in, "hello")
    store = ChatStore(signed_in.hub)
    with signed_in.hub.db.session() as s:
        from sovhub.assistant.tables import ConversationMessage

        s.query(ConversationMessage).filter(ConversationMessage.role == "user").delete()
    body = signed_in.client.post(f"/c/{conversation_id}/regenerate", data={"csrf_token": signed_in.csrf()},
                                 headers={"accept": "text/event-stream"}).text
    assert sse_events(body)[-1] == ("error", {"code": "nothing_to_answer", "message": "there is no question to answer",
                                             "block": None})
    assert [m.role for m in store.messages(signed_in.user_id, conversation_id)] == ["assistant"]


def test_code_is_highlighted_on_the_server_and_nothing_else_gets_through() -> None:
    out = render_markdown("```python\ndef add(a, b):\n    return a + b  # sum\n```\n")
    assert '<pre class="code" data-lang="python">' in out
    assert '<span class="k">def</span>' in out and '<span class="c1"># sum</span>' in out
    # A language name cannot smuggle attributes; unknown languages and raw HTML stay plain text.
    assert "onclick" not in render_markdown('```python" onclick="x\nprint(1)\n```\n')
    assert render_markdown("```nosuchlang\n<b>x</b>\n```\n") == "<pre><code>&lt;b&gt;x&lt;/b&gt;\n</code></pre>\n"
    assert "<span" not in render_markdown('<span class="k">x</span>')


def test_the_page_shows_highlighted_code_with_the_copy_label(signed_in: Web) -> None:
    conversation_id = _new(signed_in, "a function please")
    store = ChatStore(signed_in.hub)
    code = "```python\nprint('hi')\n```"
    store.append(signed_in.user_id, conversation_id, "assistant", code, html=render_markdown(code))
    page = signed_in.client.get(f"/c/{conversation_id}").text
    assert '<span class="nb">print</span>' in page and 'data-t-code-copy="Copy code"' in page


def test_a_failed_first_question_leaves_no_empty_chat_and_offers_retry(signed_in: Web) -> None:
    signed_in.hub.interceptors.append(_Outage())
    body = signed_in.ask("Will this work?")
    events = sse_events(body)
    assert events[0][0] == "conversation" and events[-1][0] == "error"
    assert events[-1][1]["discarded"] is True
    assert _export(signed_in) == []
    page = signed_in.client.get("/").text
    assert "No conversations yet." in page and 'data-t-retry="Try again"' in page
    # Without script: the form posts, the chat is not kept, the page says so and the person can ask again.
    plain = signed_in.client.post("/c", data={"content": "Again?", "csrf_token": signed_in.csrf()},
                                  follow_redirects=False)
    assert plain.headers["location"] == "/?retry=failed" and _export(signed_in) == []
    assert "The answer could not be completed. Please try again." in signed_in.client.get("/?retry=failed").text


def test_a_failed_later_question_stays_with_a_retry_button(signed_in: Web) -> None:
    conversation_id = _new(signed_in, "first")
    outage = _Outage()
    signed_in.hub.interceptors.append(outage)
    events = sse_events(signed_in.ask("second", conversation=conversation_id))
    assert events[-1][0] == "error" and "discarded" not in events[-1][1]
    page = signed_in.client.get(f"/c/{conversation_id}").text
    assert "This question has no answer yet." in page
    retry = page[page.index("This question has no answer yet."):]
    assert f'action="/c/{conversation_id}/regenerate"' in retry[:400]
    signed_in.hub.interceptors.remove(outage)
    body = signed_in.client.post(f"/c/{conversation_id}/regenerate", data={"csrf_token": signed_in.csrf()},
                                 headers={"accept": "text/event-stream"}).text
    assert sse_events(body)[-1][0] == "done"
    assert [m["text"].strip() for m in _export(signed_in)[0]["messages"]] == ["first", "first", "second", "second"]


def test_favicon_and_translated_transparency(web: Web) -> None:
    icon = web.client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    _use_language(web, "uk")
    page = web.client.get("/transparency")
    assert page.status_code == 200 and page.headers["content-language"] == "uk"
    text = html.unescape(page.text)
    assert "Звіт про прозорість" in text and "Суверенітет даних" in text and "Відхилені вихідні з'єднання" in text
    assert 'href="/static/app.css' in text  # the site's layout, not a bare page
    assert re.search(r"egress_refusals|noncompliant_backends_added", text) is None


def test_store_edit_refuses_an_answer_or_another_conversation(signed_in: Web) -> None:
    one, two = _new(signed_in, "one"), _new(signed_in, "two")
    store = ChatStore(signed_in.hub)
    answer = store.messages(signed_in.user_id, one)[1]
    question_of_two = store.messages(signed_in.user_id, two)[0]
    for conversation_id, message_id in ((one, answer.id), (one, question_of_two.id)):
        try:
            store.edit_question(signed_in.user_id, conversation_id, message_id, "x")
        except NotFound:
            pass
        else:
            raise AssertionError("edited a message it should not")
    assert [m.text.strip() for m in store.messages(signed_in.user_id, one)] == ["one", "one"]
