"""The domain: sessions, messages, branches and participants."""
