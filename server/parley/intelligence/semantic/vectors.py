"""Vectors as stored (float32, little-endian bytes) and brute-force cosine ranking in NumPy.

Vectors are unit length, so the cosine is a dot product. Ranking ``n`` candidates of 384
dimensions is one matrix-vector product: about 1.5 KB read and a few hundred nanoseconds of
arithmetic per candidate, so tens of thousands of candidates per query are cheap; reading them
from the database is what costs (see docs/intelligence.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]


def pack(v: Vector) -> bytes:
    return np.asarray(v, dtype="<f4").tobytes()


def unpack(b: bytes, dims: int) -> Vector:
    v = np.frombuffer(b, dtype="<f4")
    if v.shape != (dims,):
        raise ValueError(f"a stored vector has {v.shape[0]} values, not {dims}")
    return v.astype(np.float32)


def mean(rows: Sequence[Vector]) -> Vector | None:
    """The unit-length mean of ``rows`` (a session's vector), or None when there are none."""
    if not rows:
        return None
    m = np.mean(np.stack(rows), axis=0)
    norm = float(np.linalg.norm(m))
    if norm == 0.0:
        return None
    out: Vector = (m / norm).astype(np.float32)
    return out


def top(query: Vector, candidates: Sequence[bytes], dims: int, k: int) -> list[tuple[int, float]]:
    """The ``k`` best ``(index, cosine)`` among packed ``candidates``, best first (ties: index)."""
    if not candidates or k <= 0:
        return []
    matrix = np.frombuffer(b"".join(candidates), dtype="<f4").reshape(len(candidates), dims)
    scores = matrix @ query.astype("<f4")
    k = min(k, len(candidates))
    best = np.argpartition(-scores, k - 1)[:k]
    order = sorted(best.tolist(), key=lambda i: (-float(scores[i]), i))
    return [(i, float(scores[i])) for i in order]


def to_pg(v: Vector) -> str:
    """pgvector's text form, ``[x,y,...]``."""
    return "[" + ",".join(f"{x:.7g}" for x in v.tolist()) + "]"
