"""Pure ASGI middleware that writes one audit entry per authenticated REST request under
``/api/``: who, which action on which target, from which address, and the result.

The action comes from the route template and the method (``GET /sessions/{session_id}/messages``
is ``message.list``), so a new route is audited from its first request; ``ACTIONS`` names the
ones the rule gets wrong. Requests that fail authentication have no tenant and so no chain;
they are logged instead. A change that wrote its own entry in its transaction (participants,
visibility, sharing) marks the request recorded, and this middleware writes no second one.
"""

from __future__ import annotations

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley.governance import audit
from parley.governance.auth import Principal

log = structlog.get_logger("parley.audit")

# (method, route template) -> action, where the generic rule below names it badly.
ACTIONS: dict[tuple[str, str], str | None] = {
    ("GET", "/me"): None,  # identity, not content: not audited
    ("POST", "/sessions/{session_id}/archive"): "session.archive",
    ("POST", "/sessions/{session_id}/participants"): "participant.grant",
    ("DELETE", "/sessions/{session_id}/participants/{user_id}"): "participant.remove",
    ("POST", "/sessions/{session_id}/assistants/{name}/ask"): "assistant.ask",
    ("POST", "/sessions/{session_id}/streams/{stream_id}/stop"): "stream.stop",
    ("GET", "/sessions/{session_id}/presence"): "presence.read",
    ("GET", "/sessions/{session_id}/document"): "document.read",
    ("POST", "/invitations/{invitation_id}/accept"): "invitation.accept",
    ("POST", "/share-links/{token}/redeem"): "share_link.redeem",
    ("GET", "/audit"): "audit.read",
    ("GET", "/audit/export"): "audit.export",
}
VERBS = {"POST": "create", "PATCH": "update", "PUT": "update", "DELETE": "delete"}


def action_of(method: str, template: str) -> str | None:
    """``message.list``, ``session.read``...: the last fixed segment of the template, singular,
    and a verb from the method (GET on a collection lists, on an item reads)."""
    method = "GET" if method == "HEAD" else method
    if (method, template) in ACTIONS:
        return ACTIONS[(method, template)]
    segments = [seg for seg in template.strip("/").split("/") if seg]
    fixed = [seg for seg in segments if not seg.startswith("{")]
    noun = (fixed[-1] if fixed else "api").replace("-", "_").removesuffix("s")
    if method == "GET":
        verb = "read" if segments and segments[-1].startswith("{") else "list"
    else:
        verb = VERBS.get(method, method.lower())
    return f"{noun}.{verb}"


def target_of(p: Principal, params: dict[str, str]) -> tuple[str, str, dict[str, str]]:
    """The session a request is about (or the tenant), and the other path parameters."""
    others = {k: str(v)[:200] for k, v in params.items() if k not in ("session_id", "token")}
    if "session_id" in params:
        return "session", str(params["session_id"]), others
    if "invitation_id" in params:
        return "invitation", str(params["invitation_id"]), {}
    return "tenant", p.tenant_id, others


def client_of(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


class AuditRequests:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        holder = audit.RequestScope(client=client_of(scope))
        token = audit.current.set(holder)
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            audit.current.reset(token)
            self._record(scope, holder, status)

    def _record(self, scope: Scope, holder: audit.RequestScope, status: int) -> None:
        p: Principal | None = scope.get("parley.principal")
        if holder.recorded:
            return
        if p is None:
            if status == 401:
                log.info("unauthenticated request", path=scope["path"], client=holder.client)
            return
        template = scope.get("parley.route")
        if template is None:
            return
        action = action_of(scope["method"], template)
        if action is None:
            return
        code = scope.get("parley.error")
        if status < 400:
            result, code = "ok", None
        elif code in audit.DENIED_CODES or status in (401, 403, 404):
            result = "denied"
        else:
            result = "error"
        target_type, target_id, details = target_of(p, scope.get("path_params") or {})
        if "parley.audit_target" in scope:  # set by a handler that created its target
            target_type, target_id = scope["parley.audit_target"]
        recorder: audit.AuditRecorder | None = getattr(scope["app"].state, "audit", None)
        if recorder is None:
            return
        recorder.record_nowait(
            audit.Entry.of(
                p,
                action,
                target_type,
                target_id,
                result,
                code=code or (str(status) if status >= 400 else None),
                client=holder.client,
                details=details,
            )
        )
