"""Sharing a session: invitations to named users and share links anyone of the tenant redeems.

Both carry a role and an expiry, can be revoked, and are audited in the transaction that
changes them. An invitation names one user of the tenant; accepting it makes them a participant
with its role and lifts an earlier removal (an owner chose to bring them back). A share link
is a secret (shown once; only its SHA-256 is stored) that makes whoever redeems it, in the same
tenant, a participant with its role, up to ``max_uses`` times. Links grant at most ``editor``,
and do not bring back a user who was removed: that takes an owner, an admin or an invitation.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from parley.errors import ErrorCode, Forbidden, Gone, InvalidRequest, NotFound
from parley.governance import audit
from parley.governance.auth import Principal, valid_identifier
from parley.governance.policy import RANK, Access, Action, Visibility
from parley.ids import iso, new_id, utcnow
from parley.sessions.queries import locked_session, plausible_id, session_access
from parley.sessions.rules import Role
from parley.sessions.service import SessionService, grant_role
from parley.storage import models as m

MIN_EXPIRY = 1
MAX_EXPIRY = 90 * 24 * 3600
MAX_USES = 10_000
LINK_ROLES = frozenset({Role.VIEWER, Role.COMMENTER, Role.EDITOR})
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_expiry(expires_in: int) -> timedelta:
    if not MIN_EXPIRY <= expires_in <= MAX_EXPIRY:
        raise InvalidRequest(f"expires_in must be {MIN_EXPIRY}-{MAX_EXPIRY} seconds")
    return timedelta(seconds=expires_in)


def invitation_view(row: m.Invitation, now: datetime) -> dict[str, Any]:
    return {
        "id": row.id,
        "session": row.session_id,
        "user_id": row.user_id,
        "role": row.role,
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
        "expires_at": iso(row.expires_at),
        "accepted_at": iso(row.accepted_at),
        "revoked_at": iso(row.revoked_at),
        "state": _state(row.revoked_at, row.accepted_at, row.expires_at, now, "accepted"),
    }


def link_view(row: m.ShareLink, now: datetime) -> dict[str, Any]:
    used_up = now if row.max_uses is not None and row.uses >= row.max_uses else None
    return {
        "id": row.id,
        "session": row.session_id,
        "role": row.role,
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
        "expires_at": iso(row.expires_at),
        "max_uses": row.max_uses,
        "uses": row.uses,
        "revoked_at": iso(row.revoked_at),
        "state": _state(row.revoked_at, used_up, row.expires_at, now, "used_up"),
    }


def _state(
    revoked: datetime | None, done: datetime | None, expires: datetime, now: datetime, name: str
) -> str:
    """``revoked``, then ``name`` (accepted, used_up) when done, ``expired``, else ``active``."""
    if revoked is not None:
        return "revoked"
    if done is not None:
        return name
    return "expired" if expires <= now else "active"


def _usable(revoked: datetime | None, expires: datetime, now: datetime, what: str) -> None:
    if revoked is not None:
        raise Gone(f"this {what} was revoked", code=ErrorCode.REVOKED)
    if expires <= now:
        raise Gone(f"this {what} expired at {iso(expires)}", code=ErrorCode.EXPIRED)


class Sharing:
    """Invitations and share links, on the session service's database and publisher."""

    def __init__(self, service: SessionService) -> None:
        self.service = service
        self.db = service.db

    # -- invitations ------------------------------------------------------------------------

    async def invite(
        self, p: Principal, session_id: str, user_id: str, role: Role, expires_in: int
    ) -> dict[str, Any]:
        """Invite a user of the tenant (owners and tenant admins)."""
        ttl = check_expiry(expires_in)
        now = utcnow()
        client = audit.client_address()

        def work(s: Session) -> dict[str, Any]:
            _, access = session_access(s, p, session_id, lock=True)
            access.check(Action.ADMINISTER, session_id, what="invite")
            user = s.get(m.User, (p.tenant_id, user_id)) if valid_identifier(user_id) else None
            if user is None:
                raise NotFound(f"user {user_id!r} does not exist in this tenant")
            row = m.Invitation(
                id=new_id(),
                tenant_id=p.tenant_id,
                session_id=session_id,
                user_id=user_id,
                role=role.value,
                created_by=p.user_id,
                created_at=now,
                expires_at=now + ttl,
            )
            s.add(row)
            audit.record_in(
                s,
                p,
                "invitation.create",
                "session",
                session_id,
                client=client,
                details={"invitation": row.id, "user_id": user_id, "role": role.value},
            )
            return invitation_view(row, now)

        view = await self.db.write(work)
        audit.mark_recorded()
        return view

    async def invitations(self, p: Principal, session_id: str) -> list[dict[str, Any]]:
        """Every invitation of the session, newest first (owners and tenant admins)."""
        now = utcnow()

        def work(s: Session) -> list[dict[str, Any]]:
            _, access = session_access(s, p, session_id)
            access.check(Action.ADMINISTER, session_id, what="list invitations")
            rows = s.scalars(
                select(m.Invitation)
                .where(m.Invitation.tenant_id == p.tenant_id, m.Invitation.session_id == session_id)
                .order_by(m.Invitation.id.desc())
            )
            return [invitation_view(r, now) for r in rows]

        return await self.db.read(work)

    async def my_invitations(self, p: Principal) -> list[dict[str, Any]]:
        """The caller's invitations that can still be accepted, newest first."""
        now = utcnow()

        def work(s: Session) -> list[dict[str, Any]]:
            rows = s.scalars(
                select(m.Invitation)
                .where(
                    m.Invitation.tenant_id == p.tenant_id,
                    m.Invitation.user_id == p.user_id,
                    m.Invitation.accepted_at.is_(None),
                    m.Invitation.revoked_at.is_(None),
                    m.Invitation.expires_at > now,
                )
                .order_by(m.Invitation.id.desc())
            )
            return [invitation_view(r, now) for r in rows]

        return await self.db.read(work)

    async def revoke_invitation(self, p: Principal, session_id: str, invitation_id: str) -> None:
        now = utcnow()
        client = audit.client_address()

        def work(s: Session) -> None:
            _, access = session_access(s, p, session_id, lock=True)
            access.check(Action.ADMINISTER, session_id, what="revoke invitations")
            row = _invitation(s, p.tenant_id, invitation_id, session_id=session_id)
            if row.revoked_at is None and row.accepted_at is None:
                row.revoked_at = now
            audit.record_in(
                s,
                p,
                "invitation.revoke",
                "session",
                session_id,
                client=client,
                details={"invitation": invitation_id},
            )

        await self.db.write(work)
        audit.mark_recorded()

    async def accept(self, p: Principal, invitation_id: str) -> dict[str, Any]:
        """Accept an invitation addressed to the caller: they join with its role."""
        now = utcnow()
        client = audit.client_address()

        def work(s: Session) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
            found = _invitation(s, p.tenant_id, invitation_id, user_id=p.user_id)
            row = locked_session(s, p.tenant_id, found.session_id)
            inv = _invitation(s, p.tenant_id, invitation_id, user_id=p.user_id, lock=True)
            if inv.accepted_at is not None:
                raise Gone("this invitation was already accepted", code=ErrorCode.USED_UP)
            _usable(inv.revoked_at, inv.expires_at, now, "invitation")
            inv.accepted_at = now
            user = s.get(m.User, (p.tenant_id, p.user_id))
            assert user is not None  # ensure_principal created it
            access = _self_access(s, p, row)
            current = access.role
            role = Role(inv.role)
            if current is not None and RANK[current] >= RANK[role]:
                role = current  # an invitation never lowers a role
            view, frames = grant_role(s, p, row, access, user, role, now, authorised=True)
            audit.record_in(
                s,
                p,
                "invitation.accept",
                "session",
                row.id,
                client=client,
                details={"invitation": invitation_id, "role": role.value},
            )
            return view, frames, row.id

        await self.service.ensure_principal(p)
        view, frames, session_id = await self.db.write(work)
        audit.mark_recorded()
        await self.service._publish(p.tenant_id, session_id, frames)
        await self.service._access_changed(p.tenant_id, session_id, p.user_id)
        return {"session": session_id, "participant": view}

    # -- share links ------------------------------------------------------------------------

    async def create_link(
        self,
        p: Principal,
        session_id: str,
        role: Role,
        expires_in: int,
        max_uses: int | None,
    ) -> dict[str, Any]:
        """A new share link; the answer carries its ``token``, which is never shown again."""
        ttl = check_expiry(expires_in)
        if role not in LINK_ROLES:
            raise InvalidRequest("share links grant viewer, commenter or editor")
        if max_uses is not None and not 1 <= max_uses <= MAX_USES:
            raise InvalidRequest(f"max_uses must be 1-{MAX_USES}")
        now = utcnow()
        token = secrets.token_urlsafe(32)
        client = audit.client_address()

        def work(s: Session) -> dict[str, Any]:
            _, access = session_access(s, p, session_id, lock=True)
            access.check(Action.ADMINISTER, session_id, what="create share links")
            row = m.ShareLink(
                id=new_id(),
                tenant_id=p.tenant_id,
                session_id=session_id,
                token_hash=token_hash(token),
                role=role.value,
                created_by=p.user_id,
                created_at=now,
                expires_at=now + ttl,
                max_uses=max_uses,
                uses=0,
            )
            s.add(row)
            audit.record_in(
                s,
                p,
                "share_link.create",
                "session",
                session_id,
                client=client,
                details={"link": row.id, "role": role.value, "max_uses": max_uses},
            )
            return link_view(row, now)

        view = await self.db.write(work)
        audit.mark_recorded()
        return {**view, "token": token}

    async def links(self, p: Principal, session_id: str) -> list[dict[str, Any]]:
        now = utcnow()

        def work(s: Session) -> list[dict[str, Any]]:
            _, access = session_access(s, p, session_id)
            access.check(Action.ADMINISTER, session_id, what="list share links")
            rows = s.scalars(
                select(m.ShareLink)
                .where(m.ShareLink.tenant_id == p.tenant_id, m.ShareLink.session_id == session_id)
                .order_by(m.ShareLink.id.desc())
            )
            return [link_view(r, now) for r in rows]

        return await self.db.read(work)

    async def revoke_link(self, p: Principal, session_id: str, link_id: str) -> None:
        now = utcnow()
        client = audit.client_address()

        def work(s: Session) -> None:
            _, access = session_access(s, p, session_id, lock=True)
            access.check(Action.ADMINISTER, session_id, what="revoke share links")
            row = (
                s.scalar(
                    select(m.ShareLink).where(
                        m.ShareLink.tenant_id == p.tenant_id,
                        m.ShareLink.session_id == session_id,
                        m.ShareLink.id == link_id,
                    )
                )
                if plausible_id(link_id)
                else None
            )
            if row is None:
                raise NotFound(f"share link {link_id[:80]!r} not found in this session")
            if row.revoked_at is None:
                row.revoked_at = now
            audit.record_in(
                s,
                p,
                "share_link.revoke",
                "session",
                session_id,
                client=client,
                details={"link": link_id},
            )

        await self.db.write(work)
        audit.mark_recorded()

    async def redeem(self, p: Principal, token: str) -> dict[str, Any]:
        """Join the link's session with its role. Another tenant's link answers exactly like
        a link that does not exist."""
        if not _TOKEN_RE.match(token):
            raise NotFound("share link not found")
        digest = token_hash(token)
        now = utcnow()
        client = audit.client_address()

        def find(s: Session, *, lock: bool = False) -> m.ShareLink:
            q = select(m.ShareLink).where(
                m.ShareLink.tenant_id == p.tenant_id, m.ShareLink.token_hash == digest
            )
            row = s.scalar(q.with_for_update() if lock else q)
            if row is None:
                raise NotFound("share link not found")
            return row

        def work(s: Session) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
            session = locked_session(s, p.tenant_id, find(s).session_id)
            link = find(s, lock=True)
            _usable(link.revoked_at, link.expires_at, now, "share link")
            access = _self_access(s, p, session)
            if access.removed:
                raise Forbidden("you were removed from this session; an owner must invite you back")
            role = Role(link.role)
            user = s.get(m.User, (p.tenant_id, p.user_id))
            assert user is not None
            if access.role is not None and RANK[access.role] >= RANK[role]:
                role = access.role  # a link never lowers a role, and is not used up by it
            elif link.max_uses is not None and link.uses >= link.max_uses:
                raise Gone(
                    f"this share link was used {link.uses} times, its limit",
                    code=ErrorCode.USED_UP,
                )
            else:
                link.uses += 1
            view, frames = grant_role(s, p, session, access, user, role, now, authorised=True)
            audit.record_in(
                s,
                p,
                "share_link.redeem",
                "session",
                session.id,
                client=client,
                details={"link": link.id, "role": role.value},
            )
            return view, frames, session.id

        await self.service.ensure_principal(p)
        view, frames, session_id = await self.db.write(work)
        audit.mark_recorded()
        await self.service._publish(p.tenant_id, session_id, frames)
        await self.service._access_changed(p.tenant_id, session_id, p.user_id)
        return {"session": session_id, "participant": view}


def _invitation(
    s: Session,
    tenant_id: str,
    invitation_id: str,
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    lock: bool = False,
) -> m.Invitation:
    if not plausible_id(invitation_id):
        raise NotFound(f"invitation {invitation_id[:80]!r} not found")
    q = select(m.Invitation).where(
        m.Invitation.tenant_id == tenant_id, m.Invitation.id == invitation_id
    )
    if session_id is not None:
        q = q.where(m.Invitation.session_id == session_id)
    if user_id is not None:
        q = q.where(m.Invitation.user_id == user_id)
    row = s.scalar(q.with_for_update() if lock else q)
    if row is None:
        raise NotFound(f"invitation {invitation_id!r} not found")
    return row


def _self_access(s: Session, p: Principal, row: m.Session) -> Access:
    """The caller's access facts for a session they may not (yet) be able to read."""
    role = s.scalar(
        select(m.Participant.role).where(
            m.Participant.tenant_id == p.tenant_id,
            m.Participant.session_id == row.id,
            m.Participant.user_id == p.user_id,
        )
    )
    removed = s.scalar(
        select(m.SessionRemoval.user_id).where(
            m.SessionRemoval.tenant_id == p.tenant_id,
            m.SessionRemoval.session_id == row.id,
            m.SessionRemoval.user_id == p.user_id,
        )
    )
    return Access(p, Visibility(row.visibility), Role(role) if role else None, removed is not None)
