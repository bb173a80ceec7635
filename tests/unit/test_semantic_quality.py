"""Floors under the measured retrieval quality of keyword search, TF-IDF and embeddings on
tests/data/semantic_labelled.jsonl (docs/intelligence.md has the numbers), and the vector
helpers semantic search rests on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from parley.intelligence.semantic import embedder, evaluation

DATA = Path(__file__).parent.parent / "data" / "semantic_labelled.jsonl"
# The module's fixture loads PyTorch and the model when the extra is installed.
pytestmark = pytest.mark.timeout(300)
needs_extra = pytest.mark.skipif(
    embedder.missing() is not None, reason=f"the semantic extra: {embedder.missing()}"
)


@pytest.fixture(scope="module")
def measured() -> dict[str, Any]:
    return evaluation.evaluate(DATA, with_semantic=embedder.missing() is None)


def test_the_set_has_enough_queries_and_true_paraphrases(measured: dict[str, Any]) -> None:
    assert measured["n"] >= 30
    assert measured["n_no_shared_words"] >= 10
    assert measured["sessions"] >= 12


def test_keyword_and_tfidf_floors(measured: dict[str, Any]) -> None:
    assert measured["tfidf"]["all"]["mrr"] >= 0.55
    # Neither can find a text that shares no word with the query: that is what embeddings add.
    assert measured["keyword"]["no_shared_words"]["recall@5"] == 0.0
    assert measured["tfidf"]["no_shared_words"]["recall@5"] == 0.0


@needs_extra
def test_semantic_floors(measured: dict[str, Any]) -> None:
    semantic = measured["semantic"]
    assert semantic["all"]["recall@3"] >= 0.90
    assert semantic["all"]["mrr"] >= 0.85
    assert semantic["no_shared_words"]["recall@3"] >= 0.85
    assert semantic["no_shared_words"]["mrr"] >= 0.75
    assert semantic["all"]["mrr"] > measured["tfidf"]["all"]["mrr"]


@needs_extra
def test_vectors_pack_rank_and_average() -> None:
    import numpy as np

    from parley.intelligence.semantic import vectors

    a = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    b = np.array([0.6, 0.8, 0.0], dtype=np.float32)
    c = np.array([0.0, 0.0, 1.0], dtype=np.float32)
    packed = [vectors.pack(v) for v in (c, b, a)]
    assert len(packed[0]) == 12  # float32
    assert np.array_equal(vectors.unpack(packed[1], 3), b)
    with pytest.raises(ValueError, match="not 4"):
        vectors.unpack(packed[0], 4)
    ranked = vectors.top(a, packed, 3, 2)
    assert [i for i, _ in ranked] == [2, 1]
    assert ranked[0][1] == pytest.approx(1.0)
    assert ranked[1][1] == pytest.approx(0.6)
    assert vectors.top(a, [], 3, 5) == []
    mean = vectors.mean([a, c])
    assert mean is not None
    assert float(np.linalg.norm(mean)) == pytest.approx(1.0)
    assert vectors.mean([]) is None
    assert vectors.to_pg(np.array([0.5, -1.0], dtype=np.float32)) == "[0.5,-1]"
