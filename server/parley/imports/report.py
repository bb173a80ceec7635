"""What an import did: counts, the sessions it wrote, and every skipped record with where it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from parley.imports.model import RecordError


@dataclass(slots=True)
class ImportReport:
    """What an import did; ``errors`` are the skipped records, with where they are."""

    format: str
    dry_run: bool = False
    conversations: int = 0
    sessions_created: int = 0
    sessions_updated: int = 0
    messages_added: int = 0
    messages_present: int = 0
    notes: int = 0
    files_restored: int = 0
    errors: list[RecordError] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "dry_run": self.dry_run,
            "conversations": self.conversations,
            "sessions_created": self.sessions_created,
            "sessions_updated": self.sessions_updated,
            "messages_added": self.messages_added,
            "messages_present": self.messages_present,
            "skipped_notes": self.notes,
            "files_restored": self.files_restored,
            "errors": [{"where": e.where, "problem": e.problem} for e in self.errors],
            "sessions": self.sessions,
        }
