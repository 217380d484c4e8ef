"""Documents a person attaches to one of their conversations, and the passages a question picks.

Only the extracted text is kept (the knowledge base's extractor: PDF, HTML, Markdown, text),
split into passages and sealed with the person's data key (sovereignty's vault) like their
messages: the database never holds it in the clear, the person's export carries it and their
erasure removes it. Everything here is scoped to one person; another person's attachment is
"not found", never "forbidden".

Passages are picked for a question by shared character trigrams (any script, no model needed),
so attaching a document costs no embedding time; the chosen passages join the knowledge base's
as numbered sources the answer cites.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from ..errors import InvalidRequest, NotFound
from ..store.base import utcnow
from .knowledge.chunking import chunk_pages
from .knowledge.extract import extract
from .knowledge.results import SearchHit
from .tables import Conversation, ConversationAttachment

if TYPE_CHECKING:
    from ..hub import Hub
    from ..sovereignty.crypto import ContentVault

__all__ = ["MAX_ATTACHMENTS", "MAX_BYTES", "AttachmentHit", "AttachmentInfo", "AttachmentStore", "pick_passages"]

MAX_BYTES = 2 * 1024 * 1024
MAX_ATTACHMENTS = 5
MAX_PASSAGES = 400  # about 80,000 tokens of text: past that the document is cut, and the page says so
PASSAGES_PER_QUESTION = 3


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    id: int
    conversation_id: str
    name: str
    media_type: str
    size_bytes: int
    passages: int
    truncated: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AttachmentHit(SearchHit):
    """A passage of an attached document, cited like a knowledge base passage but linking to the attachment."""

    conversation_id: str = ""
    attachment_id: int = 0

    @property
    def url(self) -> str:
        return f"/c/{self.conversation_id}/attachments/{self.attachment_id}#p{self.chunk_id}"


def _trigrams(text: str) -> Counter[str]:
    folded = " ".join(text.casefold().split())
    return Counter(folded[i:i + 3] for i in range(max(len(folded) - 2, 0)))


def pick_passages(question: str, passages: list[dict[str, Any]], k: int = PASSAGES_PER_QUESTION) -> list[int]:
    """Indexes of the `k` passages sharing most trigrams with the question (in reading order).

    With no overlap at all ("summarise this"), the document's first passages: its beginning.
    """
    wanted = _trigrams(question)
    scored = []
    for i, passage in enumerate(passages):
        have = _trigrams(str(passage.get("text", "")))
        shared = sum(min(n, have[g]) for g, n in wanted.items())
        scored.append((shared / (1 + len(have)) ** 0.5, i))
    scored.sort(key=lambda x: (-x[0], x[1]))
    best = [i for score, i in scored[:k] if score > 0]
    return sorted(best) if best else list(range(min(k, len(passages))))


class AttachmentStore:
    """Attach, list, read and remove one person's documents in their conversations."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    @cached_property
    def vault(self) -> ContentVault:
        from ..sovereignty.crypto import ContentVault

        return self.hub.services.get(ContentVault)

    def attach(self, user_id: int, conversation_id: str, filename: str, data: bytes) -> AttachmentInfo:
        if not data:
            raise InvalidRequest("the file is empty", param="file", code="empty_document")
        if len(data) > MAX_BYTES:
            raise InvalidRequest(f"a file holds at most {MAX_BYTES} bytes", param="file", code="file_too_large")
        name = " ".join(filename.replace("\\", "/").rsplit("/", 1)[-1].split())[:200] or "document.txt"
        extracted = extract(name, data)  # refuses unsupported types and files without text
        chunks = chunk_pages(extracted.pages, extracted.paged)
        passages = [{"text": c.text, "page": c.page} for c in chunks[:MAX_PASSAGES]]
        body = json.dumps({"name": name, "title": extracted.title, "passages": passages,
                           "truncated": len(chunks) > MAX_PASSAGES}, ensure_ascii=False)
        with self.hub.db.session() as s:
            conversation = s.get(Conversation, conversation_id)
            if conversation is None or conversation.user_id != user_id:
                raise NotFound("no such conversation", code="conversation_not_found")
            count = len(s.scalars(select(ConversationAttachment.id)
                                  .where(ConversationAttachment.conversation_id == conversation_id)).all())
            if count >= MAX_ATTACHMENTS:
                raise InvalidRequest(f"a conversation holds at most {MAX_ATTACHMENTS} documents", param="file",
                                     code="too_many_attachments")
            row = ConversationAttachment(conversation_id=conversation_id, user_id=user_id,
                                         media_type=extracted.media_type, size_bytes=len(data),
                                         content=self.vault.encrypt_for_user(user_id, body), created_at=utcnow())
            s.add(row)
            s.flush()
            return AttachmentInfo(row.id, conversation_id, name, extracted.media_type, len(data), len(passages),
                                  len(chunks) > MAX_PASSAGES, row.created_at)

    def _rows(self, user_id: int, conversation_id: str | None) -> list[tuple[ConversationAttachment, dict[str, Any]]]:
        with self.hub.db.session() as s:
            query = select(ConversationAttachment).where(ConversationAttachment.user_id == user_id)
            if conversation_id is not None:
                query = query.where(ConversationAttachment.conversation_id == conversation_id)
            rows = list(s.scalars(query.order_by(ConversationAttachment.id)))
            for row in rows:
                s.expunge(row)
        return [(row, json.loads(self.vault.decrypt_for_user(user_id, row.content))) for row in rows]

    @staticmethod
    def _info(row: ConversationAttachment, body: dict[str, Any]) -> AttachmentInfo:
        return AttachmentInfo(row.id, row.conversation_id, str(body.get("name", "")), row.media_type, row.size_bytes,
                              len(body.get("passages") or []), bool(body.get("truncated")), row.created_at)

    def of_conversation(self, user_id: int, conversation_id: str) -> list[AttachmentInfo]:
        return [self._info(row, body) for row, body in self._rows(user_id, conversation_id)]

    def read(
        self, user_id: int, conversation_id: str, attachment_id: int
    ) -> tuple[AttachmentInfo, list[dict[str, Any]]]:
        """The attachment and its passages, if it is this person's, in this conversation."""
        for row, body in self._rows(user_id, conversation_id):
            if row.id == attachment_id:
                return self._info(row, body), list(body.get("passages") or [])
        raise NotFound("no such attachment", code="attachment_not_found")

    def remove(self, user_id: int, conversation_id: str, attachment_id: int) -> None:
        with self.hub.db.session() as s:
            row = s.get(ConversationAttachment, attachment_id)
            if row is None or row.user_id != user_id or row.conversation_id != conversation_id:
                raise NotFound("no such attachment", code="attachment_not_found")
            s.delete(row)

    def remove_conversation(self, user_id: int, conversation_id: str) -> None:
        with self.hub.db.session() as s:
            s.execute(delete(ConversationAttachment).where(ConversationAttachment.user_id == user_id,
                                                           ConversationAttachment.conversation_id == conversation_id))

    def remove_all(self, user_id: int) -> int:
        with self.hub.db.session() as s:
            result = s.execute(delete(ConversationAttachment).where(ConversationAttachment.user_id == user_id))
            return int(getattr(result, "rowcount", 0) or 0)

    def hits(self, user_id: int, conversation_id: str, question: str) -> list[AttachmentHit]:
        """The passages of the conversation's documents that best match the question, as sources."""
        out: list[AttachmentHit] = []
        for row, body in self._rows(user_id, conversation_id):
            passages = list(body.get("passages") or [])
            for i in pick_passages(question, passages):
                passage = passages[i]
                text = str(passage.get("text", ""))
                out.append(AttachmentHit(
                    chunk_id=i, document_id=row.id, collection="attachment", title=str(body.get("name", "")),
                    source=str(body.get("name", "")), page=passage.get("page"), char_start=0, char_end=len(text),
                    text=text, score=1.0, vector_rank=None, keyword_rank=None, similarity=None,
                    conversation_id=conversation_id, attachment_id=row.id))
        return out

    def export(self, user_id: int) -> list[dict[str, Any]]:
        return [
            {"conversation_id": row.conversation_id, "name": body.get("name"), "media_type": row.media_type,
             "size_bytes": row.size_bytes, "created_at": row.created_at.isoformat(),
             "text": "\n\n".join(str(p.get("text", "")) for p in body.get("passages") or [])}
            for row, body in self._rows(user_id, None)
        ]
