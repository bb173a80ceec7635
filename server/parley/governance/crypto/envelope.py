"""Envelope encryption, sans-I/O: a master key wraps per-tenant data keys, data keys seal content.

Formats (both AES-256-GCM with a fresh random 96-bit nonce, 128-bit tag):

* wrapped data key: ``nonce(12) || ciphertext+tag`` of the 32-byte key, with associated data
  ``b"parley-dk|" + tenant + b"|" + version`` so a wrapped key cannot be moved to another
  tenant or version;
* sealed content: ``00 FF 50 4B || 0x01 || key version (4 bytes, big-endian) || nonce(12) ||
  ciphertext+tag`` with associated data naming the row (tenant, table, row id, column), so a
  ciphertext copied to another row or column fails to open. The magic bytes tell sealed
  document bytes from plaintext Yjs updates written before encryption was on (a Yjs update
  cannot start with "no structs, then a delete set of 0xFF... clients" in practice); the byte
  after them is the format version.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"\x00\xffPK"
FORMAT_V1 = 0x01
KEY_BYTES = 32
NONCE_BYTES = 12
_HEADER = struct.Struct(">4sBI")  # magic, format, key version


class CryptoError(Exception):
    """Content or a wrapped key could not be opened: wrong key, or data altered or moved."""


@dataclass(frozen=True, slots=True)
class MasterKey:
    """The key-encryption key. ``id`` (a fingerprint, not secret) names it in stored rows."""

    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise ValueError(f"a master key is {KEY_BYTES} bytes (base64: 44 characters)")

    @classmethod
    def from_base64(cls, text: str) -> MasterKey:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the master key is not valid base64") from None
        return cls(raw)

    @property
    def id(self) -> str:
        return hashlib.sha256(b"parley-master-id|" + self.key).hexdigest()[:16]

    def wrap(self, tenant_id: str, version: int, data_key: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(self.key).encrypt(nonce, data_key, _wrap_aad(tenant_id, version))

    def unwrap(self, tenant_id: str, version: int, wrapped: bytes) -> bytes:
        try:
            return AESGCM(self.key).decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _wrap_aad(tenant_id, version)
            )
        except (InvalidTag, ValueError):
            raise CryptoError(
                f"data key {tenant_id}/{version} does not open with this master key"
            ) from None


def _wrap_aad(tenant_id: str, version: int) -> bytes:
    return f"parley-dk|{tenant_id}|{version}".encode()


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(data_key: bytes, version: int, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt ``plaintext`` under a data key of ``version``, bound to ``aad``."""
    nonce = os.urandom(NONCE_BYTES)
    header = _HEADER.pack(MAGIC, FORMAT_V1, version)
    return header + nonce + AESGCM(data_key).encrypt(nonce, plaintext, header + aad)


def key_version(blob: bytes) -> int | None:
    """The data key version a sealed blob needs, or None when ``blob`` is not one."""
    if len(blob) < _HEADER.size + NONCE_BYTES + 16 or not blob.startswith(MAGIC):
        return None
    _, fmt, version = _HEADER.unpack_from(blob)
    return int(version) if fmt == FORMAT_V1 else None


def open_sealed(data_key: bytes, blob: bytes, aad: bytes) -> bytes:
    """Decrypt a blob made by :func:`seal`; :class:`CryptoError` if it was altered or moved."""
    header = blob[: _HEADER.size]
    nonce = blob[_HEADER.size : _HEADER.size + NONCE_BYTES]
    try:
        return AESGCM(data_key).decrypt(nonce, blob[_HEADER.size + NONCE_BYTES :], header + aad)
    except InvalidTag:
        raise CryptoError("sealed content does not open: wrong key, or altered or moved") from None
