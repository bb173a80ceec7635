"""Find personal data and secrets in text: patterns proposed, validators confirm (no I/O).

Each type has one job here: a regular expression proposes candidate spans, a validator from
``validators`` (checksum, structure, context words) keeps or drops each. Overlapping findings
are resolved by type priority, then length, so a card number is not also reported as a phone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers

from parley.governance.pii import validators as v


class PiiType(StrEnum):
    EMAIL = "EMAIL"
    PHONE = "PHONE"
    CARD = "CARD"
    IBAN = "IBAN"
    NATIONAL_ID = "NATIONAL_ID"
    IP = "IP"
    SECRET = "SECRET"


# Which type wins when two findings overlap (lower index wins).
PRIORITY = [
    PiiType.SECRET,
    PiiType.EMAIL,
    PiiType.IBAN,
    PiiType.CARD,
    PiiType.NATIONAL_ID,
    PiiType.IP,
    PiiType.PHONE,
]
_RANK = {t: i for i, t in enumerate(PRIORITY)}


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected span: ``text[start:end]`` is of ``type``."""

    type: PiiType
    start: int
    end: int
    value: str


_EMAIL = re.compile(
    r"(?<![\w.+'-])[A-Za-z0-9](?:[A-Za-z0-9._%+'-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
_IBAN = re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![\w])")
_SSN = re.compile(r"(?<![\w-])\d{3}([- ])\d{2}\1\d{4}(?![\w-])")
_SSN_BARE = re.compile(r"(?i)\b(?:ssn|social security(?: number| no\.?)?)\W{0,4}(\d{9})\b")
_NINO = re.compile(
    r"(?<![\w])[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![\w])"
)
_SIN = re.compile(
    r"(?i)\b(?:sin|social insurance(?: number| no\.?)?)\W{0,4}(\d{3}[ -]?\d{3}[ -]?\d{3})\b"
)
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:/\d{1,3})?(?![\w:])")
_VERSION_CONTEXT = re.compile(r"(?i)(?:\bv|version|release|build|ver\.?|python|node)\s*$")

_SECRET_PATTERNS = [
    re.compile(
        r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----[\s\S]+?-----END (?:[A-Z]+ )*PRIVATE KEY-----"
    ),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\bsk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{20,}"),  # OpenAI, Anthropic
    re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}\b"),  # Stripe
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),  # GitHub tokens
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}\b"),
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),  # Slack
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),  # Google API key
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWT
    re.compile(r"\bpk_[a-z0-9]{8,32}_[A-Za-z0-9_-]{24,}"),  # Parley API keys
]
# A credential-like value right after a word that names one: ``api_key = "..."``.
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)\b(?:api[_ -]?key|secret(?:[_ -]?key)?|access[_ -]?key|auth[_ -]?token|token|"
    r"password|passwd|pwd|client[_ -]?secret|bearer)\b[\"']?\s*(?:[:=]|is|was)?\s*[\"']?"
    r"([A-Za-z0-9/+_.\-!@#$%^&*~=]{16,})"
)
MAX_PHONE_CHECKS = 100  # libphonenumber parses per text (each costs ~0.2 ms)
_PHONE_CANDIDATE = re.compile(
    r"(?<![\w+.-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d(?:[ .-]?\d){5,14}(?![\w])"
)
_PHONE_WORDS = re.compile(
    r"(?i)\b(?:call|phone|tel|telephone|mobile|cell|text|sms|whatsapp|fax|ring|dial|reach|"
    r"number|contact)\b"
)
_NOT_PHONE_WORDS = re.compile(
    r"(?i)(?:order|invoice|ref(?:erence)?|tracking|ticket|account|acct|id|#|no\.|sku|case)"
    r"\W{0,3}$"
)


class Detector:
    """Finds :class:`Finding` s in text. Stateless after construction; safe to share.

    ``phone_regions`` are the countries whose national phone formats (without a ``+``
    prefix) are recognised; international numbers are recognised from any country.
    """

    def __init__(self, phone_regions: Iterable[str] = ("US", "GB")) -> None:
        self.phone_regions = tuple(phone_regions)

    def find(self, text: str) -> list[Finding]:
        """Every finding, left to right, with overlaps resolved."""
        if not text:
            return []
        candidates = [
            *self._emails(text),
            *self._secrets(text),
            *self._ibans(text),
            *self._cards(text),
            *self._national_ids(text),
            *self._ips(text),
        ]
        if sum(ch.isdigit() for ch in text) >= 7:
            candidates.extend(self._phones(text))
        return _resolve(candidates)

    def _emails(self, text: str) -> Iterator[Finding]:
        for m in _EMAIL.finditer(text):
            yield Finding(PiiType.EMAIL, m.start(), m.end(), m.group())

    def _secrets(self, text: str) -> Iterator[Finding]:
        for pattern in _SECRET_PATTERNS:
            for m in pattern.finditer(text):
                yield Finding(PiiType.SECRET, m.start(), m.end(), m.group())
        for m in _SECRET_ASSIGNMENT.finditer(text):
            value = m.group(1).rstrip(".,;!")
            if v.looks_random(value):
                yield Finding(PiiType.SECRET, m.start(1), m.start(1) + len(value), value)

    def _ibans(self, text: str) -> Iterator[Finding]:
        for m in _IBAN.finditer(text):
            # Greedy groups may swallow a following word; shrink until the checksum holds.
            value = m.group()
            while len(value) >= 15:
                if v.iban_valid(value):
                    yield Finding(PiiType.IBAN, m.start(), m.start() + len(value), value)
                    break
                value = value[: value.rfind(" ")] if " " in value[15:] else ""

    def _cards(self, text: str) -> Iterator[Finding]:
        for m in _CARD.finditer(text):
            if v.card_valid(m.group()):
                yield Finding(PiiType.CARD, m.start(), m.end(), m.group())

    def _national_ids(self, text: str) -> Iterator[Finding]:
        for m in _SSN.finditer(text):
            if v.us_ssn_valid(m.group()):
                yield Finding(PiiType.NATIONAL_ID, m.start(), m.end(), m.group())
        for m in _SSN_BARE.finditer(text):
            if v.us_ssn_valid(m.group(1)):
                yield Finding(PiiType.NATIONAL_ID, m.start(1), m.end(1), m.group(1))
        for m in _NINO.finditer(text):
            if v.uk_nino_valid(m.group()):
                yield Finding(PiiType.NATIONAL_ID, m.start(), m.end(), m.group())
        for m in _SIN.finditer(text):
            if v.ca_sin_valid(m.group(1)):
                yield Finding(PiiType.NATIONAL_ID, m.start(1), m.end(1), m.group(1))

    def _ips(self, text: str) -> Iterator[Finding]:
        for m in _IPV4.finditer(text):
            if v.ip_valid(m.group()) and not _VERSION_CONTEXT.search(text[: m.start()]):
                yield Finding(PiiType.IP, m.start(), m.end(), m.group())
        for m in _IPV6.finditer(text):
            value = m.group()
            address = value.split("/")[0]
            if address.count(":") >= 2 and len(address) >= 6 and v.ip_valid(address):
                yield Finding(PiiType.IP, m.start(), m.end(), value)

    def _phones(self, text: str) -> Iterator[Finding]:
        # Our own pattern proposes candidates and libphonenumber validates each: its matcher
        # scans every digit run in every leniency and took seconds on a long run of digits.
        budget = MAX_PHONE_CHECKS
        for m in _PHONE_CANDIDATE.finditer(text):
            raw = m.group().rstrip(" .-")
            if not 7 <= sum(ch.isdigit() for ch in raw) <= 15:
                continue
            before = text[max(0, m.start() - 24) : m.start()]
            if _NOT_PHONE_WORDS.search(before):
                continue
            # A bare run of digits is a phone number only where the text says so.
            if raw.isdigit() and not _PHONE_WORDS.search(text[max(0, m.start() - 40) : m.start()]):
                continue
            budget -= 1
            if budget < 0:
                return  # a text of hundreds of digit runs is not a chat message worth parsing
            if self._valid_phone(raw):
                yield Finding(PiiType.PHONE, m.start(), m.start() + len(raw), raw)

    def _valid_phone(self, raw: str) -> bool:
        regions: tuple[str | None, ...] = (None,) if raw.startswith("+") else self.phone_regions
        for region in regions:
            try:
                number = phonenumbers.parse(raw, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                return True
        return False


def _resolve(candidates: list[Finding]) -> list[Finding]:
    """Keep the best of overlapping findings: higher-priority type, then the longer span."""
    chosen: list[Finding] = []
    for f in sorted(candidates, key=lambda f: (_RANK[f.type], -(f.end - f.start), f.start)):
        if all(f.end <= c.start or f.start >= c.end for c in chosen):
            chosen.append(f)
    return sorted(chosen, key=lambda f: f.start)


def redact(text: str, findings: Iterable[Finding]) -> str:
    """``text`` with each finding replaced by its typed placeholder, e.g. ``[EMAIL]``."""
    out: list[str] = []
    pos = 0
    for f in sorted(findings, key=lambda f: f.start):
        if f.start < pos:
            continue
        out.append(text[pos : f.start])
        out.append(f"[{f.type.value}]")
        pos = f.end
    out.append(text[pos:])
    return "".join(out)
