"""Streaming a multipart upload into the file store, chunk by chunk, refused (413) as soon as too large.

Starlette's form parser spools a whole file to a local temporary file before the handler sees
it; here the body is parsed as it arrives and every full chunk is encrypted and written at once,
so memory stays at about one chunk and an oversized upload is refused at the first byte too many.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
from python_multipart.multipart import MultipartParser, parse_options_header

from ..errors import InvalidRequest, PayloadTooLarge
from .store import Draft, FileStore, check_purpose, clean_filename, expiry_seconds
from .tables import StoredFile

__all__ = ["MULTIPART_OVERHEAD", "receive_upload"]

#: Bytes of a multipart body that are not the file (boundaries, headers, the other fields).
MULTIPART_OVERHEAD = 64 * 1024
_MAX_FIELD = 1024
_MAX_PARTS = 8


@dataclass
class _Parts:
    """What the parser's callbacks collected since the last drain."""

    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    filename: str | None = None
    is_file: bool = False
    value: bytearray = field(default_factory=bytearray)
    fields: dict[str, str] = field(default_factory=dict)
    file_parts: int = 0
    parts: int = 0
    pending: bytearray = field(default_factory=bytearray)
    original_name: str | None = None
    error: Exception | None = None


def _callbacks(state: _Parts) -> dict[str, Any]:
    def on_part_begin() -> None:
        state.headers, state.name, state.filename, state.is_file = {}, None, None, False
        state.value = bytearray()
        state.parts += 1
        if state.parts > _MAX_PARTS and state.error is None:
            state.error = InvalidRequest(f"at most {_MAX_PARTS} form fields", param="file")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state.header_value += data[start:end]

    def on_header_end() -> None:
        state.headers[state.header_field.decode("latin-1").lower()] = state.header_value.decode("utf-8", "replace")
        state.header_field, state.header_value = bytearray(), bytearray()

    def on_headers_finished() -> None:
        _, options = parse_options_header(state.headers.get("content-disposition", ""))
        state.name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        state.is_file = state.name == "file"
        if state.is_file:
            state.file_parts += 1
            state.original_name = raw_filename.decode("utf-8", "replace") if raw_filename is not None else None
            if state.file_parts > 1 and state.error is None:
                state.error = InvalidRequest("send exactly one file", param="file")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state.is_file:
            if state.file_parts == 1:
                state.pending += data[start:end]
        else:
            state.value += data[start:end]
            if len(state.value) > _MAX_FIELD and state.error is None:
                state.error = InvalidRequest(f"form field {state.name!r} is longer than {_MAX_FIELD} bytes",
                                             param=state.name)

    def on_part_end() -> None:
        if not state.is_file and state.name:
            state.fields[state.name] = state.value.decode("utf-8", "replace")

    return {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
            "on_header_value": on_header_value, "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished, "on_part_data": on_part_data, "on_part_end": on_part_end}


def _boundary(content_type: str) -> bytes:
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise InvalidRequest("upload a file as multipart/form-data with the fields `file` and `purpose`",
                             param="file")
    return options[b"boundary"]


async def receive_upload(
    store: FileStore, content_type: str, content_length: int | None, body: AsyncIterator[bytes], *,
    org_id: int, key_id: int | None, user_id: int | None,
) -> StoredFile:
    """Parse, encrypt and store one upload; nothing of it stays when it fails."""
    limit = store.settings.max_bytes + MULTIPART_OVERHEAD
    if content_length is not None and content_length > limit:
        raise PayloadTooLarge(f"the file is larger than the limit of {store.settings.max_bytes} bytes",
                              code="file_too_large")
    boundary = _boundary(content_type)
    state = _Parts()
    parser = MultipartParser(boundary, _callbacks(state))  # type: ignore[arg-type]
    stored = await anyio.to_thread.run_sync(store.stored_bytes, org_id)
    draft: Draft = await anyio.to_thread.run_sync(
        lambda: store.begin(org_id, key_id=key_id, user_id=user_id))
    chunk = store.settings.chunk_bytes
    received = 0
    try:
        async for piece in body:
            received += len(piece)
            if received > limit:
                raise PayloadTooLarge(f"the file is larger than the limit of {store.settings.max_bytes} bytes",
                                      code="file_too_large")
            parser.write(piece)
            if state.error is not None:
                raise state.error
            store.check_size(draft, len(state.pending), stored)
            while len(state.pending) >= chunk:
                data = bytes(state.pending[:chunk])
                del state.pending[:chunk]
                await anyio.to_thread.run_sync(store.write_chunk, draft, data)
        parser.finalize()
        if state.error is not None:
            raise state.error
        if state.file_parts == 0:
            raise InvalidRequest("the form has no `file` field", param="file", code="missing_required_parameter")
        purpose = check_purpose(state.fields.get("purpose"))
        expires = expiry_seconds(state.fields.get("expires_after[anchor]"), state.fields.get("expires_after[seconds]"))
        store.check_size(draft, len(state.pending), stored)
        if state.pending or draft.chunks == 0:
            await anyio.to_thread.run_sync(store.write_chunk, draft, bytes(state.pending))
        name = clean_filename(state.original_name)
        return await anyio.to_thread.run_sync(
            lambda: store.finish(draft, purpose=purpose, filename=name, expires_after_s=expires))
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(store.abandon, draft)
        raise
