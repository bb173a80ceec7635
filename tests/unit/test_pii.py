"""The PII detector, its validators, redaction, the modes, and the floor on the labelled set."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from parley.governance.pii import Detector, PiiType, redact
from parley.governance.pii import validators as v
from parley.governance.pii.evaluate import evaluate
from parley.governance.pii.policy import ContentPolicy
from parley.governance.policies import PiiMode

LABELLED = Path(__file__).parents[1] / "data" / "pii_labelled.jsonl"
detector = Detector()


def types_in(text: str) -> list[str]:
    return [f.type.value for f in detector.find(text)]


def test_luhn_and_card_rules() -> None:
    assert v.luhn_valid("4111111111111111")
    assert not v.luhn_valid("4111111111111112")
    assert v.card_valid("4111 1111 1111 1111")
    assert not v.card_valid("1234 5678 9012 3452")  # no card network starts with 1
    assert not v.card_valid("9111111111111111")  # no network starts with 9


def test_iban_mod97_and_country_length() -> None:
    assert v.iban_valid("DE89 3704 0044 0532 0130 00")
    assert v.iban_valid("GB82WEST12345698765432")
    assert not v.iban_valid("DE89 3704 0044 0532 0130 01")  # check digits fail
    assert not v.iban_valid("DE89 3704 0044 0532 0130")  # German IBANs have 22 characters
    assert not v.iban_valid("XX89 3704 0044 0532 0130 00")


def test_national_id_structure() -> None:
    assert v.us_ssn_valid("536-22-8741")
    for never_issued in ("000-12-3456", "666-12-3456", "912-12-3456", "536-00-8741"):
        assert not v.us_ssn_valid(never_issued)
    assert v.uk_nino_valid("AB 12 34 56 C")
    assert not v.uk_nino_valid("GB 12 34 56 C")  # reserved prefix
    assert v.ca_sin_valid("130 692 544")
    assert not v.ca_sin_valid("130 692 545")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail ann@example.org now", ["EMAIL"]),
        ("call +44 20 7946 0958", ["PHONE"]),
        ("card 4111 1111 1111 1111", ["CARD"]),
        ("iban DE89 3704 0044 0532 0130 00", ["IBAN"]),
        ("ssn 536-22-8741", ["NATIONAL_ID"]),
        ("from 203.0.113.7 and 2001:db8::1", ["IP", "IP"]),
        ("key AKIAIOSFODNN7EXAMPLE", ["SECRET"]),
        ("token: ghp_16C7e42F292c6912E7710c838347Ae178B4a", ["SECRET"]),
        ("Order #4155552671 shipped", []),
        ("deploy v2.14.1 then version 1.2.3.4", []),
        ("id 550e8400-e29b-41d4-a716-446655440000", []),
        ("card 4111 1111 1111 1112 (typo)", []),
        ("meet at 12:30:45 on 2024-03-15", []),
    ],
)
def test_detects_each_type_and_skips_lookalikes(text: str, expected: list[str]) -> None:
    assert types_in(text) == expected


def test_redaction_replaces_each_span_with_its_typed_placeholder() -> None:
    text = "Ann (ann@example.org, +44 20 7946 0958) paid with 4111 1111 1111 1111."
    assert redact(text, detector.find(text)) == "Ann ([EMAIL], [PHONE]) paid with [CARD]."


def test_overlaps_resolve_to_one_finding() -> None:
    # The digits of a card also look like a phone number; the card wins.
    findings = detector.find("4111111111111111")
    assert [f.type for f in findings] == [PiiType.CARD]


def test_modes_on_text_parts_and_metadata() -> None:
    policy = ContentPolicy(detector)
    text, parts = "write to ann@example.org", [{"type": "note", "body": "ip 10.0.0.1"}]
    meta = {"pii": "forged", "topic": "x"}
    off = policy.prepare(PiiMode.OFF, text, parts, meta)
    assert (off.text, off.parts, off.metadata) == (text, parts, meta)
    flag = policy.prepare(PiiMode.FLAG, text, parts, meta)
    assert flag.text == text
    assert flag.parts == parts
    assert flag.metadata == {
        "topic": "x",
        "pii": {"types": ["EMAIL", "IP"], "count": 2, "redacted": False},
    }
    red = policy.prepare(PiiMode.REDACT, text, parts, None)
    assert red.text == "write to [EMAIL]"
    assert red.parts == [{"type": "note", "body": "ip [IP]"}]
    assert red.metadata == {"pii": {"types": ["EMAIL", "IP"], "count": 2, "redacted": True}}
    llm_only = policy.prepare(PiiMode.REDACT_LLM, text, parts, None)
    assert llm_only.text == text


def test_labelled_set_is_large_and_covers_every_type() -> None:
    lines = LABELLED.read_text().splitlines()
    assert len(lines) >= 150
    scores, _ = evaluate(LABELLED)
    for kind in PiiType:
        assert scores[kind.value].true_positives + scores[kind.value].false_negatives >= 10


def test_precision_and_recall_floor_per_type() -> None:
    scores, mistakes = evaluate(LABELLED)
    for kind, score in scores.items():
        assert score.precision >= 0.9, (kind, score, mistakes)
        assert score.recall >= 0.9, (kind, score, mistakes)


def test_evaluate_script_prints_a_table() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "parley.governance.pii.evaluate", str(LABELLED)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.splitlines()[0].split() == ["type", "labelled", "found", "precision", "recall"]
    assert any(line.startswith("IBAN") for line in out.splitlines())
