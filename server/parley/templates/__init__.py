"""Session templates: a definition (``model``), rendering with variables (``render``, no I/O),
the built-in library (``builtin/*.json``) and tenant templates with instantiation
(``library``)."""
