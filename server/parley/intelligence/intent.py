"""Intent of a message, by rules (documented in docs/intelligence.md, measured on
``tests/data/intent_labelled.jsonl``).

Labels: ``question``, ``request``, ``answer``, ``decision``, ``action_item``, ``statement``.
The rules are tried in this order; the first that fires wins:

1. decision: a decision phrase ("we decided", "let's go with", "agreed", "decision:", ...).
2. action_item: a commitment to a future task ("I'll ...", "<Name> will ...", "TODO",
   "action item", "<Name> to <verb>").
3. request: a polite or imperative ask ("please", "can/could/would you", a sentence that opens
   with an imperative verb such as "send", "review", "check", "let me know").
4. question: ends with "?", or opens with a question word or an inverted auxiliary.
5. answer: the message before it (its parent, or the previous one) was a question, or it opens
   with yes/no.
6. statement: anything else.
"""

from __future__ import annotations

import re
from typing import Literal

Intent = Literal["question", "request", "answer", "decision", "action_item", "statement"]
INTENTS: tuple[Intent, ...] = (
    "question",
    "request",
    "answer",
    "decision",
    "action_item",
    "statement",
)

_I = re.IGNORECASE
_DECISION = re.compile(
    r"\b(we|the team|team|i)\s+(have\s+|'ve\s+)?(decided|chose|chosen|agreed)\b"
    r"|\bdecision( made)?\s*[:,]|\bfinal decision\b|\blet'?s go with\b|\bconsensus is\b"
    r"|\b(we'?ll|we will|we'?re going|we are going) (to )?(go|going) with\b"
    r"|\bwe'?re going with\b|^agreed\b|\bagreed to\b|^(settled|approved)\s*[:,]"
    r"|\bit'?s decided\b|\bwe will go with\b|,? final$",
    _I,
)
# Case matters only for "<Name> will/to ...": a capitalised name, then a lower-case verb.
_ACTION = re.compile(
    r"(?i:\baction items?\s*[:,]|^action\s*:|\btodo\b|\bto-do\b"
    r"|^(i'?ll|i will|i'?m going to|i am going to)\b)"
    r"|^[A-Z][a-z]+ (will|to) [a-z]+"
)
_IMPERATIVE = [
    "send",
    "share",
    "review",
    "check",
    "fix",
    "add",
    "remove",
    "update",
    "make",
    "create",
    "schedule",
    "book",
    "give",
    "tell",
    "show",
    "summarize",
    "summarise",
    "write",
    "draft",
    "help",
    "remind",
    "approve",
    "restart",
    "call",
    "email",
    "ping",
    "look",
    "merge",
    "deploy",
    "run",
    "test",
    "explain",
    "forward",
    "invite",
]
_REQUEST = re.compile(
    r"^(please|pls|kindly)\b|\bplease\b|\b(can|could|would|will) you\b(?! (believe|imagine))"
    r"|\bwould you mind\b|^let me know\b|^(" + "|".join(_IMPERATIVE) + r")\b",
    _I,
)
_QUESTION_START = re.compile(
    r"^(what|why|how|when|where|who|whom|whose|which|is|are|am|was|were|do|does|did|can|could"
    r"|would|should|will|shall|has|have|had|any|anyone|anybody|may|might)\b",
    _I,
)
_YES_NO = re.compile(r"^(yes|yeah|yep|yup|no|nope|nah|sure|definitely|not yet)\b", _I)


def classify(
    text: str, previous: str | None = None, previous_intent: Intent | None = None
) -> Intent:
    """The intent of ``text``; ``previous`` is the message it answers (its parent, else the one
    before it), or ``previous_intent`` when that message was already classified."""
    t = " ".join(text.split())
    if not t:
        return "statement"
    if _DECISION.search(t):
        return "decision"
    if _ACTION.search(t):
        return "action_item"
    if _REQUEST.search(t):
        return "request"
    if t.endswith("?") or _QUESTION_START.match(t):
        return "question"
    if previous_intent is None and previous is not None:
        previous_intent = classify(previous)
    if previous_intent == "question" or _YES_NO.match(t):
        return "answer"
    return "statement"
