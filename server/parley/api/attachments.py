"""``/api/v1/sessions/{id}/attachments`` (upload, list) and ``/api/v1/attachments/{id}``
(download, thumbnail). See docs/graphql-attachments.md.

Uploads stream: a raw body (``Content-Type`` = the file's declared type, ``?filename=``) or a
``multipart/form-data`` body with one file field, parsed incrementally, so an oversized file is
cut off at the limit without being held in memory or spooled to disk first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from parley.api.common import JSONResponse, api, principal, resource
from parley.attachments.service import AttachmentService
from parley.attachments.sniff import IMAGE_TYPES, TEXT_TYPES
from parley.errors import InvalidRequest

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file's bytes


def _service(request: Request) -> AttachmentService:
    svc: AttachmentService = request.app.state.attachments
    return svc


def _length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        raise InvalidRequest("Content-Length must be an integer") from None


class MultipartFile:
    """The first file field of a ``multipart/form-data`` body, parsed as the body streams."""

    def __init__(self, request: Request, boundary: bytes) -> None:
        self.request = request
        self.filename: str | None = None
        self.content_type: str | None = None
        self._pending: list[bytes] = []
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self._state = "before"  # before | in_file | done
        self._body = request.stream()
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        if self._state != "before":
            return
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"filename" in options:
            self.filename = options[b"filename"].decode("utf-8", "replace")
            self.content_type = self._headers.get(b"content-type", b"").decode("latin-1") or None
            self._state = "in_file"

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._state == "in_file":
            self._pending.append(bytes(data[start:end]))

    def _part_end(self) -> None:
        if self._state == "in_file":
            self._state = "done"

    async def _feed(self) -> bool:
        """Parse the next piece of the body; False at its end."""
        try:
            chunk = await anext(self._body)
        except StopAsyncIteration:
            return False
        try:
            self._parser.write(chunk)
        except Exception as exc:  # the parser's own errors: a malformed body
            raise InvalidRequest(f"malformed multipart body: {exc}"[:300]) from None
        return True

    async def start(self) -> None:
        """Read until the file field's headers are known."""
        while self._state == "before":
            if not await self._feed():
                raise InvalidRequest("the multipart body has no file field")

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes as they arrive."""
        while True:
            while self._pending:
                yield self._pending.pop(0)
            if self._state == "done":
                return
            if not await self._feed():
                raise InvalidRequest("the multipart body ended inside the file")


@api
async def upload(request: Request) -> Response:
    """Store a file in the session; answers its metadata (``id`` goes into message parts)."""
    try:
        return await _upload(request)
    except ClientDisconnect:
        # The client went away mid-body: nothing was stored, and nobody reads this answer.
        return Response(status_code=400)


async def _upload(request: Request) -> Response:
    p = await principal(request)
    svc = _service(request)
    limit = svc.settings.attachment_max_bytes
    length = _length(request)
    ctype = request.headers.get("content-type", "")
    kind, options = parse_options_header(ctype)
    if kind == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise InvalidRequest("multipart/form-data needs a boundary parameter")
        declared_size = None
        if length is not None and length > limit + MULTIPART_OVERHEAD:
            declared_size = length  # certainly too large: refused before reading the body
        form = MultipartFile(request, boundary)
        if declared_size is None:
            await form.start()
        view = await svc.upload(
            p,
            request.path_params["session_id"],
            form.chunks(),
            filename=form.filename,
            declared_type=form.content_type,
            declared_size=declared_size,
        )
    else:
        view = await svc.upload(
            p,
            request.path_params["session_id"],
            request.stream(),
            filename=request.query_params.get("filename"),
            declared_type=ctype or None,
            declared_size=length,
        )
    return JSONResponse(view, status_code=201)


@api
async def list_attachments(request: Request) -> Response:
    """The session's attachments, oldest first, with the messages that reference each."""
    p = await principal(request)
    items = await _service(request).manifest(p, request.path_params["session_id"])
    return JSONResponse({"items": items})


def _disposition(kind: str, name: str) -> str:
    # Raster images may show in the page; everything else is a download, never a document.
    mode = "inline" if kind in IMAGE_TYPES else "attachment"
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"{mode}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


async def _serve(request: Request, *, thumbnail: bool) -> Response:
    p = await principal(request)
    got = await _service(request).download(
        p, request.path_params["attachment_id"], thumbnail=thumbnail
    )
    etag = f'"{got.sha256}"'
    name = got.view["name"]
    if thumbnail:
        name = name.rsplit(".", 1)[0] + "-thumbnail." + got.content_type.split("/")[1]
    headers = {
        "Content-Disposition": _disposition(got.content_type, name),
        "X-Content-Type-Options": "nosniff",
        # Even opened directly, the file is a sandboxed document that may load nothing.
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, max-age=86400",
        "ETag": etag,
    }
    media = got.content_type
    if media in TEXT_TYPES:
        media += "; charset=utf-8"
    if request.headers.get("if-none-match") == etag:
        await got.chunks.aclose()
        return Response(status_code=304, headers=headers)
    headers["Content-Length"] = str(got.size)
    return StreamingResponse(got.chunks, media_type=media, headers=headers)


@api
async def download(request: Request) -> Response:
    """The file's bytes, with its sniffed type."""
    return await _serve(request, thumbnail=False)


@api
async def thumbnail(request: Request) -> Response:
    """A small copy of an image (PNG or JPEG, metadata stripped); 404 for other files."""
    return await _serve(request, thumbnail=True)


routes = [
    resource("/sessions/{session_id}/attachments", GET=list_attachments, POST=upload),
    resource("/attachments/{attachment_id}", GET=download),
    resource("/attachments/{attachment_id}/thumbnail", GET=thumbnail),
]
