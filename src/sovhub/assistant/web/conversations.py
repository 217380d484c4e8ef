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

from ...errors import NotFound
from ...store.base import utcnow
from ..tables import Conversation, ConversationMessage

if TYPE_CHECKING:
    from ...hub import Hub
    from ...sovereignty.crypto import ContentVault

__all__ = ["ChatView", "ConversationStore", "ConversationSummary", "StoredMessage"]

TITLE_CHARS = 80


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


@dataclass(slots=True)
class ChatView:
    """What the chat page shows: the open conversation (if any), the sidebar list, the messages."""

    conversation: ConversationSummary | None
    conversations: list[ConversationSummary]
    messages: list[StoredMessage]


def _title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


class ConversationStore:
    """CRUD over conversations and messages for one hub; every call is scoped to one person."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    @cached_property
    def vault(self) -> ContentVault:
        # A store lives for one request or command: resolving the vault once spares a lookup per blob.
        from ...sovereignty.crypto import ContentVault

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

    def delete(self, user_id: int, conversation_id: str) -> None:
        self.get(user_id, conversation_id)
        with self.hub.db.session() as s:
            s.execute(delete(ConversationMessage).where(ConversationMessage.conversation_id == conversation_id))
            s.execute(delete(Conversation).where(Conversation.id == conversation_id))

    def delete_all(self, user_id: int) -> int:
        with self.hub.db.session() as s:
            ids = list(s.scalars(select(Conversation.id).where(Conversation.user_id == user_id)))
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
                                     body.get("html")))
        return out

    def append(
        self, user_id: int, conversation_id: str, role: str, text: str, *, model: str | None = None,
        finish_reason: str | None = None, citations: list[dict[str, Any]] | None = None,
        block: dict[str, Any] | None = None, html: str | None = None,
    ) -> int:
        body = json.dumps({"text": text, "citations": citations or [], "block": block, "html": html},
                          ensure_ascii=False)
        now = utcnow()
        with self.hub.db.session() as s:
            conversation = s.get(Conversation, conversation_id)
            if conversation is None or conversation.user_id != user_id:
                raise NotFound("no such conversation", code="conversation_not_found")
            row = ConversationMessage(conversation_id=conversation_id, role=role, model=model,
                                      finish_reason=finish_reason, content=self._seal(user_id, body), created_at=now)
            s.add(row)
            conversation.updated_at = now
            if model:
                conversation.model = model
            s.flush()
            return row.id

    def drop_last_answer(self, user_id: int, conversation_id: str) -> StoredMessage:
        """Remove the trailing assistant answer (for regenerate); return the question it answered."""
        history = self.messages(user_id, conversation_id)
        while history and history[-1].role == "assistant":
            last = history.pop()
            with self.hub.db.session() as s:
                s.execute(delete(ConversationMessage).where(ConversationMessage.id == last.id))
        if not history or history[-1].role != "user":
            raise NotFound("there is no question to answer again in this conversation", code="nothing_to_regenerate")
        return history[-1]

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
            })
        return [
            {"id": c.id, "title": c.title, "model": c.model, "updated_at": c.updated_at.isoformat(),
             "messages": by_conversation.get(c.id, [])}
            for c in summaries
        ]
