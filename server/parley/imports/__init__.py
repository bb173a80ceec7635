"""Imports from other chat tools: one sans-I/O parser per format (``formats/``) yielding
:class:`~parley.imports.model.ImportedConversation` records, and one importer that writes them
(``importer.py``), idempotently, keyed by (source, external id)."""
