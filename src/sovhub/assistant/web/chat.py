"""The chat pages: conversation list and search, a conversation, sending, editing a question,
regenerating (earlier answers kept), renaming, deleting, appeals.

Forms work without JavaScript (the server answers in full, then redirects); with JavaScript the
same endpoints stream the answer as Server-Sent Events when asked for ``text/event-stream``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from sovhub import linear_re

from ...access.csrf import verify_csrf
from ...errors import Conflict, InvalidRequest, NotFound, SovhubError
from ...pipeline import Principal
from ...safety.appeals import appeals_of, file_appeal
from ..answer_html import render_markdown
from ..attachments import AttachmentStore
from ..chat_store import ChatStore
from ..turns import Turn, run_turn
from .auth import signed_in
from .render import Page, render, request_hub

__all__ = ["allowed_models", "router"]

router = APIRouter(include_in_schema=False)

MAX_MESSAGE_CHARS = 16_000
_CONVERSATION_ID = linear_re.compile(r"[A-Za-z0-9_-]{8,32}")
NO_REASON = "(no reason given: review asked for in the web app)"


def _store(request: Request) -> ChatStore:
    return ChatStore(request_hub(request))


def allowed_models(page: Page) -> list[str]:
    """Chat models this person may use (route policies and tiers applied); never the embedder."""
    from ...api.models.service import list_models

    assert page.user is not None
    try:
        cards = list_models(page.hub, Principal(org_id=None, user_id=page.user.id))
    except SovhubError:
        return []
    return [c.id for c in cards if c.id != page.hub.settings.embeddings_model_id]


def _wants_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


async def _chat_page(request: Request, conversation_id: str | None, status: int = 200) -> Response:
    page = signed_in(request)
    assert page.user is not None
    store = _store(request)
    query = request.query_params.get("q", "").strip()[:200]
    try:
        # One worker-thread hop and one transaction for the whole page (was three of each).
        view = await anyio.to_thread.run_sync(store.chat_view, page.user.id, conversation_id)
        if query:
            view.conversations = await anyio.to_thread.run_sync(store.search, page.user.id, query)
    except NotFound:
        return render(page, "error.html", status=404, error="not_found")
    conversation = view.conversation
    models = allowed_models(page)
    current = conversation.model if conversation and conversation.model in models else (models[0] if models else "")
    appeals: dict[str, Any] = {}
    if any(m.block and m.block.get("decision_id") for m in view.messages):
        principal = Principal(org_id=None, user_id=page.user.id)
        mine = await anyio.to_thread.run_sync(appeals_of, page.hub, principal)
        appeals = {a.decision_id: a for a in mine}
    attachments: list[Any] = []
    if conversation is not None:
        attachments = await anyio.to_thread.run_sync(
            AttachmentStore(page.hub).of_conversation, page.user.id, conversation.id)
    return render(
        page, "chat.html", status=status, attachments=attachments, attached=request.query_params.get("attached"),
        conversations=view.conversations, conversation=conversation,
        messages=view.messages, models=models, current_model=current, render_markdown=render_markdown,
        appeals=appeals, query=query, renamed=request.query_params.get("renamed"),
        retry=request.query_params.get("retry"),
        appeal=request.query_params.get("appeal"), appeal_id=request.query_params.get("appeal_id"),
    )


@router.get("/")
async def home(request: Request) -> Response:
    return await _chat_page(request, None)


@router.get("/c/{conversation_id}")
async def conversation_page(conversation_id: str, request: Request) -> Response:
    return await _chat_page(request, conversation_id)


def _sse(events: AsyncIterator[dict[str, Any]], first: dict[str, Any] | None = None) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        if first is not None:
            yield _event(first)
        async for event in events:
            yield _event(event)

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})


def _event(event: dict[str, Any]) -> bytes:
    name = event.pop("event")
    return f"event: {name}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


async def _discard_if_unanswered(
    events: AsyncIterator[dict[str, Any]], store: ChatStore, turn: Turn
) -> AsyncIterator[dict[str, Any]]:
    """A new conversation whose first answer failed is removed: no empty chat stays in the list.

    The error event then says ``discarded``, so the page asks again from scratch on retry.
    """
    async for event in events:
        if event["event"] == "error" and event.get("message_id") is None:
            await anyio.to_thread.run_sync(store.delete, turn.user_id, turn.conversation_id)
            event = {**event, "discarded": True}
        yield event


async def _answer(
    request: Request, page: Page, turn: Turn, first: dict[str, Any] | None = None, *, new: bool = False
) -> Response:
    store = _store(request)
    events = run_turn(page.hub, store, turn)
    if new:
        events = _discard_if_unanswered(events, store, turn)
    if _wants_stream(request):
        return _sse(events, first)
    failed = None
    async for event in events:  # no JavaScript: answer in full, then show the conversation
        if event["event"] == "error" and not event.get("block"):
            failed = event
    if failed is not None and failed.get("discarded"):
        return RedirectResponse("/?retry=failed", status_code=303)
    return RedirectResponse(f"/c/{turn.conversation_id}" + ("?retry=failed" if failed else ""), status_code=303)


async def _read_message(request: Request, page: Page) -> tuple[str, str]:
    form = await request.form()
    verify_csrf(request, form.get("csrf_token"))
    content = str(form.get("content") or "").strip()
    if not content:
        raise InvalidRequest("write a message first", param="content", code="empty_message")
    if len(content) > MAX_MESSAGE_CHARS:
        raise InvalidRequest(f"a message holds at most {MAX_MESSAGE_CHARS} characters", param="content")
    model = str(form.get("model") or "")
    models = allowed_models(page)
    if model not in models:
        if form.get("model"):
            raise NotFound(f"the model {model!r} is not available to you", param="model", code="model_not_found")
        if not models:
            raise NotFound("no model is available to you right now", param="model", code="model_not_found")
        model = models[0]
    return content, model


@router.post("/c")
async def new_conversation(request: Request) -> Response:
    page = signed_in(request)
    assert page.user is not None
    content, model = await _read_message(request, page)
    store = _store(request)
    user_id = page.user.id

    def create() -> str:
        conversation_id = store.create(user_id, content, model)
        store.append(user_id, conversation_id, "user", content)
        return conversation_id

    conversation_id = await anyio.to_thread.run_sync(create)
    turn = Turn(user_id, conversation_id, model, page.lang)
    title = await anyio.to_thread.run_sync(lambda: store.get(user_id, conversation_id).title)
    first = {"event": "conversation", "id": conversation_id, "url": f"/c/{conversation_id}", "title": title}
    return await _answer(request, page, turn, first, new=True)


@router.post("/c/{conversation_id}/messages")
async def send_message(conversation_id: str, request: Request) -> Response:
    page = signed_in(request)
    assert page.user is not None
    content, model = await _read_message(request, page)
    store = _store(request)
    user_id = page.user.id
    await anyio.to_thread.run_sync(lambda: store.append(user_id, conversation_id, "user", content))
    return await _answer(request, page, Turn(user_id, conversation_id, model, page.lang))


@router.post("/c/{conversation_id}/regenerate")
async def regenerate(conversation_id: str, request: Request) -> Response:
    page = signed_in(request)
    assert page.user is not None
    form = await request.form()
    verify_csrf(request, form.get("csrf_token"))
    store = _store(request)
    user_id = page.user.id
    conversation = await anyio.to_thread.run_sync(store.get, user_id, conversation_id)
    models = allowed_models(page)
    model = str(form.get("model") or conversation.model)
    if model not in models:
        raise NotFound(f"the model {model!r} is not available to you", param="model", code="model_not_found")
    return await _answer(request, page, Turn(user_id, conversation_id, model, page.lang, replace_answer=True))


@router.post("/c/{conversation_id}/messages/{message_id}/edit")
async def edit_message(conversation_id: str, message_id: int, request: Request) -> Response:
    """Change one of the person's questions and ask it again; what came after it is replaced."""
    page = signed_in(request)
    assert page.user is not None
    content, model = await _read_message(request, page)
    store = _store(request)
    user_id = page.user.id
    await anyio.to_thread.run_sync(lambda: store.edit_question(user_id, conversation_id, message_id, content))
    return await _answer(request, page, Turn(user_id, conversation_id, model, page.lang))


@router.post("/c/{conversation_id}/rename")
async def rename_conversation(conversation_id: str, request: Request) -> Response:
    page = signed_in(request)
    assert page.user is not None
    form = await request.form()
    verify_csrf(request, form.get("csrf_token"))
    store = _store(request)
    user_id = page.user.id
    try:
        await anyio.to_thread.run_sync(lambda: store.rename(user_id, conversation_id, str(form.get("title") or "")))
    except InvalidRequest:
        return RedirectResponse(f"/c/{conversation_id}?renamed=invalid", status_code=303)
    return RedirectResponse(f"/c/{conversation_id}?renamed=yes", status_code=303)


@router.post("/c/{conversation_id}/delete")
async def delete_conversation(conversation_id: str, request: Request) -> Response:
    page = signed_in(request)
    assert page.user is not None
    form = await request.form()
    verify_csrf(request, form.get("csrf_token"))
    await anyio.to_thread.run_sync(_store(request).delete, page.user.id, conversation_id)
    return RedirectResponse("/", status_code=303)


@router.post("/appeals")
async def appeal(request: Request) -> Response:
    """Appeal a block shown in a conversation (the safety area's appeal record)."""
    page = signed_in(request)
    assert page.user is not None
    form = await request.form()
    verify_csrf(request, form.get("csrf_token"))
    conversation_id = str(form.get("conversation_id") or "")
    back = f"/c/{conversation_id}" if _CONVERSATION_ID.fullmatch(conversation_id) else "/"
    principal = Principal(org_id=None, user_id=page.user.id)
    decision_id = str(form.get("decision_id") or "")
    # The reason is optional for a person: "ask for a review" is one click. Staff see that none was given.
    reason = str(form.get("reason") or "").strip() or NO_REASON
    try:
        view = await anyio.to_thread.run_sync(lambda: file_appeal(page.hub, principal, decision_id, reason))
    except Conflict:
        return RedirectResponse(f"{back}?appeal=exists", status_code=303)
    except (InvalidRequest, NotFound):
        return RedirectResponse(f"{back}?appeal=invalid", status_code=303)
    return RedirectResponse(f"{back}?appeal=filed&appeal_id={view.id}", status_code=303)
