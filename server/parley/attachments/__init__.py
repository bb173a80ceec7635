"""Attachments: files and images on messages (docs/graphql-attachments.md).

``sniff`` decides a file's type from its bytes (no I/O), ``images`` makes thumbnails, ``blobs``
stores the bytes (content-addressed, per tenant), ``refs`` links messages to attachments inside
the session service's units of work, ``service`` is what the REST API and GraphQL call.
"""
