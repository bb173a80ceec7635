"""What a tenant's PII mode does to a message before it is stored (no I/O)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from parley.governance.pii.detector import Detector, PiiType, redact
from parley.governance.policies import PiiMode

METADATA_KEY = "pii"


@dataclass(slots=True)
class Prepared:
    text: str
    parts: list[dict[str, Any]] | None
    metadata: dict[str, Any] | None
    found: Counter[PiiType]


class ContentPolicy:
    """Applies a PII mode to message text and parts (every string value of a part but its type).

    ``flag`` and ``redact`` record the types found under ``metadata["pii"]``; a ``pii`` key
    sent by the client is replaced so nobody can fake or hide the flag.
    """

    def __init__(self, detector: Detector) -> None:
        self.detector = detector

    def redact_text(self, text: str) -> str:
        return redact(text, self.detector.find(text))

    def prepare(
        self,
        mode: PiiMode,
        text: str | None,
        parts: list[dict[str, Any]] | None,
        metadata: dict[str, Any] | None,
    ) -> Prepared:
        found: Counter[PiiType] = Counter()
        if mode not in (PiiMode.FLAG, PiiMode.REDACT):
            return Prepared(text or "", parts, metadata, found)
        rewrite = mode is PiiMode.REDACT

        def scan(value: str) -> str:
            findings = self.detector.find(value)
            found.update(f.type for f in findings)
            return redact(value, findings) if rewrite and findings else value

        def walk(value: Any) -> Any:
            if isinstance(value, str):
                return scan(value)
            if isinstance(value, list):
                return [walk(v) for v in value]
            if isinstance(value, dict):
                return {k: v if k == "type" else walk(v) for k, v in value.items()}
            return value

        new_text = scan(text) if text else (text or "")
        new_parts = walk(parts) if parts is not None else None
        new_meta = metadata
        if metadata is not None or found:
            new_meta = {k: v for k, v in (metadata or {}).items() if k != METADATA_KEY}
            if found:
                new_meta[METADATA_KEY] = {
                    "types": sorted(t.value for t in found),
                    "count": sum(found.values()),
                    "redacted": rewrite,
                }
        return Prepared(new_text, new_parts, new_meta, found)
