"""A person's conversations, encrypted at rest with their data key (sovereignty's vault).

Titles and message bodies never reach the database in the clear: each is a vault blob under
the person's key, so erasing the person (destroying the key) makes every copy unreadable,
backups included. Reads and writes are short synchronous transactions; callers in async code
run them in a worker thread.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ..errors import InvalidRequest, NotFound
from ..store.base import utcnow
from .tables import Conversation, ConversationAttachment, ConversationMessage

if TYPE_CHECKING:
    from ..hub import Hub
    from ..sovereignty.crypto import ContentVault

__all__ = ["ChatView", "ChatStore", "ConversationSummary", "StoredMessage"]

TITLE_CHARS = 80
# Earlier answers kept under a regenerated one; older ones beyond this are dropped.
MAX_VERSIONS = 10


@dataclass(slots=True)
class ConversationSummary:
    id: str
    title: str
    model: str
    updated_at: datetime


@dataclass(slots=True)
class StoredMessage:
    id: int
    role: str
    text: str
    model: str | None = None
    finish_reason: str | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)
    block: dict[str, Any] | None = None
    created_at: datetime | None = None
    html: str | None = None  # the answer's sanitised HTML, rendered once when it was saved
    versions: list[dict[str, Any]] = field(default_factory=list)  # earlier answers, oldest first


@dataclass(slots=True)
class ChatView:
    """What the chat page shows: the open conversation (if any), the sidebar list, the messages."""

    conversation: ConversationSummary | None
    conversations: list[ConversationSummary]
    messages: list[StoredMessage]


def _title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


class ChatStore:
    """CRUD over conversations and messages for one hub; every call is scoped to one person."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    @cached_property
    def vault(self) -> ContentVault:
        # A store lives for one request or command: resolving the vault once spares a lookup per blob.
        from ..sovereignty.crypto import ContentVault

        return self.hub.services.get(ContentVault)

    def _seal(self, user_id: int, value: str) -> bytes:
        return self.vault.encrypt_for_user(user_id, value)

    def _open(self, user_id: int, blob: bytes) -> str:
        return self.vault.decrypt_for_user(user_id, blob)

    # --- conversations ---

    def create(self, user_id: int, first_message: str, model: str) -> str:
        conversation_id = secrets.token_urlsafe(16)
        with self.hub.db.session() as s:
            s.add(Conversation(id=conversation_id, user_id=user_id, model=model,
                               title=self._seal(user_id, _title_from(first_message))))
        return conversation_id

    def summaries(self, user_id: int, limit: int = 100) -> list[ConversationSummary]:
        with self.hub.db.session() as s:
            return self._summaries(s, user_id, limit)

    def _summaries(self, s: Session, user_id: int, limit: int) -> list[ConversationSummary]:
        rows = s.execute(
            select(Conversation.id, Conversation.title, Conversation.model, Conversation.updated_at)
            .where(Conversation.user_id == user_id)
            .order_by(Conversation.updated_at.desc(), Conversation.id)
            .limit(limit)
        ).all()
        return [ConversationSummary(r.id, self._open(user_id, r.title), r.model, r.updated_at) for r in rows]

    def chat_view(self, user_id: int, conversation_id: str | None, limit: int = 100) -> ChatView:
        """Everything the chat page needs in one transaction; NotFound if the conversation is not theirs."""
        with self.hub.db.session() as s:
            conversation = self._get(s, user_id, conversation_id) if conversation_id else None
            messages = self._messages(s, user_id, conversation_id) if conversation_id else []
            summaries = self._summaries(s, user_id, limit)
        return ChatView(conversation, summaries, messages)

    def count(self, user_id: int) -> int:
        with self.hub.db.session() as s:
            stmt = select(func.count()).select_from(Conversation).where(Conversation.user_id == user_id)
            return int(s.scalar(stmt) or 0)

    def get(self, user_id: int, conversation_id: str) -> ConversationSummary:
        """The conversation, if it is this person's; NotFound otherwise (never 'forbidden': no probing)."""
        with self.hub.db.session() as s:
            return self._get(s, user_id, conversation_id)

    def _get(self, s: Session, user_id: int, conversation_id: str) -> ConversationSummary:
        row = s.get(Conversation, conversation_id)
        if row is None or row.user_id != user_id:
            raise NotFound("no such conversation", code="conversation_not_found")
        return ConversationSummary(row.id, self._open(user_id, row.title), row.model, row.updated_at)

    def rename(self, user_id: int, conversation_id: str, title: str) -> str:
        """Give the conversation a title of the person's choosing (one line, at most TITLE_CHARS)."""
        clean = " ".join(title.split())
        if not clean:
            raise InvalidRequest("a title needs at least one letter", param="title", code="empty_title")
        if len(clean) > TITLE_CHARS:
            raise InvalidRequest(f"a title has at most {TITLE_CHARS} characters", param="title", code="title_too_long")
        with self.hub.db.session() as s:
            row = s.get(Conversation, conversation_id)
            if row is None or row.user_id != user_id:
                raise NotFound("no such conversation", code="conversation_not_found")
            row.title = self._seal(user_id, clean)
        return clean

    def search(self, user_id: int, query: str, limit: int = 100) -> list[ConversationSummary]:
        """The person's conversations whose title or messages contain the words of `query` (any case).

        Titles and messages are encrypted, so the search runs here, over the person's own rows,
        decrypted with their key: nothing about the query or the text reaches the database.
        """
        words = query.casefold().split()
        if not words:
            return self.summaries(user_id, limit)
        with self.hub.db.session() as s:
            summaries = self._summaries(s, user_id, 1000)
            rows = s.execute(
                select(ConversationMessage.conversation_id, ConversationMessage.content)
                .join(Conversation, Conversation.id == ConversationMessage.conversation_id)
                .where(Conversation.user_id == user_id)
            ).all()
        texts: dict[str, list[str]] = {c.id: [c.title.casefold()] for c in summaries}
        for row in rows:
            body = json.loads(self._open(user_id, row.content))
            texts.setdefault(row.conversation_id, []).append(str(body.get("text", "")).casefold())
        found = [c for c in summaries if all(any(w in t for t in texts.get(c.id, [])) for w in words)]
        return found[:limit]

    def delete(self, user_id: int, conversation_id: str) -> None:
        self.get(user_id, conversation_id)
        with self.hub.db.session() as s:
            s.execute(delete(ConversationAttachment).where(ConversationAttachment.conversation_id == conversation_id))
            s.execute(delete(ConversationMessage).where(ConversationMessage.conversation_id == conversation_id))
            s.execute(delete(Conversation).where(Conversation.id == conversation_id))

    def delete_all(self, user_id: int) -> int:
        with self.hub.db.session() as s:
            ids = list(s.scalars(select(Conversation.id).where(Conversation.user_id == user_id)))
            s.execute(delete(ConversationAttachment).where(ConversationAttachment.user_id == user_id))
            if ids:
                s.execute(delete(ConversationMessage).where(ConversationMessage.conversation_id.in_(ids)))
                s.execute(delete(Conversation).where(Conversation.id.in_(ids)))
        return len(ids)

    # --- messages ---

    def messages(self, user_id: int, conversation_id: str) -> list[StoredMessage]:
        with self.hub.db.session() as s:
            self._get(s, user_id, conversation_id)
            return self._messages(s, user_id, conversation_id)

    def _messages(self, s: Session, user_id: int, conversation_id: str) -> list[StoredMessage]:
        # Plain columns, not ORM objects: a long conversation is read on every view, never changed here.
        rows = s.execute(
            select(ConversationMessage.id, ConversationMessage.role, ConversationMessage.content,
                   ConversationMessage.model, ConversationMessage.finish_reason, ConversationMessage.created_at)
            .where(ConversationMessage.conversation_id == conversation_id)
            .order_by(ConversationMessage.id)
        ).all()
        out = []
        for row in rows:
            body = json.loads(self._open(user_id, row.content))
            out.append(StoredMessage(row.id, row.role, body.get("text", ""), row.model, row.finish_reason,
                                     body.get("citations") or [], body.get("block"), row.created_at,
                                     body.get("html"), body.get("versions") or []))
        return out

    def append(
        self, user_id: int, conversation_id: str, role: str, text: str, *, model: str | None = None,
        finish_reason: str | None = None, citations: list[dict[str, Any]] | None = None,
        block: dict[str, Any] | None = None, html: str | None = None, replace_answer: bool = False,
    ) -> int:
        """Add a message; with `replace_answer`, it takes the place of the trailing answer(s), which
        are kept as its earlier versions (regenerate), in the same transaction."""
        versions: list[dict[str, Any]] = []
        now = utcnow()
        with self.hub.db.session() as s:
            conversation = s.get(Conversation, conversation_id)
            if conversation is None or conversation.user_id != user_id:
                raise NotFound("no such conversation", code="conversation_not_found")
            if replace_answer:
                versions = self._take_trailing_answers(s, user_id, conversation_id)
            body = json.dumps({"text": text, "citations": citations or [], "block": block, "html": html,
                               "versions": versions[-MAX_VERSIONS:]}, ensure_ascii=False)
            row = ConversationMessage(conversation_id=conversation_id, role=role, model=model,
                                      finish_reason=finish_reason, content=self._seal(user_id, body), created_at=now)
            s.add(row)
            conversation.updated_at = now
            if model:
                conversation.model = model
            s.flush()
            return row.id

    def _take_trailing_answers(self, s: Session, user_id: int, conversation_id: str) -> list[dict[str, Any]]:
        """Delete the answers after the last question; their texts (and their own versions), oldest first."""
        rows = s.execute(
            select(ConversationMessage.id, ConversationMessage.role, ConversationMessage.content,
                   ConversationMessage.model, ConversationMessage.created_at)
            .where(ConversationMessage.conversation_id == conversation_id)
            .order_by(ConversationMessage.id.desc()).limit(MAX_VERSIONS + 1)
        ).all()
        trailing = []
        for row in rows:
            if row.role != "assistant":
                break
            trailing.append(row)
        versions: list[dict[str, Any]] = []
        for row in reversed(trailing):
            body = json.loads(self._open(user_id, row.content))
            versions.extend(body.get("versions") or [])
            if body.get("text"):
                versions.append({"text": body.get("text", ""), "html": body.get("html"), "model": row.model,
                                 "citations": body.get("citations") or [],
                                 "created_at": row.created_at.isoformat() if row.created_at else None})
        if trailing:
            s.execute(delete(ConversationMessage).where(ConversationMessage.id.in_([r.id for r in trailing])))
        return versions

    def edit_question(self, user_id: int, conversation_id: str, message_id: int, text: str) -> None:
        """Replace one of the person's questions; everything after it goes (its answer is asked again)."""
        with self.hub.db.session() as s:
            conversation = s.get(Conversation, conversation_id)
            row = s.get(ConversationMessage, message_id)
            if (conversation is None or conversation.user_id != user_id or row is None
                    or row.conversation_id != conversation_id or row.role != "user"):
                raise NotFound("no such question in this conversation", code="message_not_found")
            s.execute(delete(ConversationMessage).where(ConversationMessage.conversation_id == conversation_id,
                                                        ConversationMessage.id >= message_id))
            body = json.dumps({"text": text, "citations": [], "block": None, "html": None}, ensure_ascii=False)
            now = utcnow()
            s.add(ConversationMessage(conversation_id=conversation_id, role="user", content=self._seal(user_id, body),
                                      created_at=now))
            conversation.updated_at = now

    def export(self, user_id: int) -> list[dict[str, Any]]:
        """Every conversation of the person with its messages, decrypted, for their data export."""
        summaries = self.summaries(user_id, limit=1_000_000)
        with self.hub.db.session() as s:
            rows = list(s.scalars(
                select(ConversationMessage)
                .join(Conversation, Conversation.id == ConversationMessage.conversation_id)
                .where(Conversation.user_id == user_id)
                .order_by(ConversationMessage.id)
            ))
        by_conversation: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            body = json.loads(self._open(user_id, row.content))
            by_conversation.setdefault(row.conversation_id, []).append({
                "role": row.role, "text": body.get("text", ""), "model": row.model,
                "finish_reason": row.finish_reason, "citations": body.get("citations") or [],
                "block": body.get("block"), "created_at": row.created_at.isoformat(),
                "earlier_versions": [{k: v for k, v in version.items() if k != "html"}
                                     for version in body.get("versions") or []],
            })
        return [
            {"id": c.id, "title": c.title, "model": c.model, "updated_at": c.updated_at.isoformat(),
             "messages": by_conversation.get(c.id, [])}
            for c in summaries
        ]
