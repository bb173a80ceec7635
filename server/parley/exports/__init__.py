"""Exports: a session as schema-versioned JSON (``session_json``) or Markdown (``markdown``),
read by ``exporter``; a whole tenant as a streamed zip archive (``archive``)."""
