"""The hub: connections, per-session feeds, and fan-out through the broker."""
