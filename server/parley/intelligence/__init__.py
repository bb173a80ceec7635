"""Conversation intelligence: search, natural-language queries, summaries, titles, keywords,
tag suggestions, sentiment, intent, related sessions and analytics (docs/intelligence.md).

Sans-I/O modules (pure functions of text): ``textquery``, ``snippets``, ``sentiment``,
``intent``, ``keywords``, ``tfidf``, ``summary``, ``nlquery``, ``quality``.
I/O modules: ``search`` (one index per database behind one interface), ``jobs`` (the durable
analysis queue and its worker), ``analysis`` (what a job computes and stores), ``summaries``,
``analytics``, ``llm`` (the optional provider), ``access`` (what a caller may read).
"""
