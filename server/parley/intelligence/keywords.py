"""Keywords, topics and tag suggestions of a session, each with the words that explain it.

* Terms: content words and two-word phrases (adjacent content words in one sentence).
* Keywords: terms ranked by TF-IDF, where a term's document frequency is the number of the
  tenant's other analysed sessions that use it, so words every session uses sink.
* Topics: a small built-in lexicon of topics (below); a topic is found when at least two of its
  words occur, and is explained by them.
* Tag suggestions: a tag the tenant already uses whose name (or stem) is among the session's
  terms, or a found topic; explained by the matching words. Tags the session has, or that were
  rejected for it, are never suggested.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from parley.intelligence.text import content_words, sentences, stem

MAX_TERMS = 200

TOPICS: dict[str, frozenset[str]] = {
    name: frozenset(words.split())
    for name, words in {
        "ai": "ai llm llms gpt model models neural embedding embeddings prompt prompts"
        " training inference ml machine-learning chatbot transformer openai anthropic claude",
        "billing": "invoice invoices billing payment payments refund refunds price pricing"
        " subscription subscriptions charge charged card plan plans",
        "bug": "bug bugs error errors crash crashes crashed broken exception stacktrace"
        " regression fix fixed failing fails failure",
        "deployment": "deploy deployed deployment deployments release releases staging"
        " production rollout rollback kubernetes docker pipeline ci",
        "database": "database databases postgresql postgres sqlite sql query queries index"
        " migration migrations schema table tables",
        "performance": "latency slow slower performance throughput p99 p50 benchmark cpu"
        " memory timeout timeouts faster",
        "security": "security password passwords token tokens auth authentication"
        " vulnerability cve encryption permission permissions leak",
        "hiring": "hiring hire interview interviews candidate candidates recruiter offer"
        " onboarding resume",
        "meeting": "meeting meetings agenda standup retro call calendar schedule sync minutes",
        "design": "design designs mockup mockups ui ux figma layout wireframe wireframes",
        "customer": "customer customers client clients support ticket tickets complaint"
        " complaints feedback churn",
        "budget": "budget budgets cost costs spend spending forecast quarter revenue expense"
        " expenses",
    }.items()
}


def term_counts(texts: Iterable[str]) -> Counter[str]:
    """Content words and two-word phrases of ``texts`` with their counts."""
    counts: Counter[str] = Counter()
    for text in texts:
        for sentence in sentences(text):
            ws = content_words(sentence)
            counts.update(ws)
            counts.update(f"{a} {b}" for a, b in itertools.pairwise(ws) if a != b)
    return counts


def top_terms(counts: Counter[str], limit: int = MAX_TERMS) -> dict[str, int]:
    """What is stored per session (for keywords, related sessions and document frequencies):
    the most frequent terms; phrases only when they occur more than once."""
    kept = [(t, c) for t, c in counts.most_common() if " " not in t or c > 1]
    return dict(kept[:limit])


def keywords(
    counts: Mapping[str, int], df: Mapping[str, int], n_docs: int, k: int = 10
) -> list[dict[str, Any]]:
    """The ``k`` best terms by TF-IDF (``df``: sessions using each term among ``n_docs``)."""
    scored = []
    for term, tf in counts.items():
        idf = math.log((1 + n_docs) / (1 + df.get(term, 0))) + 1.0
        weight = (1.0 + math.log(tf)) * idf * (1.3 if " " in term else 1.0)
        scored.append((weight, tf, term))
    scored.sort(key=lambda x: (-x[0], -x[1], x[2]))
    out: list[dict[str, Any]] = []
    for weight, tf, term in scored:
        # A word already covered by a better phrase adds nothing.
        if any(term in kw["term"].split() for kw in out):
            continue
        out.append({"term": term, "score": round(weight, 4), "count": tf})
        if len(out) == k:
            break
    return out


def topics(counts: Mapping[str, int]) -> list[dict[str, Any]]:
    """Topics of the built-in lexicon with at least two of their words present."""
    out: list[dict[str, Any]] = []
    for name, vocab in TOPICS.items():
        found = {w: c for w, c in counts.items() if " " not in w and w in vocab}
        if len(found) >= 2:
            words = sorted(found, key=lambda w: (-found[w], w))
            out.append({"topic": name, "score": sum(found.values()), "words": words[:8]})
    out.sort(key=lambda t: (-t["score"], t["topic"]))
    return out


def suggest_tags(
    counts: Mapping[str, int],
    found_topics: list[dict[str, Any]],
    tenant_tags: Iterable[str],
    *,
    exclude: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Suggested tags with a score and the words that explain each."""
    skip = set(exclude)
    by_stem: dict[str, list[str]] = {}
    for term in counts:
        if " " not in term:
            by_stem.setdefault(stem(term), []).append(term)
    out: dict[str, dict[str, Any]] = {}
    for tag in tenant_tags:
        if tag in skip:
            continue
        words = by_stem.get(stem(tag.replace("-", " ").split()[-1] if tag else tag), [])
        if tag in counts and tag not in words:
            words = [tag, *words]
        if words:
            out[tag] = {
                "tag": tag,
                "score": float(sum(counts.get(w, 0) for w in words)),
                "words": sorted(words),
                "source": "tenant_tag",
            }
    for t in found_topics:
        if t["topic"] in skip or t["topic"] in out:
            continue
        out[t["topic"]] = {
            "tag": t["topic"],
            "score": float(t["score"]),
            "words": t["words"],
            "source": "topic",
        }
    return sorted(out.values(), key=lambda s: (-s["score"], s["tag"]))
