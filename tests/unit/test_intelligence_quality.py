"""Floors under the measured quality of the model-like features (docs/intelligence.md has the
numbers): a change that makes them worse fails here. Plus the pure helpers they rest on."""

from __future__ import annotations

from pathlib import Path

import pytest

from parley.intelligence import evaluate, quality, snippets, textquery

DATA = Path(__file__).parent.parent / "data"


def test_labelled_sets_are_big_enough() -> None:
    assert len(evaluate._rows(DATA / "sentiment_labelled.jsonl")) >= 100
    assert len(evaluate._rows(DATA / "intent_labelled.jsonl")) >= 100
    assert len(evaluate._rows(DATA / "nlquery_labelled.jsonl")) >= 60


def test_sentiment_accuracy_floor() -> None:
    assert evaluate.sentiment_accuracy(DATA / "sentiment_labelled.jsonl")["accuracy"] >= 0.90


def test_intent_accuracy_floors() -> None:
    assert evaluate.intent_accuracy(DATA / "intent_labelled.jsonl")["accuracy"] >= 0.95
    assert evaluate.intent_accuracy(DATA / "intent_heldout.jsonl")["accuracy"] >= 0.90


def test_nlquery_exact_match_floors() -> None:
    assert evaluate.nlquery_exact_match(DATA / "nlquery_labelled.jsonl")["exact_match"] >= 0.95
    assert evaluate.nlquery_exact_match(DATA / "nlquery_heldout.jsonl")["exact_match"] >= 0.80


@pytest.mark.timeout(300)  # with the semantic extra, it loads PyTorch and the model
def test_evaluate_prints_every_set(capsys: object) -> None:
    assert evaluate.main(["--data", str(DATA)]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    for name in ("sentiment", "intent_heldout", "nlquery_heldout", "retrieval", "tfidf"):
        assert name in out


def test_snippets_escape_text_and_mark_only_matches() -> None:
    marked = f"a <b>&{snippets.START}budget{snippets.STOP} x {snippets.START}plan"
    out = snippets.render(marked)
    assert out["text"] == "a <b>&budget x plan"
    assert out["html"] == "a &lt;b&gt;&amp;<mark>budget</mark> x <mark>plan</mark>"
    assert [out["text"][s:e] for s, e in out["highlights"]] == ["budget", "plan"]
    assert snippets.render(f"{snippets.STOP}x")["html"] == "x"


def test_text_queries_are_quoted_for_fts5_and_websearch() -> None:
    q = textquery.parse('budget "q3 plan" -draft node.js NEAR(a')
    assert q.required == [["budget"], ["q3", "plan"], ["node", "js"], ["near", "a"]]
    assert q.excluded == [["draft"]]
    assert textquery.to_fts5(q) == (
        '("budget" AND "q3 plan" AND "node js" AND "near a") NOT "draft"'
    )
    assert textquery.to_websearch(q) == 'budget "q3 plan" "node js" "near a" -draft'
    assert textquery.parse("- -- !!").empty


def test_quality_score_formula() -> None:
    best = quality.score(
        mean_sentiment=1.0,
        questions=2,
        answers=2,
        generations=1,
        generations_ok=1,
        sessions=1,
        conversational_sessions=1,
    )
    assert best == {
        "score": 100.0,
        "parts": {"tone": 1.0, "answered": 1.0, "assistant_ok": 1.0, "engagement": 1.0},
    }
    mixed = quality.score(
        mean_sentiment=0.0,
        questions=4,
        answers=1,
        generations=0,
        generations_ok=0,
        sessions=2,
        conversational_sessions=1,
    )
    assert mixed["score"] == round(100 * (0.35 * 0.5 + 0.25 * 0.25 + 0.2 * 1.0 + 0.2 * 0.5), 1)
    assert quality.percentile([], 50) is None
    assert quality.percentile([5.0, 1.0, 3.0], 50) == 3.0
    assert quality.percentile([float(i) for i in range(1, 101)], 99) == 99.0
