"""Reading Yjs updates (encoding v1) without applying them. No I/O.

pycrdt (Yrs) applies updates but does not say what an update is made of before it is applied.
The server needs two answers first: does the update bring anything new, and which root types
does it name. The second keeps the document's schema closed: an update that would create a
root type the schema does not define is refused (see ``schema.ROOTS``). Only items without a
left or right neighbour name their parent explicitly, and those are exactly the items that can
bring a new root into existence: an item with a neighbour lives where that neighbour lives.

Update v1 layout (Yjs ``encoding.js``)::

    update      = structs, delete set
    structs     = varuint clients, clients x (varuint count, varuint client, varuint clock,
                                              count x struct)
    struct      = uint8 info; info & 31 = 0 GC (varuint len) | 10 skip (varuint len) | item
    item        = [left origin id if info & 128] [right origin id if info & 64]
                  [if neither: varuint 1 + varstring root name | varuint 0 + parent id,
                               then varstring parent key if info & 32]
                  content by info & 31
    delete set  = varuint clients, clients x (varuint client, varuint n, n x (clock, len))
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pycrdt import Doc, get_update, merge_updates

from parley.crdt.yprotocol import MAX_VARUINT_BYTES, Reader, YProtocolError

EMPTY_UPDATE = b"\x00\x00"  # no structs, empty delete set
MAX_ANY_DEPTH = 64

# Item content kinds (info & 31)
_GC, _DELETED, _JSON, _BINARY, _STRING, _EMBED, _FORMAT, _TYPE, _ANY, _DOC, _SKIP = range(11)
_XML_ELEMENT, _XML_HOOK = 3, 5  # type refs that carry a node name


class UpdateInfo(NamedTuple):
    """What an update holds.

    ``roots`` are the root names its items name explicitly; ``ranges`` the clock range
    ``[first, end)`` of each client's structs; ``refs`` the ids its items point at (neighbours
    and parents); ``gaps`` whether it skips clocks inside a client's range. A named tuple: one
    is made for every update a client sends, and a frozen dataclass took three times as long.
    """

    structs: int
    deleted_ranges: int
    roots: frozenset[str]
    ranges: dict[int, tuple[int, int]]
    refs: frozenset[tuple[int, int]] = frozenset()
    gaps: bool = False

    def depends_on_missing(self, state_vector: dict[int, int]) -> bool:
        """True when some struct needs a change that neither a document with ``state_vector``
        nor this update holds: applying it would leave that struct pending."""
        if self.gaps:
            return True
        for client, (first, _) in self.ranges.items():
            if first > state_vector.get(client, 0):
                return True  # the client's earlier changes are missing
        for client, clock in self.refs:
            if clock < state_vector.get(client, 0):
                continue
            own = self.ranges.get(client)
            if own is None or not own[0] <= clock < own[1]:
                return True
        return False


def inspect_update(update: bytes) -> UpdateInfo:
    """Parse a v1 update. Raises :class:`YProtocolError` when it is malformed."""
    r = Reader(update)
    roots: set[str] = set()
    refs: set[tuple[int, int]] = set()
    ranges: dict[int, tuple[int, int]] = {}
    structs = 0
    gaps = False
    for _ in range(r.varuint()):
        count = r.varuint()
        client = r.varuint()
        first = clock = r.varuint()
        if count > r.remaining:
            raise YProtocolError("struct count exceeds the update")
        for _ in range(count):
            structs += 1
            length, skip = _read_struct(r, roots, refs)
            gaps = gaps or skip
            clock += length
        ranges[client] = (first, clock)
    deleted = 0
    for _ in range(r.varuint()):
        r.varuint()  # client
        n = r.varuint()
        if n > r.remaining:
            raise YProtocolError("delete range count exceeds the update")
        for _ in range(n):
            r.varuint()
            r.varuint()
        deleted += n
    return UpdateInfo(
        structs=structs,
        deleted_ranges=deleted,
        roots=frozenset(roots),
        ranges=ranges,
        refs=frozenset(refs),
        gaps=gaps,
    )


def _read_struct(r: Reader, roots: set[str], refs: set[tuple[int, int]]) -> tuple[int, bool]:
    """Read one struct; return its length in clock units and whether it is a skip."""
    info = r.byte()
    kind = info & 0x1F
    if kind in (_GC, _SKIP):
        return r.varuint(), kind == _SKIP
    has_left, has_right = info & 0x80, info & 0x40
    if has_left:
        refs.add((r.varuint(), r.varuint()))
    if has_right:
        refs.add((r.varuint(), r.varuint()))
    if not has_left and not has_right:
        if r.varuint() == 1:
            roots.add(r.varstring())
        else:
            refs.add((r.varuint(), r.varuint()))
        if info & 0x20:
            r.varstring()  # the key in a parent map
    return _read_content(r, kind), False


def _read_content(r: Reader, kind: int) -> int:
    """Skip an item's content; return its length (strings count UTF-16 units, as in JS)."""
    if kind == _DELETED:
        return r.varuint()
    if kind == _JSON:
        n = r.varuint()
        for _ in range(n):
            r.varstring()
        return n
    if kind == _STRING:
        chunk = r.varbytes()
        if chunk.isascii():  # typing, mostly: one UTF-16 unit per byte, and valid UTF-8
            return len(chunk)
        try:
            return len(chunk.decode().encode("utf-16-le")) // 2
        except UnicodeDecodeError:
            raise YProtocolError("string is not valid UTF-8") from None
    if kind in (_BINARY, _EMBED):
        r.varbytes()
    elif kind == _FORMAT:
        r.varstring()
        r.varstring()
    elif kind == _TYPE:
        if r.varuint() in (_XML_ELEMENT, _XML_HOOK):
            r.varstring()
    elif kind == _ANY:
        n = r.varuint()
        for _ in range(n):
            _skip_any(r, 0)
        return n
    elif kind == _DOC:
        r.varstring()
        _skip_any(r, 0)
    else:
        raise YProtocolError(f"unknown item content type {kind}")
    return 1


def decode_state_vector(state_vector: bytes) -> dict[int, int]:
    """client -> next expected clock. Raises :class:`YProtocolError` when it is truncated."""
    values = _varuints(state_vector)
    if not values or len(values) < 1 + 2 * values[0]:
        raise YProtocolError("unexpected end of the state vector")
    end = 1 + 2 * values[0]
    return dict(zip(values[1:end:2], values[2:end:2], strict=True))


def _varuints(data: bytes) -> list[int]:
    """Every varuint in ``data``, in one tight loop: the server decodes its state vector (eight
    bytes per client id) for every update, and a Reader call per value costs twice as much."""
    out: list[int] = []
    append = out.append
    pos, n = 0, len(data)
    while pos < n:
        b = data[pos]
        pos += 1
        if b < 0x80:
            append(b)
            continue
        value, shift = b & 0x7F, 7
        while True:
            if pos >= n or shift >= 7 * MAX_VARUINT_BYTES:
                return out  # a truncated or overlong value ends the sequence
            b = data[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
        append(value)
    return out


def _skip_any(r: Reader, depth: int) -> None:
    """Skip one lib0 ``Any`` value (the encoding of JSON-like values in Yjs)."""
    if depth > MAX_ANY_DEPTH:
        raise YProtocolError("value nested too deeply")
    tag = r.byte()
    if tag in (127, 126, 121, 120):  # undefined, null, false, true
        return
    if tag == 125:
        r.varint()
    elif tag == 124:
        r.take(4)
    elif tag in (123, 122):
        r.take(8)
    elif tag in (119, 116):  # string, bytes
        r.varbytes()
    elif tag == 118:  # object
        for _ in range(r.varuint()):
            r.varstring()
            _skip_any(r, depth + 1)
    elif tag == 117:  # array
        for _ in range(r.varuint()):
            _skip_any(r, depth + 1)
    else:
        raise YProtocolError(f"unknown value type {tag}")


def novel_part(update: bytes, state_vector: bytes) -> bytes:
    """The part of ``update`` a document with ``state_vector`` lacks: its structs beyond the
    state vector, and its whole delete set (Yjs always carries deletions in full). Raises
    :class:`YProtocolError` when the update or the state vector cannot be decoded."""
    try:
        return get_update(update, state_vector)
    except ValueError as exc:
        raise YProtocolError(f"not a valid Yjs update: {exc}") from None


def has_structs(update: bytes) -> bool:
    """True when the update holds any struct (its first varuint, the client count, is not 0)."""
    return bool(update) and update[0] != 0


def left_pending(update: bytes, doc: Doc[Any]) -> bool:
    """True when ``update``, just applied to ``doc``, has structs the document could not
    integrate: they wait for changes it lacks."""
    return has_structs(update) and has_structs(novel_part(update, doc.get_state()))


MERGE_CHUNK = 64  # Yrs merges a few dozen updates in microseconds, thousands in tens of ms


def merged_chunks(updates: list[bytes]) -> list[bytes]:
    """A batch of updates as few updates: merged in chunks, since merging is superlinear."""
    if len(updates) == 1:
        return updates
    return [
        merge_updates(*updates[i : i + MERGE_CHUNK])
        if len(updates[i : i + MERGE_CHUNK]) > 1
        else updates[i]
        for i in range(0, len(updates), MERGE_CHUNK)
    ]
