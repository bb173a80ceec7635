"""Who may do what in a session: the access rules, with no I/O.

Two kinds of role meet here. A *tenant role* (``admin`` or ``member``) comes from the token. A
*session role* (``owner`` > ``editor`` > ``commenter`` > ``viewer``) is a participant row. A
session's *visibility* says what non-participants of its tenant get:

==========  =================================================================================
private     nothing: the session does not exist for them (``not_found``)
tenant      read, as a viewer
open        read, as a viewer; their first message makes them an editor (the team-chat default)
==========  =================================================================================

Tenant admins read every session of their tenant (as viewers, unless they are participants) and
administer every one of them: participants, visibility, sharing, deletion, moderation. They
post messages only as participants (an admin may add themselves).

A user removed by someone else is remembered: they lose the non-participant reading of
``tenant`` and ``open`` sessions and cannot re-join by writing; only an owner, an admin or an
invitation brings them back. Leaving on one's own is not a removal.

A caller who may not read a session gets ``not_found``, exactly like a session that does not
exist; a caller who may read but not act gets ``forbidden``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from parley.errors import Forbidden, NotFound
from parley.governance.auth import Principal
from parley.sessions.rules import Role


class Visibility(StrEnum):
    PRIVATE = "private"
    TENANT = "tenant"
    OPEN = "open"


class Action(StrEnum):
    """What a caller asks to do in a session, weakest first."""

    READ = "read"  # subscribe, history, events, participants, document, presence, streams
    ANNOTATE = "annotate"  # write annotations in the session document
    POST = "post"  # post and edit own messages, the whole document, ask and stop assistants
    MANAGE = "manage"  # title, tags, metadata, status; assistants
    MODERATE = "moderate"  # delete other people's messages
    ADMINISTER = "administer"  # participants, visibility, invitations, share links, deletion


RANK = {Role.VIEWER: 0, Role.COMMENTER: 1, Role.EDITOR: 2, Role.OWNER: 3}
NEEDS: dict[Action, Role] = {
    Action.READ: Role.VIEWER,
    Action.ANNOTATE: Role.COMMENTER,
    Action.POST: Role.EDITOR,
    Action.MANAGE: Role.EDITOR,
    Action.MODERATE: Role.OWNER,
    Action.ADMINISTER: Role.OWNER,
}
# What tenant admins may do in any session of their tenant without a session role.
ADMIN_ACTIONS = frozenset({Action.READ, Action.MODERATE, Action.ADMINISTER})


def at_least(role: Role | None, needed: Role) -> bool:
    return role is not None and RANK[role] >= RANK[needed]


@dataclass(frozen=True, slots=True)
class Access:
    """What one principal has in one session: the facts the rules decide on."""

    principal: Principal
    visibility: Visibility
    role: Role | None  # the participant role, None when not a participant
    removed: bool  # removed by someone else, and not re-added since

    @property
    def effective_role(self) -> Role | None:
        """The role the caller acts with; None means the session is invisible to them."""
        if self.role is not None:
            return self.role
        if self.principal.is_admin:
            return Role.VIEWER
        if self.removed or self.visibility is Visibility.PRIVATE:
            return None
        return Role.VIEWER

    @property
    def may_self_join(self) -> bool:
        """A non-participant's first message makes them an editor (``open`` sessions)."""
        return self.role is None and self.visibility is Visibility.OPEN and not self.removed

    def allows(self, action: Action) -> bool:
        if self.effective_role is None:
            return False
        if self.principal.is_admin and action in ADMIN_ACTIONS:
            return True
        return at_least(self.effective_role, NEEDS[action])

    def check(self, action: Action, session_id: str, *, what: str = "") -> None:
        """Raise ``NotFound`` when the session is invisible, ``Forbidden`` when the caller's
        role does not allow ``action``."""
        if self.effective_role is None:
            raise NotFound(f"session {session_id!r} not found")
        if not self.allows(action):
            raise Forbidden(
                f"role {self.effective_role} may not {what or describe(action)} in this session",
                details={"role": str(self.effective_role), "needs": str(NEEDS[action])},
            )


def describe(action: Action) -> str:
    return {
        Action.READ: "read",
        Action.ANNOTATE: "annotate",
        Action.POST: "write messages",
        Action.MANAGE: "change the session",
        Action.MODERATE: "delete other people's messages",
        Action.ADMINISTER: "administer the session",
    }[action]


def may_grant(
    granter: Access, role: Role, *, target_removed: bool, target_role: Role | None
) -> bool:
    """Owners and tenant admins grant any role; editors add or change non-owners to roles up to
    editor, but cannot bring back someone who was removed."""
    if granter.allows(Action.ADMINISTER):
        return True
    if not granter.allows(Action.MANAGE):
        return False
    return not (target_removed or role is Role.OWNER or target_role is Role.OWNER)


def check_change_message(access: Access, actor: str, author: str, *, deleting: bool) -> None:
    """Authors who may still post edit and delete their own messages; owners and tenant admins
    may also delete other people's (moderation)."""
    if actor == author:
        access.check(Action.POST, "", what="edit or delete messages")
        return
    if deleting and access.allows(Action.MODERATE):
        return
    raise Forbidden("only the author may " + ("delete" if deleting else "edit") + " this message")
