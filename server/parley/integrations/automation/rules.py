"""Automation rule definitions, matching and loop detection (no I/O).

A rule has either a ``trigger`` (it fires on matching events) or a ``schedule`` (a cron
expression), and a list of actions. Actions that write carry their causation (the chain of
rules that led to them and its depth) in the event they cause, so a chain that comes back to
a rule already in it, or grows past the depth limit, is stopped and recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import regex
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from parley.errors import InvalidRequest
from parley.integrations.filters import check_patterns, type_matches

BOT_USER = "parley-automation"
BOT_NAME = "Automation"
MAX_PATTERN = 500
MATCH_TIMEOUT = 0.05  # seconds one pattern may spend on one message
MATCH_CHARS = 10_000  # only the start of very long messages is searched
TEXT_EVENTS = ("message.created", "message.edited")

Short = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Trigger(_Strict):
    events: Annotated[list[str], Field(min_length=1, max_length=50)] = ["message.created"]
    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PATTERN)] | None = None
    tag: Short | None = None
    participant: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None


class TagAction(_Strict):
    type: Literal["tag"]
    tags: Annotated[list[Short], Field(min_length=1, max_length=32)]


class PostMessageAction(_Strict):
    type: Literal["post_message"]
    text: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    session: Id | None = None  # scheduled rules name where to post


class AddAssistantAction(_Strict):
    type: Literal["add_assistant"]
    name: Short
    provider: Short = "scripted"
    model: Annotated[str, StringConstraints(min_length=1, max_length=200)] = "scripted"
    system_prompt: Annotated[str, StringConstraints(max_length=8000)] = ""
    params: dict[str, Any] = Field(default_factory=dict)


class CallWebhookAction(_Strict):
    type: Literal["call_webhook"]
    webhook: Id


class SummarizeAction(_Strict):
    type: Literal["summarize"]
    assistant: Short | None = None  # ask this assistant of the session instead
    messages: Annotated[int, Field(ge=2, le=500)] = 50


class DigestAction(_Strict):
    type: Literal["digest"]
    session: Id
    hours: Annotated[int, Field(ge=1, le=24 * 31)] = 24


Action = Annotated[
    TagAction
    | PostMessageAction
    | AddAssistantAction
    | CallWebhookAction
    | SummarizeAction
    | DigestAction,
    Field(discriminator="type"),
]
EVENT_ACTIONS = {"tag", "post_message", "add_assistant", "call_webhook", "summarize"}
SCHEDULE_ACTIONS = {"post_message", "digest", "call_webhook"}


class RuleSpec(_Strict):
    """What a tenant admin writes (REST body), validated."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    enabled: bool = True
    trigger: Trigger | None = None
    schedule: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    actions: Annotated[list[Action], Field(min_length=1, max_length=10)]


def check_rule(data: dict[str, Any]) -> RuleSpec:
    """A validated rule, or :class:`InvalidRequest` naming the first problem."""
    try:
        spec = RuleSpec.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "problem": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidRequest(
            f"invalid rule: {problems[0]['field']}: {problems[0]['problem']}", details=problems
        ) from None
    if (spec.trigger is None) == (spec.schedule is None):
        raise InvalidRequest("a rule has either a trigger or a schedule")
    allowed = EVENT_ACTIONS if spec.trigger is not None else SCHEDULE_ACTIONS
    for i, action in enumerate(spec.actions):
        if action.type not in allowed:
            kind = "event rules" if spec.trigger is not None else "scheduled rules"
            raise InvalidRequest(
                f"actions.{i}: {action.type!r} is not an action of {kind} "
                f"(use {', '.join(sorted(allowed))})"
            )
        if (
            spec.schedule is not None
            and isinstance(action, PostMessageAction)
            and action.session is None
        ):
            raise InvalidRequest(f"actions.{i}: a scheduled post_message needs a session")
    if spec.trigger is not None:
        check_patterns(spec.trigger.events, "trigger.events")
        if spec.trigger.text is not None:
            compile_pattern(spec.trigger.text)
    if spec.schedule is not None:
        check_schedule(spec.schedule)
    return spec


def compile_pattern(pattern: str) -> regex.Pattern[str]:
    try:
        return regex.compile(pattern)
    except regex.error as exc:
        raise InvalidRequest(f"trigger.text is not a valid regular expression: {exc}") from None


def check_schedule(expr: str) -> None:
    """Cron: five fields (minute hour day month weekday), or six with seconds last."""
    if len(expr.split()) not in (5, 6) or not croniter.is_valid(expr):
        raise InvalidRequest(
            f"schedule {expr[:60]!r} is not a cron expression "
            "(five fields: minute hour day month weekday; a sixth for seconds)"
        )


def next_run(expr: str, after: datetime) -> datetime:
    """The first time the schedule fires after ``after`` (UTC)."""
    value: datetime = croniter(expr, after).get_next(datetime)
    return value


# -- matching -------------------------------------------------------------------------------


class PatternTimeout(Exception):
    """A text pattern took too long on one message (the rule's run says so)."""


def message_text(frame: dict[str, Any]) -> str | None:
    if frame.get("event") not in TEXT_EVENTS:
        return None
    message = frame.get("data", {}).get("message") or {}
    text = message.get("text")
    return text if isinstance(text, str) else None


def matches(trigger: Trigger, frame: dict[str, Any], session_tags: list[str]) -> bool:
    """Does this event fire the trigger? Raises :class:`PatternTimeout`."""
    if not type_matches(trigger.events, frame["event"]):
        return False
    if trigger.participant is not None and frame.get("actor") != trigger.participant:
        return False
    if trigger.tag is not None and trigger.tag.strip().lower() not in session_tags:
        return False
    if trigger.text is not None:
        text = message_text(frame)
        if text is None:
            return False
        try:
            return (
                compile_pattern(trigger.text).search(text[:MATCH_CHARS], timeout=MATCH_TIMEOUT)
                is not None
            )
        except TimeoutError:
            raise PatternTimeout(trigger.text) from None
    return True


# -- causation and loops --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Causation:
    """How an event came about: by which chain of rules (empty: not by automation)."""

    chain: tuple[str, ...] = ()
    unknown: bool = False  # written by the automation bot without a recorded chain

    @property
    def depth(self) -> int:
        return len(self.chain)

    def then(self, rule_id: str) -> dict[str, Any]:
        """The causation to stamp on what ``rule_id`` does because of this event."""
        return {"rule": rule_id, "chain": [*self.chain, rule_id], "depth": self.depth + 1}


def causation_of(frame: dict[str, Any]) -> Causation:
    data = frame.get("data") or {}
    stamp = data.get("automation")
    if stamp is None:
        message = data.get("message") or {}
        stamp = (message.get("metadata") or {}).get("automation")
    if isinstance(stamp, dict) and isinstance(stamp.get("chain"), list):
        return Causation(tuple(str(r) for r in stamp["chain"][:50]))
    return Causation(unknown=frame.get("actor") == BOT_USER)


def loop_reason(rule_id: str, cause: Causation, max_depth: int) -> str | None:
    """Why firing ``rule_id`` on an event with ``cause`` would be a loop, or None."""
    if rule_id in cause.chain:
        return f"the rule fired on its own output (chain {' > '.join(cause.chain)})"
    if cause.depth >= max_depth:
        return f"the chain of rules reached the depth limit of {max_depth}"
    return None
