"""Parley: shared conversation sessions between people, bots and LLMs."""

__version__ = "0.1.0"
