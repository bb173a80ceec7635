"""Integrations: webhooks, live event feeds, automation rules (docs/integrations.md)."""
