"""Precision and recall of the detector per type on a labelled JSON-lines file.

Each line: ``{"text": "...", "pii": [{"type": "EMAIL", "value": "ann@example.org"}, ...]}``.
A finding counts as correct when its type and its exact text match a labelled span of the line
(each labelled span matches at most once). Run::

    python -m parley.governance.pii.evaluate tests/data/pii_labelled.jsonl
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import orjson

from parley.governance.pii.detector import Detector, PiiType


@dataclass(slots=True)
class Score:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        labelled = self.true_positives + self.false_negatives
        return self.true_positives / labelled if labelled else 1.0


@dataclass(slots=True)
class Mistake:
    line: int
    kind: str  # "false positive" | "missed"
    type: str
    value: str


def evaluate(
    path: Path, detector: Detector | None = None
) -> tuple[dict[str, Score], list[Mistake]]:
    """Scores per type (and ``ALL``) and the list of mistakes, line by line."""
    detector = detector or Detector()
    scores = {t.value: Score() for t in PiiType}
    mistakes: list[Mistake] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        item = orjson.loads(raw)
        gold = Counter((span["type"], span["value"]) for span in item["pii"])
        found = Counter((f.type.value, f.value) for f in detector.find(item["text"]))
        for kind, value in found | gold:
            hits = min(found[(kind, value)], gold[(kind, value)])
            extra = found[(kind, value)] - hits
            missed = gold[(kind, value)] - hits
            score = scores[kind]
            score.true_positives += hits
            score.false_positives += extra
            score.false_negatives += missed
            mistakes += [Mistake(number, "false positive", kind, value)] * extra
            mistakes += [Mistake(number, "missed", kind, value)] * missed
    total = Score(
        sum(s.true_positives for s in scores.values()),
        sum(s.false_positives for s in scores.values()),
        sum(s.false_negatives for s in scores.values()),
    )
    return {**scores, "ALL": total}, mistakes


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m parley.governance.pii.evaluate LABELLED.jsonl", file=sys.stderr)
        return 2
    scores, mistakes = evaluate(Path(argv[0]))
    print(f"{'type':<12} {'labelled':>8} {'found':>6} {'precision':>9} {'recall':>7}")
    for kind, s in scores.items():
        labelled = s.true_positives + s.false_negatives
        found = s.true_positives + s.false_positives
        print(f"{kind:<12} {labelled:>8} {found:>6} {s.precision:>9.3f} {s.recall:>7.3f}")
    for m in mistakes:
        print(f"line {m.line}: {m.kind} {m.type} {m.value!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
