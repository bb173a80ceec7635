"""Semantic search and related sessions by sentence embeddings (the optional ``semantic`` extra).

* ``embedder``: the interface and the bundled all-MiniLM-L6-v2 model, loaded once per process;
* ``vectors``: float32 packing and cosine ranking (NumPy);
* ``store``: what the analysis worker embeds and where vectors are kept (``embeddings``);
* ``indexer``: the worker's step (load, embed in a thread, store);
* ``search``: semantic search and related sessions, within the caller's read scope;
* ``service``: what one process knows (extra installed? setting on? pgvector?).

Nothing here imports NumPy or the model at import time: without the extra the server starts and
answers ``semantic_unavailable`` for semantic search.
"""
