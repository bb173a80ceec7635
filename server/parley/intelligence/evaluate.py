"""Measure the model-like features on the labelled sets in ``tests/data``:

    python -m parley.intelligence.evaluate [--data tests/data] [--json]

* sentiment: accuracy of the label (positive / negative / neutral) on sentiment_labelled.jsonl;
* intent: accuracy on intent_labelled.jsonl (written with the rules) and intent_heldout.jsonl
  (written after the rules were frozen, never used to change them);
* nlquery: exact-match rate of the parsed filters (every field equal, nothing extra) on
  nlquery_labelled.jsonl and nlquery_heldout.jsonl, with relative dates resolved against
  ``NOW`` for user ``ME``;
* retrieval: recall@k and MRR of keyword search, TF-IDF and (with the ``semantic`` extra)
  embeddings on semantic_labelled.jsonl (``semantic.evaluation``).

The tests in ``tests/unit/test_intelligence_quality.py`` assert floors a little under these.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from parley.intelligence import intent, nlquery, sentiment
from parley.intelligence.semantic import embedder, evaluation

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # a Wednesday
ME = "alice"


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sentiment_accuracy(path: Path) -> dict[str, Any]:
    rows = _rows(path)
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for r in rows:
        totals[r["label"]] += 1
        hits[r["label"]] += sentiment.score(r["text"]).label == r["label"]
    return {
        "n": len(rows),
        "accuracy": round(sum(hits.values()) / len(rows), 4),
        "per_label": {k: round(hits[k] / totals[k], 4) for k in sorted(totals)},
    }


def intent_accuracy(path: Path) -> dict[str, Any]:
    rows = _rows(path)
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for r in rows:
        totals[r["label"]] += 1
        hits[r["label"]] += intent.classify(r["text"], r.get("previous")) == r["label"]
    return {
        "n": len(rows),
        "accuracy": round(sum(hits.values()) / len(rows), 4),
        "per_label": {k: round(hits[k] / totals[k], 4) for k in sorted(totals)},
    }


def nlquery_exact_match(path: Path) -> dict[str, Any]:
    rows = _rows(path)
    exact = 0
    fields: Counter[str] = Counter()
    field_hits: Counter[str] = Counter()
    misses = []
    for r in rows:
        got = nlquery.parse(r["text"], now=NOW, me=ME).query()
        want = r["expected"]
        exact += got == want
        for key in set(got) | set(want):
            fields[key] += 1
            field_hits[key] += got.get(key) == want.get(key)
        if got != want:
            misses.append({"text": r["text"], "got": got, "expected": want})
    return {
        "n": len(rows),
        "exact_match": round(exact / len(rows), 4),
        "per_field": {k: round(field_hits[k] / fields[k], 4) for k in sorted(fields)},
        "misses": misses,
    }


def evaluate(data: Path) -> dict[str, Any]:
    """Every measurement, keyed by set."""
    return {
        "sentiment": sentiment_accuracy(data / "sentiment_labelled.jsonl"),
        "intent": intent_accuracy(data / "intent_labelled.jsonl"),
        "intent_heldout": intent_accuracy(data / "intent_heldout.jsonl"),
        "nlquery": nlquery_exact_match(data / "nlquery_labelled.jsonl"),
        "nlquery_heldout": nlquery_exact_match(data / "nlquery_heldout.jsonl"),
        "retrieval": evaluation.evaluate(
            data / "semantic_labelled.jsonl", with_semantic=embedder.missing() is None
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("tests/data"))
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    args = parser.parse_args(argv)
    result = evaluate(args.data)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    retrieval = result.pop("retrieval")
    for name, r in result.items():
        score = r.get("accuracy", r.get("exact_match"))
        metric = "accuracy" if "accuracy" in r else "exact match"
        print(f"{name:16} n={r['n']:4}  {metric} {score:.3f}")
        for key, value in (r.get("per_label") or r.get("per_field") or {}).items():
            print(f"{'':18}{key:14} {value:.3f}")
    print(
        f"retrieval        n={retrieval['n']:4}  ({retrieval['n_no_shared_words']} share no word"
        f" with their sessions; {retrieval['sessions']} sessions)"
    )
    for method in ("keyword", "tfidf", "semantic"):
        for subset in ("all", "no_shared_words"):
            if method in retrieval:
                r = retrieval[method][subset]
                cells = "  ".join(f"{k} {v:.3f}" for k, v in r.items() if k != "misses")
                print(f"{'':18}{method:9}{subset:16} {cells}")
    if "semantic" not in retrieval:
        print(f"{'':18}semantic: not measured ({embedder.missing()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
