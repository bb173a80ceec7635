"""Decoding client frames and encoding server frames, in msgpack (binary) and JSON (text).

Both encodings carry the same schema. Decoding is strict and every failure maps to one
:class:`~parley.errors.ErrorCode`, so a client always learns precisely what was wrong.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgpack
import orjson
from pydantic import TypeAdapter, ValidationError

from parley.errors import ErrorCode, ProtocolError
from parley.protocol.frames import CLIENT_FRAME_TYPES, ClientFrame

_CLIENT_FRAME: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)


class Encoding(StrEnum):
    JSON = "json"
    MSGPACK = "msgpack"


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed")


def decode_raw(data: bytes | str) -> Any:
    """Bytes are msgpack, text is JSON. Raises ``ProtocolError(bad_encoding)``."""
    try:
        if isinstance(data, bytes):
            return msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_refuse_ext)
        return orjson.loads(data)
    except (
        ValueError,
        TypeError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
    ) as exc:
        kind = "msgpack" if isinstance(data, bytes) else "JSON"
        raise ProtocolError(
            f"frame is not valid {kind}: {exc}", code=ErrorCode.BAD_ENCODING
        ) from None


def frame_ref(raw: Any) -> str | int | None:
    """The client's frame id if it has a usable one, so even a refused frame can be answered."""
    if isinstance(raw, dict):
        ref = raw.get("id")
        if isinstance(ref, str) and 0 < len(ref) <= 128:
            return ref
        if isinstance(ref, int) and not isinstance(ref, bool) and 0 <= ref <= 2**53:
            return ref
    return None


def parse_frame(raw: Any) -> ClientFrame:
    """Validate a decoded value as a client frame. Raises ``ProtocolError`` with a precise code."""
    if not isinstance(raw, dict):
        raise ProtocolError(
            f"a frame must be an object, got {type(raw).__name__}", code=ErrorCode.BAD_FRAME
        )
    ftype = raw.get("type")
    if not isinstance(ftype, str):
        raise ProtocolError('a frame needs a string field "type"', code=ErrorCode.BAD_FRAME)
    if ftype not in CLIENT_FRAME_TYPES:
        raise ProtocolError(
            f"unknown frame type {ftype[:64]!r}",
            code=ErrorCode.UNKNOWN_TYPE,
            details={"known": sorted(CLIENT_FRAME_TYPES)},
        )
    try:
        return _CLIENT_FRAME.validate_python(raw)
    except ValidationError as exc:
        problems: list[dict[str, str]] = []
        for err in exc.errors(include_url=False, include_input=False):
            problem = {"field": _field_path(err["loc"][1:]), "problem": err["msg"]}
            if problem["field"] not in (seen["field"] for seen in problems):
                problems.append(problem)
        first = problems[0]
        raise ProtocolError(
            f"invalid {ftype} frame: {first['field']}: {first['problem']}",
            code=ErrorCode.INVALID_FRAME,
            details=problems,
        ) from None


def _field_path(loc: tuple[int | str, ...]) -> str:
    """``since_seq`` or ``parts.0.type``: the path as the client wrote it, without pydantic's
    labels for the members of a union (``constrained-str``, ``int``...)."""
    names = [str(p) for p in loc if isinstance(p, int) or p.isidentifier()]
    return ".".join(names) or "type"


def encode(frame: dict[str, Any], encoding: Encoding) -> bytes | str:
    """Encode a server frame: bytes for msgpack, str for JSON text frames."""
    if encoding is Encoding.MSGPACK:
        return pack(frame)
    return orjson.dumps(frame).decode()


def pack(value: Any) -> bytes:
    """msgpack with binary type for bytes, the form all Parley peers read."""
    result: bytes = msgpack.packb(value, use_bin_type=True)
    return result


def unpack(data: bytes) -> Any:
    """Inverse of :func:`pack` for trusted internal payloads (broker messages)."""
    return msgpack.unpackb(data, raw=False)
