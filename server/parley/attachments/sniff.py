"""What a file is, decided from its bytes (no I/O).

The declared type (the upload's ``Content-Type``) and the file name are never trusted for what
a browser or a provider would act on: binary formats are recognised by their magic numbers and
win over any declaration (a JPEG declared as PNG is stored as JPEG). Content that matches no
binary format is accepted only as UTF-8 text without control characters and without active
markup (HTML, SVG, XML: refused whatever the name); the declaration or the extension then only
chooses among the text types (plain, Markdown, CSV, JSON), all of them inert. Everything else
is refused with ``unsupported_media_type``.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from typing import Any

from parley.errors import InvalidRequest, UnsupportedMediaType

HEAD_BYTES = 4096  # bytes read before the type is decided
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/csv", "application/json"})
BINARY_TYPES = frozenset({*IMAGE_TYPES, "application/pdf", "application/zip"})
ALLOWED_TYPES = BINARY_TYPES | TEXT_TYPES
MAX_FILENAME = 255

_EXTENSIONS = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".csv": "text/csv",
    ".json": "application/json",
    ".txt": "text/plain",
}
# Markup a browser would render as a document (and run scripts in), anywhere in the head.
_ACTIVE_MARKUP = re.compile(
    rb"<\s*(?:!doctype\s+html|html|head|body|script|svg|iframe|object|embed|\?xml|meta|style"
    rb"|xsl:)",
    re.IGNORECASE,
)
# C0 controls other than tab, newline, form feed and carriage return: not text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
# Not in file names: every control character, and the bidirectional overrides that make
# "photo\u202egnp.exe" display as "photoexe.png".
_NAME_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def sniff_binary(head: bytes) -> str | None:
    """The allowed binary type whose magic number ``head`` starts with, if any."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(head) >= 12 and head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "application/zip"
    return None


def clean_filename(name: str | None) -> str:
    """A display name: the last path component, no control characters, at most 255 chars."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _NAME_UNSAFE.sub("", name).strip().strip(".") or "file"
    return name[:MAX_FILENAME]


def _text_type(declared: str | None, filename: str) -> str:
    base = (declared or "").split(";", 1)[0].strip().lower()
    if base in TEXT_TYPES:
        return base
    dot = filename.rfind(".")
    return _EXTENSIONS.get(filename[dot:].lower(), "text/plain") if dot >= 0 else "text/plain"


@dataclass
class Sniffer:
    """Feeds of one upload's bytes: decides the type after :data:`HEAD_BYTES` (or at the end)
    and, for text, keeps checking that every later byte is still text."""

    declared: str | None
    filename: str
    content_type: str | None = None
    _head: bytearray = field(default_factory=bytearray)
    _decoder: Any = None

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes; raises ``UnsupportedMediaType`` as soon as they are refused."""
        if self.content_type is None:
            self._head += chunk
            if len(self._head) >= HEAD_BYTES:
                self._decide(final=False)
        elif self._decoder is not None:
            self._check_text(chunk, final=False)

    def finish(self) -> str:
        """The type, once every byte was fed; raises like :meth:`feed`."""
        if self.content_type is None:
            if not self._head:
                raise InvalidRequest("the file is empty")
            self._decide(final=True)
        elif self._decoder is not None:
            self._check_text(b"", final=True)
        assert self.content_type is not None
        return self.content_type

    def _decide(self, *, final: bool) -> None:
        head = bytes(self._head)
        binary = sniff_binary(head)
        if binary is not None:
            self.content_type = binary
            return
        if _ACTIVE_MARKUP.search(head):
            raise UnsupportedMediaType(
                "HTML, SVG and XML documents are not accepted as attachments (they could run "
                "scripts when opened); allowed: " + ", ".join(sorted(ALLOWED_TYPES))
            )
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._check_text(head.removeprefix(codecs.BOM_UTF8), final=final)
        self.content_type = _text_type(self.declared, self.filename)

    def _check_text(self, chunk: bytes, *, final: bool) -> None:
        try:
            text = self._decoder.decode(chunk, final)
        except UnicodeDecodeError:
            text = None
        if text is None or _CONTROL.search(text):
            raise UnsupportedMediaType(
                "the file is not one of the allowed types (its bytes are neither a known image, "
                "PDF or ZIP, nor UTF-8 text); allowed: " + ", ".join(sorted(ALLOWED_TYPES))
            )
