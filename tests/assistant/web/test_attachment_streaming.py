"""An upload without Content-Length (chunked) is held to the attachment limit while it streams in.

A real uvicorn server on loopback and a raw HTTP/1.1 chunked request: the handler stops reading
past ``BODY_LIMIT`` and answers 413, having taken in no more than that (counted at the ASGI edge),
however much the client goes on sending.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from sovhub.assistant.people import create_user
from sovhub.assistant.tables import ConversationAttachment
from sovhub.assistant.web.attachments import BODY_LIMIT
from sovhub.hub import Hub
from sovhub.store.tables import User
from tests.conftest import add_fake_backend
from tests.fakes import FakePlugin
from tests.server import ThreadedServer

from .conftest import PASSWORD

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CHUNK = 64 * 1024


class _Counting:
    """ASGI wrapper: how many body bytes the app has pulled from the server for the upload routes."""

    def __init__(self, app: Any) -> None:
        self.app, self.received = app, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or "attachments" not in scope["path"]:
            await self.app(scope, receive, send)
            return

        async def counted() -> Any:
            message = await receive()
            self.received += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


@pytest.fixture
def served(hub: Hub, fake_plugin: FakePlugin) -> Iterator[tuple[str, httpx.Client, _Counting]]:
    from sovhub.app import create_app

    add_fake_backend(hub, "fake1", ["echo"])
    create_user(hub, "ada@example.org", PASSWORD)
    app = _Counting(create_app(hub))
    with ThreadedServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        token = _CSRF.search(client.get("/login").text)
        assert token
        signed = client.post("/login", data={"email": "ada@example.org", "password": PASSWORD,
                                              "csrf_token": token.group(1), "next": "/"})
        assert signed.status_code in (200, 303)
        yield server.url, client, app


def _multipart(token: str, size: int, boundary: str = "sovhubboundary") -> tuple[bytes, bytes, str]:
    """(head, tail, content type) of a form with the CSRF token and a text file of `size` bytes between."""
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{token}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"lease.txt\"\r\n"
            "Content-Type: text/plain\r\n\r\n").encode()
    return head, f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _chunked_post(url: str, cookie: str, content_type: str, parts: Iterator[bytes],
                  path: str = "/c/attachments", accept_language: str = "en") -> tuple[int, bytes, int]:
    """POST the parts as HTTP/1.1 chunks from a thread while the response is read: (status, body, bytes sent)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sent = [0]
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n"
               f"Content-Type: {content_type}\r\nAccept-Language: {accept_language}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()

    def send() -> None:
        try:
            sock.sendall(request)
            for part in parts:
                sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                sent[0] += len(part)
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed: it wanted no more

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    response = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            response += data
    except OSError:
        pass
    sender.join(30)
    sock.close()
    status = int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0
    return status, response, sent[0]


def _cookie(client: httpx.Client) -> str:
    return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


def test_a_chunked_upload_over_the_limit_is_refused_while_it_streams(served: tuple[str, httpx.Client, _Counting],
                                                                   hub: Hub) -> None:
    url, client, app = served
    token = _CSRF.search(client.get("/").text)
    assert token
    head, tail, content_type = _multipart(token.group(1), 0)
    total = 3 * 1024 * 1024  # under the hub's 4 MB body limit: the attachment's own limit must stop it

    def parts() -> Iterator[bytes]:
        yield head
        for _ in range(total // CHUNK):
            yield b"a" * CHUNK
        yield tail

    status, response, _sent = _chunked_post(url, _cookie(client), content_type, parts())
    assert status == 413, response[:300]
    assert b"2 MB" in response
    # The handler stopped reading at the limit (plus the server's read that crossed it: uvicorn hands
    # the app what one socket read brought, a few chunks at most), far short of the 3 MB sent.
    assert BODY_LIMIT < app.received <= BODY_LIMIT + 4 * CHUNK < total
    with hub.db.session() as s:
        assert s.scalars(select(ConversationAttachment)).first() is None


def test_a_chunked_upload_within_the_limit_is_attached(served: tuple[str, httpx.Client, _Counting], hub: Hub) -> None:
    url, client, _app = served
    token = _CSRF.search(client.get("/").text)
    assert token
    head, tail, content_type = _multipart(token.group(1), 0)
    text = b"The tenant gives 30 days notice in writing before leaving the flat.\n" * 200

    def parts() -> Iterator[bytes]:
        yield head
        for i in range(0, len(text), 4096):
            yield text[i:i + 4096]
        yield tail

    status, response, sent = _chunked_post(url, _cookie(client), content_type, parts())
    assert status == 303, response[:300]
    assert b"attached=yes" in response and sent == len(head) + len(text) + len(tail)
    with hub.db.session() as s:
        assert s.scalars(select(ConversationAttachment)).first() is not None


def test_a_chunked_upload_over_the_limit_into_a_conversation_says_so_with_the_way_back(
    served: tuple[str, httpx.Client, _Counting], hub: Hub
) -> None:
    from sovhub.assistant.chat_store import ChatStore

    url, client, _app = served
    with hub.db.session() as s:
        user_id = s.scalar(select(User.id).where(User.email == "ada@example.org"))
    assert user_id is not None
    conversation = ChatStore(hub).create(user_id, "My lease", "echo")
    client.cookies.set("sovhub_lang", "uk")
    head, tail, content_type = _multipart("not-checked-before-the-limit", 0)

    def parts() -> Iterator[bytes]:
        yield head
        for _ in range(3 * 1024 * 1024 // CHUNK):
            yield b"a" * CHUNK
        yield tail

    status, response, _sent = _chunked_post(url, _cookie(client), content_type, parts(),
                                            path=f"/c/{conversation}/attachments")
    assert status == 413, response[:300]
    page = response.decode()
    assert "Файл завеликий: не більше 2 МБ." in page  # the person's language, on a whole page
    assert f'<a href="/c/{conversation}">Повернутися до чату</a>' in page
    assert '<link rel="stylesheet"' in page
