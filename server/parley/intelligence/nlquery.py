"""Natural-language search queries to structured filters, by rules (offline).

"show me my conversations about AI from last week" becomes
``{"q": "ai", "participant": "<me>", "from": "<Monday a week ago>", "to": "<this Monday>"}``.
The user sees the filters and may edit them before searching. Rules, in order: quoted phrases
are kept as they are; then time expressions, people, tags, assistants and models, status are
recognised and removed; what remains, minus filler words, is the topic.

Time (UTC, weeks start on Monday; ``to`` is the start of the period after the range, left out
when that is still in the future):
today, yesterday, this/last week|month|year, past/last N days|weeks|months|hours (rolling,
from now minus N), past week|month|year (rolling), since/before/after/on/from <day>,
in <month>|<year>,
between <day> and <day>, where <day> is today, yesterday, a weekday (the latest one not after
today), an ISO date or "<month> <day>" / "<day> <month>".
People: my/mine/I was in → participant me; I started/created/own → owner me; with/involving X
→ participant X; by/from X, X said/wrote → author X; X's conversations → participant X.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from parley.intelligence.text import STOPWORDS

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_MONTH_ALT = "|".join(MONTHS + [m[:3] for m in MONTHS if m != "may"] + ["sept"])
_WEEKDAY_ALT = "|".join(WEEKDAYS)
_DAY = (
    rf"(?:today|yesterday|(?:last\s+)?(?:{_WEEKDAY_ALT})|\d{{4}}-\d{{2}}-\d{{2}}"
    rf"|(?:{_MONTH_ALT})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:{_MONTH_ALT}))"
)
_NAME = r"@?([a-z][\w.-]{0,63})"
FILLER = frozenset(
    """show me find list give get search look looking for all any every conversations
    conversation sessions session chats chat threads thread messages message discussions
    discussion talks talk talked talking about regarding concerning on where we i you they
    discussed discussing mentioned mentioning mention related relating to that which with
    of in from the a an and or is are was were did do does any there some stuff things
    what whats said say wrote please can could would me my mine our ours us""".split()  # noqa: SIM905
)
_NOT_NAMES = frozenset(
    {
        "me",
        "us",
        "them",
        "him",
        "her",
        "the",
        "a",
        "an",
        "my",
        "our",
        "last",
        "this",
        "next",
        "today",
        "yesterday",
        "ai",
        "tag",
        "assistant",
        "model",
        *WEEKDAYS,
        *MONTHS,
    }
)


@dataclass
class Parsed:
    """The filters found, the topic words left, and a note per rule that fired."""

    filters: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def query(self) -> dict[str, Any]:
        """The structured query (the ``SearchQuery`` fields that were found)."""
        return dict(self.filters)


def iso_z(ts: datetime) -> str:
    """A time as the parser writes it: UTC, seconds, a Z."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _midnight(ts: datetime) -> datetime:
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


def _add_months(ts: datetime, months: int) -> datetime:
    y, mo = divmod(ts.month - 1 + months, 12)
    return ts.replace(year=ts.year + y, month=mo + 1, day=1)


def _month_index(word: str) -> int:
    word = word.rstrip(".")
    for i, name in enumerate(MONTHS):
        if word == name or (len(word) >= 3 and name.startswith(word)):
            return i + 1
    raise ValueError(word)


def day_range(expr: str, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of a day expression (see the module docstring)."""
    expr = " ".join(expr.split())
    today = _midnight(now)
    if expr == "today":
        start = today
    elif expr == "yesterday":
        start = today - timedelta(days=1)
    elif expr.removeprefix("last ") in WEEKDAYS:
        back = (today.weekday() - WEEKDAYS.index(expr.removeprefix("last "))) % 7
        if expr.startswith("last ") and back == 0:
            back = 7
        start = today - timedelta(days=back)
    elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", expr):
        start = datetime.strptime(expr, "%Y-%m-%d").replace(tzinfo=UTC)
    else:
        m = re.fullmatch(rf"({_MONTH_ALT})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?", expr) or re.fullmatch(
            rf"(\d{{1,2}})(?:st|nd|rd|th)?\s+({_MONTH_ALT})", expr
        )
        if m is None:
            raise ValueError(expr)
        month_word, day = (
            (m.group(1), m.group(2)) if m.group(1)[0].isalpha() else (m.group(2), m.group(1))
        )
        month = _month_index(month_word)
        start = today.replace(month=month, day=int(day))
        if start > today:
            start = start.replace(year=start.year - 1)
    return start, start + timedelta(days=1)


class _Rules:
    def __init__(self, text: str, now: datetime, me: str) -> None:
        self.text = " " + text.lower().replace("\u2019", "'") + " "
        self.now = now.astimezone(UTC)
        self.me = me
        self.out = Parsed()

    def take(self, pattern: str, fn: Any) -> None:
        """Apply ``fn`` to each match of ``pattern`` and blank the match out of the text."""

        def repl(m: re.Match[str]) -> str:
            return " " if fn(m) is not False else m.group(0)

        self.text = re.sub(pattern, repl, self.text)

    def set(self, key: str, value: Any, note: str) -> None:
        self.out.filters.setdefault(key, value)
        if note not in self.out.notes:
            self.out.notes.append(note)

    def span(self, start: datetime | None, end: datetime | None, note: str) -> None:
        if end is not None and end > self.now:
            end = None  # a range that reaches past now is open-ended (nothing is newer)
        if start is not None:
            self.set("from", iso_z(start), note)
        if end is not None:
            self.set("to", iso_z(end), note)

    # -- the rules ----------------------------------------------------------------------------

    def times(self) -> None:
        now, today = self.now, _midnight(self.now)
        week = today - timedelta(days=today.weekday())
        month = today.replace(day=1)
        year = month.replace(month=1)
        units = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}

        def rolling(n: int, unit: str, phrase: str) -> None:
            if unit in ("month", "year"):
                start = _add_months(
                    now.replace(day=min(now.day, 28)), -n * (12 if unit == "year" else 1)
                )
                start = start.replace(day=min(now.day, 28))
            else:
                start = now - n * units[unit]
            self.span(start.replace(microsecond=0), None, f"{phrase.strip()}: rolling")

        self.take(
            r"\b(?:in|during|over|from|within)?\s*(?:the\s+)?(?:past|last)\s+(\d+|a|one)\s*"
            r"(hour|day|week|month|year)s?\b",
            lambda m: rolling(
                1 if m.group(1) in ("a", "one") else int(m.group(1)), m.group(2), m.group(0)
            ),
        )
        self.take(
            r"\b(?:in|during|over|from|within)?\s*(?:the\s+)?past\s+(hour|day|week|month|year)\b",
            lambda m: rolling(1, m.group(1), m.group(0)),
        )
        calendar = {
            "this week": (week, None),
            "last week": (week - timedelta(weeks=1), week),
            "this month": (month, None),
            "last month": (_add_months(month, -1), month),
            "this year": (year, None),
            "last year": (year.replace(year=year.year - 1), year),
        }
        for phrase, (start, end) in calendar.items():
            self.take(
                rf"\b(?:from|during|in|of|over)?\s*{phrase}(?:'s)?\b",
                lambda m, s=start, e=end, p=phrase: self.span(s, e, p),
            )

        def between(m: re.Match[str]) -> None:
            a, _ = day_range(m.group(1), now)
            _, b = day_range(m.group(2), now)
            self.span(a, b, m.group(0).strip())

        self.take(rf"\bbetween\s+({_DAY})\s+and\s+({_DAY})\b", between)

        def edge(m: re.Match[str]) -> None:
            start, end = day_range(m.group(2), now)
            word = m.group(1)
            if word == "since":
                self.span(start, None, m.group(0).strip())
            elif word in ("before", "until", "till"):
                self.span(None, start, m.group(0).strip())
            elif word == "after":
                self.span(end, None, m.group(0).strip())
            else:
                self.span(start, end, m.group(0).strip())

        self.take(rf"\b(since|from|before|until|till|after|on)\s+({_DAY})\b", edge)
        self.take(
            rf"\b(?:from\s+|of\s+)?({_DAY})\b",
            lambda m: self.span(*day_range(m.group(1), now), m.group(0).strip()),
        )

        def in_month(m: re.Match[str]) -> None:
            mo = _month_index(m.group(1))
            start = today.replace(month=mo, day=1)
            if start > today:
                start = start.replace(year=start.year - 1)
            self.span(start, _add_months(start, 1), m.group(0).strip())

        self.take(rf"\b(?:in|during|from|of)\s+({_MONTH_ALT})\b", in_month)

        def in_year(m: re.Match[str]) -> None:
            y = int(m.group(1))
            start = datetime(y, 1, 1, tzinfo=UTC)
            self.span(start, start.replace(year=y + 1), m.group(0).strip())

        self.take(r"\b(?:in|during|from|of)\s+(20\d{2}|19\d{2})\b", in_year)

    def people(self) -> None:
        me = self.me

        def name(value: str) -> str | None:
            return None if value in _NOT_NAMES else value.lstrip("@")

        self.take(
            r"\b(?:that\s+|which\s+|the\s+ones\s+)?i\s+(?:started|created|opened|own|owned|began)\b",
            lambda m: self.set("owner", me, "I started: owner is you"),
        )
        self.take(
            r"\b(?:that\s+|which\s+|where\s+)?i\s+(?:was|am|were)(?:\s+(?:in|part of|on))?\b"
            r"|\b(?:i\s+)?(?:took|take)\s+part\s+in\b|\bi\s+joined\b|\bi\s+participated\s+in\b",
            lambda m: self.set("participant", me, "you took part"),
        )

        def said(m: re.Match[str]) -> bool | None:
            who = name(m.group(1))
            if who is None:
                return False
            self.set("author", who, f"written by {who}")
            return None

        self.take(
            rf"\b(?:what\s+)?(?:did\s+)?{_NAME}\s+(?:said|say|wrote|write|posted|post)\b", said
        )
        self.take(rf"\b(?:messages?\s+)?(?:by|from|written by|sent by|posted by)\s+{_NAME}\b", said)

        def withp(m: re.Match[str]) -> bool | None:
            who = name(m.group(1))
            if who is None or who in ("tag", "tags", "assistant", "model"):
                return False
            self.set("participant", who, f"{who} took part")
            return None

        self.take(
            rf"\b(?:with|involving|including|between me and|and)\s+{_NAME}(?=\s|$)"
            r"(?!\s+(?:assistant|bot|model)\b)",
            withp,
        )
        self.take(rf"\b{_NAME}\s+(?:was|is|were)\s+(?:in|part of|on)\b", withp)

        def owned(m: re.Match[str]) -> bool | None:
            who = name(m.group(1))
            if who is None:
                return False
            self.set("participant", who, f"{who}'s: {who} took part")
            return None

        self.take(rf"\b{_NAME}'s\b", owned)
        self.take(r"\b(my|mine|our)\b", lambda m: self.set("participant", me, "my: you took part"))

    def labels(self) -> None:
        self.take(
            r"(?:\b(?:tagged|tag|labell?ed|label)(?:\s+(?:as|with))?(?:\s*:\s*|\s+)|#)([\w-]{1,64})\b",
            lambda m: self.set("tag", m.group(1), f"tag {m.group(1)}"),
        )
        self.take(
            r"\b(?:with|using|by)?\s*(?:the\s+)?assistant\s+(?:named\s+|called\s+)?([\w.-]{1,64})\b"
            r"|\b(?:with|using)\s+(?:the\s+)?([\w.-]{1,64})\s+(?:assistant|bot)\b",
            lambda m: self.set(
                "assistant", m.group(1) or m.group(2), f"assistant {m.group(1) or m.group(2)}"
            ),
        )
        self.take(
            r"\b(?:using|with|on|via)?\s*(?:the\s+)?model\s+([\w.:/-]{1,200})\b"
            r"|\b(?:using|with|via|on)\s+((?:gpt|claude|llama|mistral|gemini|o\d)[\w.:/-]*)\b",
            lambda m: self.set("model", m.group(1) or m.group(2), "model"),
        )
        self.take(
            r"\b(archived|closed)\b", lambda m: self.set("status", "archived", "archived sessions")
        )
        self.take(
            r"\b(active|open|ongoing|current)\b",
            lambda m: self.set("status", "active", "active sessions"),
        )

    def topic(self) -> None:
        phrases = re.findall(r'"([^"]+)"', self.text)
        rest = re.sub(r'"[^"]*"', " ", self.text)
        words = [
            w
            for w in re.findall(r"[\w][\w+#.-]*", rest)
            if w not in FILLER and w not in STOPWORDS and not w.isdigit()
        ]
        terms = [f'"{p.strip()}"' for p in phrases if p.strip()] + words
        if terms:
            self.set("q", " ".join(terms), "topic: " + " ".join(terms))


def parse(text: str, *, now: datetime, me: str) -> Parsed:
    """The structured filters of ``text`` for user ``me`` at time ``now`` (UTC)."""
    rules = _Rules(text, now, me)
    quoted = re.findall(r'"[^"]*"', rules.text)
    for i, q in enumerate(quoted):
        rules.text = rules.text.replace(q, f" \x00{i}\x00 ", 1)
    rules.times()
    rules.labels()
    rules.people()
    for i, q in enumerate(quoted):
        rules.text = rules.text.replace(f"\x00{i}\x00", q)
    rules.topic()
    return rules.out
