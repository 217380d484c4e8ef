"""A person attaches a document to a conversation and asks about it: private, encrypted, cited,
in their export, gone with the conversation and with their erasure."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from sovhub.assistant.attachments import MAX_ATTACHMENTS, MAX_BYTES, AttachmentStore, pick_passages
from sovhub.assistant.tables import ConversationAttachment
from sovhub.backends.registry import BackendRegistry

from .conftest import PASSWORD, Web, sse_events

LEASE = (
    "Tenancy agreement.\n\nThe tenant keeps a cat named Pixel in the flat.\n\n"
    "The monthly rent is 731 euros, paid on the third day of each month.\n\n"
    "The deposit is returned within 30 days after the keys are handed back.\n"
)


def _new(web: Web, text: str = "About my lease") -> str:
    return str(sse_events(web.ask(text))[0][1]["id"])


def _attach(web: Web, conversation_id: str | None, name: str, data: bytes) -> Any:
    path = f"/c/{conversation_id}/attachments" if conversation_id else "/c/attachments"
    return web.client.post(path, data={"csrf_token": web.csrf()}, files={"file": (name, data, "text/plain")},
                           follow_redirects=False)


def test_a_question_about_an_attached_document_gets_its_passage_as_a_cited_source(signed_in: Web) -> None:
    conversation_id = _new(signed_in)
    attached = _attach(signed_in, conversation_id, "lease.txt", LEASE.encode())
    assert attached.headers["location"] == f"/c/{conversation_id}?attached=yes"
    page = signed_in.client.get(attached.headers["location"]).text
    assert "lease.txt" in page and "The document was attached. Ask a question about it." in page
    backend = signed_in.hub.services.get(BackendRegistry).get("fake1")
    before = len(backend.received)  # type: ignore[union-attr, attr-defined]
    events = sse_events(signed_in.ask("How much is the monthly rent?", conversation=conversation_id))
    assert events[-1][0] == "done"
    sent = backend.received[before]  # type: ignore[union-attr, attr-defined]
    system = sent[0]["content"]
    assert sent[0]["role"] == "system" and "731 euros" in system and 'title="lease.txt"' in system
    # Sources are numbered from 1 with the person's document first; a cited one links to the attachment.
    meta = AttachmentStore(signed_in.hub).hits(signed_in.user_id, conversation_id, "monthly rent")
    assert meta[0].citation()["url"].startswith(f"/c/{conversation_id}/attachments/")
    shown = signed_in.client.get(meta[0].url.split("#")[0]).text
    assert "Pixel" in shown and "731 euros" in shown


def test_the_text_is_encrypted_and_only_the_owner_reads_it(signed_in: Web) -> None:
    from sovhub.assistant.people import create_user

    conversation_id = _new(signed_in)
    _attach(signed_in, conversation_id, "lease.txt", LEASE.encode())
    with signed_in.hub.db.session() as s:
        row = s.scalars(select(ConversationAttachment)).one()
        assert b"Pixel" not in row.content and b"lease.txt" not in row.content
        attachment_id = row.id
    create_user(signed_in.hub, "eve@example.org", PASSWORD)
    signed_in.sign_in("eve@example.org")
    assert signed_in.client.get(f"/c/{conversation_id}/attachments/{attachment_id}").status_code == 404
    assert _attach(signed_in, conversation_id, "x.txt", b"planted text").status_code == 404
    gone = signed_in.client.post(f"/c/{conversation_id}/attachments/{attachment_id}/delete",
                                 data={"csrf_token": signed_in.csrf()}, follow_redirects=False)
    assert gone.status_code == 404
    signed_in.sign_in()
    assert len(AttachmentStore(signed_in.hub).of_conversation(signed_in.user_id, conversation_id)) == 1


def test_bad_files_are_refused_and_nothing_is_kept(signed_in: Web) -> None:
    conversation_id = _new(signed_in)
    for name, data, code in (("run.exe", b"MZ\x90\x00", "type"), ("big.txt", b"a" * (MAX_BYTES + 1), "too_large"),
                             ("empty.txt", b"   \n ", "empty")):
        refused = _attach(signed_in, conversation_id, name, data)
        assert refused.headers["location"] == f"/c/{conversation_id}?attached={code}", name
    assert AttachmentStore(signed_in.hub).of_conversation(signed_in.user_id, conversation_id) == []
    no_token = signed_in.client.post(f"/c/{conversation_id}/attachments", files={"file": ("a.txt", b"text")})
    assert no_token.status_code == 403
    for i in range(MAX_ATTACHMENTS):
        _attach(signed_in, conversation_id, f"n{i}.txt", f"note number {i}".encode())
    assert _attach(signed_in, conversation_id, "one-more.txt", b"more").headers["location"].endswith("=too_many")
    # A new chat started with a refused file leaves no chat behind.
    assert _attach(signed_in, None, "run.exe", b"MZ").headers["location"] == "/?attached=type"
    assert len(signed_in.client.get("/hub/v1/me/export").json()["assistant_conversations"]) == 1


def test_a_new_chat_can_start_with_a_document(signed_in: Web) -> None:
    started = _attach(signed_in, None, "lease.txt", LEASE.encode())
    location = started.headers["location"]
    assert location.startswith("/c/") and location.endswith("?attached=yes")
    conversation_id = location[3:].split("?")[0]
    events = sse_events(signed_in.ask("When is the deposit returned?", conversation=conversation_id))
    assert events[-1][0] == "done"


def test_export_carries_attachments_and_deletion_and_erasure_remove_them(signed_in: Web) -> None:
    conversation_id = _new(signed_in)
    _attach(signed_in, conversation_id, "lease.txt", LEASE.encode())
    export = signed_in.client.get("/hub/v1/me/export").json()
    [item] = export["assistant_attachments"]
    assert item["name"] == "lease.txt" and "731 euros" in item["text"] and item["conversation_id"] == conversation_id
    signed_in.client.post(f"/c/{conversation_id}/delete", data={"csrf_token": signed_in.csrf()})
    with signed_in.hub.db.session() as s:
        assert s.scalars(select(ConversationAttachment)).all() == []
    other = _new(signed_in, "again")
    _attach(signed_in, other, "lease.txt", LEASE.encode())
    erased = signed_in.client.post("/me/erase", data={"csrf_token": signed_in.csrf(), "confirm": "yes"},
                                   follow_redirects=False)
    assert erased.status_code == 303
    with signed_in.hub.db.session() as s:
        assert s.scalars(select(ConversationAttachment)).all() == []


def test_passages_are_picked_by_what_the_question_shares_with_them() -> None:
    passages = [{"text": "Opening hours of the office."}, {"text": "The monthly rent is 731 euros."},
                {"text": "Парковка коштує 20 гривень на годину."}]
    assert pick_passages("how much is the rent per month", passages, k=1) == [1]
    assert pick_passages("скільки коштує парковка", passages, k=1) == [2]
    assert pick_passages("???", passages, k=2) == [0, 1]  # nothing shared: the beginning
