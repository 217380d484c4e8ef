"""Attaching a document to a conversation, reading it back, removing it (the person's own only).

The domain is :mod:`sovhub.assistant.attachments`; forms post and redirect back with
``?attached=CODE`` for the page to say what happened in the person's language.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser

from ...access.csrf import verify_csrf
from ...errors import InvalidRequest, NotFound
from ..attachments import MAX_BYTES, AttachmentStore
from ..chat_store import ChatStore
from .auth import signed_in
from .chat import allowed_models
from .render import Page, render

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

_CODES = {"file_too_large": "too_large", "unsupported_file_type": "type", "empty_document": "empty",
          "too_many_attachments": "too_many"}


# The form around the file: its boundaries, part headers and the CSRF token.
_FORM_OVERHEAD = 64 * 1024
BODY_LIMIT = MAX_BYTES + _FORM_OVERHEAD


class _BodyTooLarge(Exception):  # noqa: N818 - names the answer (413), not a fault
    """The upload's body grew past BODY_LIMIT while it was read."""


async def _body(request: Request) -> bytes:
    """The request's body, read as it arrives and given up past BODY_LIMIT: a chunked upload
    (no Content-Length) is refused after BODY_LIMIT bytes, not parsed or spooled whole first."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_LIMIT:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _form(request: Request) -> FormData:
    body = await _body(request)

    async def replay() -> AsyncGenerator[bytes, None]:
        yield body

    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return FormData()
    return await MultiPartParser(request.headers, replay(), max_files=1, max_fields=10).parse()


async def _upload(request: Request, page: Page) -> tuple[str, bytes] | str:
    """The uploaded file's name and bytes, CSRF-checked; an error code when there is none.
    Raises _BodyTooLarge for a body over BODY_LIMIT (read no further)."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > BODY_LIMIT:
        return "too_large"  # said before a byte of it is read
    try:
        form = await _form(request)
    except MultiPartException:
        return "missing"
    verify_csrf(request, form.get("csrf_token"))
    file = form.get("file")
    if file is None or isinstance(file, str) or not file.filename:
        return "missing"
    data = await file.read(MAX_BYTES + 1)
    return file.filename, data


@router.post("/c/{conversation_id}/attachments")
async def attach(conversation_id: str, request: Request) -> Response:
    page = signed_in(request)
    assert page.user is not None
    user_id = page.user.id
    await anyio.to_thread.run_sync(ChatStore(page.hub).get, user_id, conversation_id)  # theirs, or 404
    back = f"/c/{conversation_id}"
    try:
        got = await _upload(request, page)
    except _BodyTooLarge:
        # Said on a page of its own (the body was not read to its end), with the way back to the chat.
        return render(page, "error.html", status=413, error="too_large", back=back)
    if isinstance(got, str):
        return RedirectResponse(f"{back}?attached={got}", status_code=303)
    name, data = got
    try:
        await anyio.to_thread.run_sync(lambda: AttachmentStore(page.hub).attach(user_id, conversation_id, name, data))
    except InvalidRequest as exc:
        return RedirectResponse(f"{back}?attached={_CODES.get(exc.code or '', 'failed')}", status_code=303)
    return RedirectResponse(f"{back}?attached=yes", status_code=303)


@router.post("/c/attachments")
async def attach_to_new(request: Request) -> Response:
    """A new chat that starts with a document; it is titled after the file. Nothing stays if it is refused."""
    page = signed_in(request)
    assert page.user is not None
    user_id = page.user.id
    try:
        got = await _upload(request, page)
    except _BodyTooLarge:
        return render(page, "error.html", status=413, error="too_large")
    if isinstance(got, str):
        return RedirectResponse(f"/?attached={got}", status_code=303)
    name, data = got
    models = allowed_models(page)
    store = ChatStore(page.hub)

    def create() -> str:
        conversation_id = store.create(user_id, name, models[0] if models else "")
        try:
            AttachmentStore(page.hub).attach(user_id, conversation_id, name, data)
        except InvalidRequest:
            store.delete(user_id, conversation_id)
            raise
        return conversation_id

    try:
        conversation_id = await anyio.to_thread.run_sync(create)
    except InvalidRequest as exc:
        return RedirectResponse(f"/?attached={_CODES.get(exc.code or '', 'failed')}", status_code=303)
    return RedirectResponse(f"/c/{conversation_id}?attached=yes", status_code=303)


@router.get("/c/{conversation_id}/attachments/{attachment_id}")
async def attachment_page(conversation_id: str, attachment_id: int, request: Request) -> Response:
    page = signed_in(request)
    assert page.user is not None
    user_id = page.user.id
    try:
        info, passages = await anyio.to_thread.run_sync(
            lambda: AttachmentStore(page.hub).read(user_id, conversation_id, attachment_id))
    except NotFound:
        return render(page, "error.html", status=404, error="not_found")
    return render(page, "attachment.html", attachment=info, passages=passages)


@router.post("/c/{conversation_id}/attachments/{attachment_id}/delete")
async def remove(conversation_id: str, attachment_id: int, request: Request) -> Response:
    page = signed_in(request)
    assert page.user is not None
    form = await request.form()
    verify_csrf(request, form.get("csrf_token"))
    user_id = page.user.id
    await anyio.to_thread.run_sync(lambda: AttachmentStore(page.hub).remove(user_id, conversation_id, attachment_id))
    return RedirectResponse(f"/c/{conversation_id}?attached=removed", status_code=303)
