"""The GraphQL read API at ``/api/graphql`` (docs/graphql-attachments.md).

``context`` holds a request's principal and batch loaders, ``types`` the schema's object types,
``schema`` the root query and the schema with its limits, ``limits`` the cost rule, ``endpoint``
the HTTP handler. Every resolver reads through the same services as REST.
"""
