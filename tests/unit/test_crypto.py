"""Envelope encryption primitives: sealing, binding to the row, wrapping data keys."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from parley.cli import main
from parley.config import Settings
from parley.governance.crypto import master_key
from parley.governance.crypto.envelope import (
    CryptoError,
    MasterKey,
    key_version,
    new_data_key,
    open_sealed,
    seal,
)


def test_seal_round_trip_with_fresh_nonces_and_a_versioned_header() -> None:
    key = new_data_key()
    a = seal(key, 7, b"hello", b"msg|acme|1|text")
    b = seal(key, 7, b"hello", b"msg|acme|1|text")
    assert a != b  # a fresh nonce every time
    assert a[:5] == b"\x00\xffPK\x01"
    assert key_version(a) == 7
    assert open_sealed(key, a, b"msg|acme|1|text") == b"hello"
    assert b"hello" not in a


def test_sealed_content_is_bound_to_its_row_key_and_bytes() -> None:
    key = new_data_key()
    blob = seal(key, 1, b"secret", b"msg|acme|1|text")
    with pytest.raises(CryptoError):
        open_sealed(key, blob, b"msg|acme|2|text")  # moved to another row
    with pytest.raises(CryptoError):
        open_sealed(key, blob, b"msg|globex|1|text")  # moved to another tenant
    with pytest.raises(CryptoError):
        open_sealed(new_data_key(), blob, b"msg|acme|1|text")  # another key
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(CryptoError):
        open_sealed(key, bytes(tampered), b"msg|acme|1|text")
    header_swapped = blob[:5] + (2).to_bytes(4, "big") + blob[9:]
    with pytest.raises(CryptoError):
        open_sealed(key, header_swapped, b"msg|acme|1|text")  # the header is authenticated


def test_plaintext_is_not_mistaken_for_a_blob() -> None:
    assert key_version(b"") is None
    assert key_version(b"\x00\x01\x02") is None
    assert key_version(b"\x01" + os.urandom(40)) is None  # a Yjs update of one client
    assert key_version(b"\x00\xffPK\x02" + os.urandom(40)) is None  # an unknown format


def test_master_key_wraps_data_keys_for_one_tenant_and_version() -> None:
    master = MasterKey(os.urandom(32))
    data_key = new_data_key()
    wrapped = master.wrap("acme", 1, data_key)
    assert data_key not in wrapped
    assert master.unwrap("acme", 1, wrapped) == data_key
    with pytest.raises(CryptoError):
        master.unwrap("globex", 1, wrapped)
    with pytest.raises(CryptoError):
        master.unwrap("acme", 2, wrapped)
    with pytest.raises(CryptoError):
        MasterKey(os.urandom(32)).unwrap("acme", 1, wrapped)
    assert master.id != MasterKey(os.urandom(32)).id
    assert len(master.id) == 16


def test_master_key_from_base64_checks_its_length() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        MasterKey.from_base64("c2hvcnQ=")
    with pytest.raises(ValueError, match="base64"):
        MasterKey.from_base64("not base64!")


def test_master_key_comes_from_the_setting_or_the_data_folder(tmp_path: Path) -> None:
    assert master_key(Settings(data_dir=tmp_path)) is None  # encryption off
    generated = CliRunner().invoke(main, ["keys", "generate"])
    assert generated.exit_code == 0
    key = generated.output.strip()
    assert len(base64.b64decode(key)) == 32
    (tmp_path / "master.key").write_text(key + "\n")
    from_file = master_key(Settings(data_dir=tmp_path))
    assert from_file is not None
    assert from_file.key == base64.b64decode(key)
    other = base64.b64encode(os.urandom(32)).decode()
    from_env = master_key(Settings(data_dir=tmp_path, master_key=other))  # type: ignore[arg-type]
    assert from_env is not None
    assert from_env.key == base64.b64decode(other)


def test_keys_rotate_needs_something_to_do() -> None:
    result = CliRunner().invoke(main, ["keys", "rotate"])
    assert result.exit_code == 2
    assert "nothing to do" in result.output
