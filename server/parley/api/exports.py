"""``/api/v1/sessions/{id}/export`` (JSON, a zip with the files, or Markdown) and
``/api/v1/export`` (the tenant with its files as a streamed zip archive, for tenant admins)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from parley.api.common import JSONResponse, api, principal, resource, service
from parley.attachments.blobs import BlobStore
from parley.attachments.service import AttachmentService
from parley.crdt.manager import DocManager
from parley.errors import Forbidden, InvalidRequest
from parley.exports.archive import session_archive, tenant_archive
from parley.exports.exporter import Exporter
from parley.exports.markdown import render
from parley.ids import utcnow


def _store(request: Request) -> BlobStore:
    attachments: AttachmentService = request.app.state.attachments
    return attachments.store


def exporter(request: Request) -> Exporter:
    docs: DocManager = request.app.state.docs
    return Exporter(service(request), docs)


@api
async def export_session(request: Request) -> Response:
    """``?format=json`` (default: everything, re-importable), ``?format=zip`` (the JSON with
    the attachment files, re-importable with them) or ``?format=md``."""
    p = await principal(request)
    fmt = request.query_params.get("format", "json")
    if fmt not in ("json", "md", "zip"):
        raise InvalidRequest("format must be json, zip or md")
    sid = request.path_params["session_id"]
    export = await exporter(request).session(p, sid)
    disposition = f'attachment; filename="session-{sid}.{fmt}"'
    if fmt == "zip":
        return StreamingResponse(
            session_archive(export, p.tenant_id, _store(request)),
            media_type="application/zip",
            headers={"Content-Disposition": disposition},
        )
    if fmt == "md":
        return Response(
            render(export),
            media_type="text/markdown; charset=utf-8",
            headers={"Content-Disposition": disposition},
        )
    return JSONResponse(export, headers={"Content-Disposition": disposition})


@api
async def export_tenant(request: Request) -> Response:
    """Every session of the caller's tenant: a zip streamed as it is read."""
    p = await principal(request)
    if not p.is_admin:
        raise Forbidden("only tenant admins may export the whole tenant")
    name = f"parley-{p.tenant_id}-{utcnow():%Y%m%dT%H%M%SZ}.zip"
    return StreamingResponse(
        tenant_archive(exporter(request), p, store=_store(request)),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


routes = [
    resource("/sessions/{session_id}/export", GET=export_session),
    resource("/export", GET=export_tenant),
]
