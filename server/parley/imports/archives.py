"""Opening zip exports safely: what the entries would unpack to is checked before anything
is read, so a small upload cannot expand into gigabytes (a zip bomb)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

MAX_UNPACKED_BYTES = 1024 * 1024 * 1024
MAX_RATIO = 200  # unpacked / packed; real exports of JSON and text stay well under 50


class ArchiveError(ValueError):
    """The zip cannot be read, or would unpack to too much."""


def open_zip(data: bytes | Path, *, separate: str | None = None) -> zipfile.ZipFile:
    """A zip archive over ``data``, or over the file at that path, read entry by entry
    (raises ArchiveError with the reason). Entries under ``separate`` are left out of the
    totals: whoever reads them checks each on its own (attachment files, limited per file by
    the attachment limits)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
        packed = len(data) if isinstance(data, bytes) else data.stat().st_size
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"not a readable zip archive: {exc}") from None
    unpacked = sum(
        info.file_size
        for info in archive.infolist()
        if separate is None or not info.filename.startswith(separate)
    )
    if unpacked > MAX_UNPACKED_BYTES or unpacked > MAX_RATIO * max(packed, 1024 * 1024):
        raise ArchiveError(
            f"the archive would unpack to {unpacked} bytes from {packed}; refused as unsafe"
        )
    return archive
