"""The access rules (governance/policy.py) as a table: no I/O."""

from __future__ import annotations

import pytest

from parley.errors import Forbidden, NotFound
from parley.governance.auth import Principal, TenantRole, UserKind
from parley.governance.policy import Access, Action, Visibility, may_grant
from parley.sessions.rules import Role

MEMBER = Principal("t", "u", "U", UserKind.HUMAN)
ADMIN = Principal("t", "root", "Root", UserKind.HUMAN, TenantRole.ADMIN)
A = Action

# (who, visibility, participant role, removed) -> the actions allowed ("-": invisible)
TABLE: list[tuple[Principal, Visibility, Role | None, bool, set[Action] | None]] = [
    (MEMBER, Visibility.PRIVATE, None, False, None),
    (MEMBER, Visibility.TENANT, None, False, {A.READ}),
    (MEMBER, Visibility.OPEN, None, False, {A.READ}),
    (MEMBER, Visibility.OPEN, None, True, None),
    (MEMBER, Visibility.TENANT, None, True, None),
    (MEMBER, Visibility.PRIVATE, Role.VIEWER, False, {A.READ}),
    (MEMBER, Visibility.PRIVATE, Role.COMMENTER, False, {A.READ, A.ANNOTATE}),
    (MEMBER, Visibility.PRIVATE, Role.EDITOR, False, {A.READ, A.ANNOTATE, A.POST, A.MANAGE}),
    (MEMBER, Visibility.PRIVATE, Role.OWNER, False, set(Action)),
    (ADMIN, Visibility.PRIVATE, None, False, {A.READ, A.MODERATE, A.ADMINISTER}),
    (ADMIN, Visibility.PRIVATE, None, True, {A.READ, A.MODERATE, A.ADMINISTER}),
    (ADMIN, Visibility.PRIVATE, Role.EDITOR, False, set(Action)),
]


@pytest.mark.parametrize(("who", "visibility", "role", "removed", "allowed"), TABLE)
def test_the_access_table(
    who: Principal,
    visibility: Visibility,
    role: Role | None,
    removed: bool,
    allowed: set[Action] | None,
) -> None:
    access = Access(who, visibility, role, removed)
    for action in Action:
        if allowed is None:
            with pytest.raises(NotFound):
                access.check(action, "s1")
        elif action in allowed:
            access.check(action, "s1")
        else:
            with pytest.raises(Forbidden):
                access.check(action, "s1")


def test_only_open_sessions_let_members_join_by_writing() -> None:
    assert Access(MEMBER, Visibility.OPEN, None, False).may_self_join
    assert not Access(MEMBER, Visibility.OPEN, None, True).may_self_join
    assert not Access(MEMBER, Visibility.TENANT, None, False).may_self_join
    assert not Access(MEMBER, Visibility.OPEN, Role.VIEWER, False).may_self_join


def test_who_may_grant_what() -> None:
    owner = Access(MEMBER, Visibility.PRIVATE, Role.OWNER, False)
    editor = Access(MEMBER, Visibility.PRIVATE, Role.EDITOR, False)
    admin = Access(ADMIN, Visibility.PRIVATE, None, False)
    viewer = Access(MEMBER, Visibility.PRIVATE, Role.VIEWER, False)
    for granter in (owner, admin):
        assert may_grant(granter, Role.OWNER, target_removed=True, target_role=Role.OWNER)
    assert may_grant(editor, Role.EDITOR, target_removed=False, target_role=None)
    assert not may_grant(editor, Role.OWNER, target_removed=False, target_role=None)
    assert not may_grant(editor, Role.VIEWER, target_removed=False, target_role=Role.OWNER)
    assert not may_grant(editor, Role.VIEWER, target_removed=True, target_role=None)
    assert not may_grant(viewer, Role.VIEWER, target_removed=False, target_role=None)
