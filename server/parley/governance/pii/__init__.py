"""PII and secret detection and redaction (sans-I/O), and the per-tenant policy that applies it.

``Detector().find(text)`` returns typed findings; ``redact(text, findings)`` replaces each with
a placeholder such as ``[EMAIL]``. docs/privacy.md lists the types and the measured precision
and recall (``python -m parley.governance.pii.evaluate tests/data/pii_labelled.jsonl``).
"""

from parley.governance.pii.detector import Detector, Finding, PiiType, redact

__all__ = ["Detector", "Finding", "PiiType", "redact"]
