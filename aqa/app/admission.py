"""The HTTP edge: what a request may bring before any handler runs. Bodies are capped as their bytes arrive (JSON
at --max-body, an upload at --max-file-size, and an upload only when the disk quota has room for it); a file field
that is not an upload of this app, or any other field Gradio cannot read, is refused in one line; and each client
holds at most one place in the models' queue."""

from __future__ import annotations

import json

import gradio as gr
from fastapi import HTTPException
from gradio.data_classes import FileData

from aqa.app.housekeeping import Cache
from aqa.app.settings import AppSettings, size_text
from aqa.errors import first_line, kind_of

UPLOAD_ROUTE = "/gradio_api/upload"
UPLOAD_MARGIN = 64 * 1024  # a multipart body's own headers and boundaries around the one file it carries
ONE_PLACE = (
    "one question at a time per client: this one already has a question waiting or being answered; "
    "ask again once it is answered"
)


class RequestGuard:
    """ASGI middleware: a request body over its cap is refused with 413 as soon as that is known, from its
    Content-Length before anything is read, or by counting the bytes of a chunked body as they arrive; nothing over
    the cap is ever held. An upload must say its length (411 otherwise) and needs room under the disk quota (507)."""

    def __init__(self, app, settings: AppSettings, cache: Cache):
        self.app = app
        self.body_cap = settings.max_body
        self.upload_cap = settings.max_file_size + UPLOAD_MARGIN
        self.cache = cache

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        length = content_length(scope)
        if scope["path"].endswith(UPLOAD_ROUTE):
            return await self.upload(scope, receive, send, length)
        if length is not None and length > self.body_cap:
            return await refuse(send, 413, too_large(length, self.body_cap))
        body = await read_capped(receive, self.body_cap)
        if body is None:
            return await refuse(send, 413, too_large(None, self.body_cap))
        await self.app(scope, replay(body, receive), send)

    async def upload(self, scope, receive, send, length: int | None):
        if length is None:
            return await refuse(send, 411, "an upload must say its length (Content-Length)")
        if length > self.upload_cap:
            return await refuse(send, 413, too_large(length, self.upload_cap - UPLOAD_MARGIN, what="upload"))
        with self.cache.room(length) as fits:
            if not fits:
                quota = size_text(self.cache.quota)
                message = f"no room for this upload under the app's disk quota ({quota}, files in use kept); try later"
                return await refuse(send, 507, message)
            await self.app(scope, receive, send)


def content_length(scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_capped(receive, cap: int) -> bytes | None:
    """The whole body, or None as soon as it passes `cap` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes, receive):
    """A `receive` that hands the app the body already read, then the server's own messages (the client leaving)."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def too_large(length: int | None, cap: int, what: str = "request body") -> str:
    size = f" ({size_text(length)})" if length is not None else ""
    return f"{what} too large{size}: this app takes at most {size_text(cap)}"


async def refuse(send, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.append((b"connection", b"close"))  # the rest of an unread body is not waited for
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class AppBlocks(gr.Blocks):
    """gr.Blocks with the app's two admission rules, each at the narrowest hook Gradio 6.31 has for it.

    A field Gradio cannot read (a file path outside its cache, a number where a file goes) fails in Gradio's own
    preprocessing, before any handler, and Gradio would answer `{"error": null}` and log a traceback: it is refused
    here in one line instead. And the queue admits a client (a Gradio session: a page, or a gradio_client Client)
    only while it holds no other place: one client cannot fill the queue that every other tester waits in."""

    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error:
            raise
        except Exception as error:
            raise gr.Error(f"refused: {unreadable(block_fn, inputs, error)}", print_exception=False) from None

    def queue(self, *args, **kwargs):
        blocks = super().queue(*args, **kwargs)
        one_place_per_client(self._queue)
        return blocks


def unreadable(block_fn, inputs, error: Exception) -> str:
    """Which field Gradio could not read, and why, in one line: a file field must be the data of an upload."""
    for component, value in zip(block_fn.inputs, inputs):
        is_file = getattr(component, "data_model", None) is FileData
        if is_file and value is not None and not (isinstance(value, dict) and isinstance(value.get("path"), str)):
            name = getattr(component, "label", None) or "a file field"
            what = "a path" if isinstance(value, str) else kind_of(value)
            return f"{name} must be an uploaded file's data (gradio_client's handle_file sends it), not {what}"
    return first_line(error)


def one_place_per_client(queue) -> None:
    """Refuse (429) a client joining the queue while it holds a place in it (waiting or being answered)."""
    push, joining = queue.push, set()

    async def push_once(body, request, username):
        session = body.session_hash
        if session is not None and (session in joining or places_held(queue, session)):
            raise HTTPException(status_code=429, detail=ONE_PLACE)
        joining.add(session)  # until the event is in the queue, where places_held sees it
        try:
            return await push(body, request, username)
        finally:
            joining.discard(session)

    queue.push = push_once


def places_held(queue, session: str) -> int:
    """Events of `session` waiting in the queue or being processed."""
    lines = queue.event_queue_per_concurrency_id.values()
    waiting = sum(event.session_hash == session for line in lines for event in line.queue)
    running = sum(event.session_hash == session for jobs in queue.active_jobs if jobs for event in jobs)
    return waiting + running
