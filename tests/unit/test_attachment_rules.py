"""Pure parts of attachments: type sniffing, file names, attachment parts, and how turns with
images become each provider's content blocks."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from parley.attachments.images import fit_for_model
from parley.attachments.refs import attachment_ids
from parley.attachments.sniff import HEAD_BYTES, Sniffer, clean_filename, sniff_binary
from parley.errors import InvalidRequest, UnsupportedMediaType
from parley.relay.assistants import AssistantSpec, Trigger
from parley.relay.context import Turn, accepts_images, build_request, wanted_images
from parley.relay.providers.anthropic import alternate
from parley.relay.providers.base import ChatMessage, ImageInput
from parley.relay.state import BusyPolicy


def sniffed(data: bytes, declared: str | None = None, name: str = "f", step: int = 7) -> str:
    s = Sniffer(declared, name)
    for i in range(0, len(data), step):
        s.feed(data[i : i + step])
    return s.finish()


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n....", "image/png"),
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"GIF89a..", "image/gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"%PDF-1.7", "application/pdf"),
        (b"PK\x03\x04", "application/zip"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),
        (b"hello", None),
    ],
)
def test_magic_numbers(head: bytes, kind: str | None) -> None:
    assert sniff_binary(head) == kind


def test_text_is_checked_to_the_last_byte_across_chunk_boundaries() -> None:
    text = ("é" * HEAD_BYTES).encode()  # two-byte characters split by odd chunk sizes
    assert sniffed(text, "text/plain") == "text/plain"
    with pytest.raises(UnsupportedMediaType):
        sniffed(text + b"\x00tail", "text/plain")
    with pytest.raises(UnsupportedMediaType):
        sniffed(text + b"\xff", "text/plain")
    with pytest.raises(UnsupportedMediaType):
        sniffed(text[:-1], "text/plain")  # ends inside a character


def test_markup_is_refused_whatever_it_is_called() -> None:
    for doc in (b"  <HTML><body>x", b"\xef\xbb\xbf<svg onload=1>", b"<?xml version='1.0'?>"):
        with pytest.raises(UnsupportedMediaType):
            sniffed(doc, "image/png", "cat.png")


def test_text_subtypes_come_from_the_declaration_or_the_extension() -> None:
    assert sniffed(b"a,b", None, "t.CSV") == "text/csv"
    assert sniffed(b"{}", "application/json; charset=utf-8") == "application/json"
    assert sniffed(b"# x", None, "r.md") == "text/markdown"
    assert sniffed(b"words", "image/png", "x.png") == "text/plain"
    with pytest.raises(InvalidRequest):
        sniffed(b"")


def test_file_names_lose_paths_and_control_characters() -> None:
    assert clean_filename("../../etc/passwd") == "passwd"
    assert clean_filename("C:\\Users\\a\\b.txt") == "b.txt"
    assert clean_filename("a\x00b\nc.txt") == "abc.txt"
    assert clean_filename("photo\u202egnp.exe") == "photognp.exe"
    assert clean_filename("..") == "file"
    assert clean_filename(None) == "file"
    assert len(clean_filename("x" * 1000)) == 255


def test_attachment_parts() -> None:
    parts = [
        {"type": "text", "text": "hi"},
        {"type": "attachment", "attachment_id": "a"},
        {"type": "attachment", "attachment_id": "a"},
        {"type": "attachment", "attachment_id": "b"},
    ]
    assert attachment_ids(parts) == ["a", "b"]
    with pytest.raises(InvalidRequest, match=r"parts\.0"):
        attachment_ids([{"type": "attachment"}])
    with pytest.raises(InvalidRequest, match="at most 16"):
        attachment_ids([{"type": "attachment", "attachment_id": str(i)} for i in range(17)])


def test_anthropic_joins_turns_with_images_into_blocks() -> None:
    img = ImageInput("image/png", b"\x89PNG")
    out = alternate(
        [
            ChatMessage("user", "ann: look", (img,)),
            ChatMessage("user", "bob: nice"),
            ChatMessage("assistant", "yes"),
            ChatMessage("user", "ann: and?"),
        ]
    )
    assert out[0]["role"] == "user"
    assert out[0]["content"] == [
        {"type": "text", "text": "ann: look"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw=="},
        },
        {"type": "text", "text": "bob: nice"},
    ]
    assert out[1:] == [
        {"role": "assistant", "content": "yes"},
        {"role": "user", "content": "ann: and?"},
    ]


# -- attachments in prompts ------------------------------------------------------------------


def _spec(provider: str, model: str) -> AssistantSpec:
    return AssistantSpec(
        id="a1",
        tenant_id="t",
        session_id="s",
        name="Sage",
        user_id="assistant.a1",
        provider=provider,
        model=model,
        system_prompt="",
        params={},
        trigger=Trigger.MANUAL,
        busy_policy=BusyPolicy.QUEUE,
        context_window=None,
        max_output_tokens=None,
    )


def _image(n: int, size: int = 10) -> dict[str, Any]:
    return {
        "type": "attachment",
        "name": f"i{n}.png",
        "content_type": "image/png",
        "size": size,
        "sha256": f"{n:064x}",
    }


def test_which_models_take_images() -> None:
    assert accepts_images(_spec("openai", "gpt-4o-mini"))
    assert accepts_images(_spec("anthropic", "claude-sonnet-4-5"))
    assert not accepts_images(_spec("openai", "gpt-3.5-turbo"))
    assert not accepts_images(_spec("openai_compatible", "llava:13b"))
    assert accepts_images(_spec("openai_compatible", "llava:13b"), "llava, qwen2.5vl")
    assert not accepts_images(_spec("scripted", "gpt-4o"), "gpt")


def test_only_the_newest_images_are_sent_and_the_rest_are_named() -> None:
    turns = [
        Turn(f"m{i}", i, "ann", "Ann", None, f"t{i}", False, (_image(i),)) for i in range(1, 11)
    ]
    wanted = wanted_images(turns)
    assert wanted == [(f"{i:064x}", "image/png") for i in range(10, 2, -1)], "the 8 newest"
    built = build_request(
        _spec("openai", "gpt-4o"),
        turns,
        ["Ann"],
        default_window=1_000_000,
        default_max_output=100,
        images={sha: ImageInput(kind, b"png") for sha, kind in wanted},
    )
    messages = built.request.messages
    assert [len(m.images) for m in messages] == [0, 0] + [1] * 8
    assert messages[0].content == "Ann: t1\n[image: i1.png (image/png, 10 bytes)]"
    assert built.estimated_input_tokens > 8 * 1600, "images count in the estimate"


def test_large_images_are_scaled_for_models_and_small_ones_kept() -> None:
    small = io.BytesIO()
    Image.new("RGB", (100, 50), "red").save(small, "PNG")
    assert fit_for_model(
        small.getvalue(), "image/png", max_side=1568, max_bytes=10**6, max_pixels=10**8
    ) == ("image/png", small.getvalue())
    big = io.BytesIO()
    Image.effect_noise((3000, 1500), 60).convert("RGB").save(big, "PNG")
    kind, data = fit_for_model(
        big.getvalue(), "image/png", max_side=1568, max_bytes=len(big.getvalue()), max_pixels=10**8
    ) or ("", b"")
    assert kind == "image/jpeg"
    assert Image.open(io.BytesIO(data)).size == (1568, 784)
    assert (
        fit_for_model(big.getvalue(), "image/png", max_side=1568, max_bytes=100, max_pixels=10**8)
        is None
    )
    assert (
        fit_for_model(big.getvalue(), "image/png", max_side=1568, max_bytes=10**9, max_pixels=10)
        is None
    )
