"""Collaborative session documents: Yjs-compatible CRDTs (pycrdt) for annotations, shared notes
and presence (docs/documents.md).

::

    /yjs/{session} (y-websocket) ─► endpoint.YjsEndpoint ─┐
    /ws doc frames (multiplexed)  ─► mux.Mux ─────────────┤  peers: send() only queues
                                                          ▼
                                   manager.DocManager ── rooms by channel, load before serve,
                                     │       │            group-commit store, broker relay
                                     │       ▼
                                     │   room.Room ── sync, permissions (guard), limits,
                                     │                presence (awareness), annotation changes
                                     ▼
                        store.DocStore (update log + snapshot)   broker: parley:{t}:doc:{s}

Sans-I/O parts: ``yprotocol`` (wire format), ``updates`` (reading Yjs updates), ``schema``
(roots, scopes, views), ``awareness`` (presence table), ``guard`` (write permissions), ``room``.
"""
