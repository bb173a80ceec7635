"""One parser per import format; each turns the bytes of an export into parsed items
(:mod:`parley.imports.model`) without touching the database. ``PARSERS`` names them."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from parley.imports.formats import chatgpt, discord, mbox, parley_json, slack, whatsapp
from parley.imports.model import ParsedItem

Parser = Callable[[str, bytes], Iterator[ParsedItem]]

PARSERS: dict[str, Parser] = {
    "parley-json": parley_json.parse,
    "chatgpt": chatgpt.parse,
    "slack": slack.parse,
    "whatsapp": whatsapp.parse,
    "mbox": mbox.parse,
    "discord": discord.parse,
}
