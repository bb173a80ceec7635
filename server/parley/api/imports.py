"""``POST /api/v1/imports?format=...``: upload an export and import it in the request.

The file is the raw body (any content type; name it with ``?filename=``) or the ``file``
field of a ``multipart/form-data`` body. Bodies over ``PARLEY_IMPORT_MAX_BYTES`` are refused
with 413 before they are read whole. The answer is the import report: 200 when every record
was imported, 207 when some were skipped (the report lists each with where it is)."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from starlette.requests import Request
from starlette.responses import Response

from parley.api.common import JSONResponse, api, principal, resource, service
from parley.attachments.service import AttachmentService
from parley.crdt.manager import DocManager
from parley.errors import Forbidden, InvalidRequest, UploadTooLarge
from parley.governance.hub import Governance
from parley.hub.hub import Hub
from parley.imports.content import ImportContent
from parley.imports.files import FileRestorer
from parley.imports.formats import PARSERS
from parley.imports.importer import Importer


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise UploadTooLarge(f"the upload is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise UploadTooLarge(f"the upload is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def file_from_multipart(content_type: str, body: bytes) -> tuple[str | None, bytes]:
    """The ``file`` field (or the only file) of a multipart/form-data body: (name, bytes)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not isinstance(message, EmailMessage) or not message.is_multipart():
        raise InvalidRequest("the multipart body could not be read")
    parts = [p for p in message.iter_parts() if p.get_param("name", header="content-disposition")]
    chosen = next(
        (p for p in parts if p.get_param("name", header="content-disposition") == "file"),
        parts[0] if len(parts) == 1 else None,
    )
    if chosen is None:
        raise InvalidRequest("the multipart body has no 'file' field")
    payload = chosen.get_payload(decode=True)
    return chosen.get_filename(), payload if isinstance(payload, bytes) else b""


def importer_of(request: Request) -> Importer:
    """The importer of this server: the tenant's PII mode applies to what it writes, and
    attachment files of Parley archives go to the attachment store under its limits."""
    settings = request.app.state.settings
    docs: DocManager = request.app.state.docs
    # Straight to the hub, not through the relay's observer: imported messages are history,
    # not prompts, so assistants in restored sessions do not answer them.
    hub: Hub = request.app.state.hub
    governance: Governance = request.app.state.governance
    attachments: AttachmentService = request.app.state.attachments
    return Importer(
        service(request).db,
        hub,
        docs,
        content=ImportContent(governance.policies, governance.content),
        files=FileRestorer(attachments.store, settings),
        max_text_chars=settings.max_text_chars,
    )


@api
async def upload(request: Request) -> Response:
    p = await principal(request)
    fmt = request.query_params.get("format", "")
    if fmt not in PARSERS:
        raise InvalidRequest(f"format must be one of: {', '.join(sorted(PARSERS))}")
    if fmt == "parley-json" and not p.is_admin:
        # Parley exports name their authors by user id: restoring them is an admin's act.
        raise Forbidden("only tenant admins may import Parley exports")
    settings = request.app.state.settings
    data = await _read_limited(request, settings.import_max_bytes)
    name = request.query_params.get("filename") or f"upload.{fmt}"
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("multipart/form-data"):
        filename, data = file_from_multipart(content_type, data)
        name = filename or name
    if not data:
        raise InvalidRequest("the upload is empty")
    importer = importer_of(request)
    dry_run = request.query_params.get("dry_run") in ("1", "true", "yes")
    report = await importer.run(p, fmt, PARSERS[fmt](name, data), dry_run=dry_run)
    return JSONResponse(report.to_dict(), status_code=200 if report.ok else 207)


routes = [resource("/imports", POST=upload)]
