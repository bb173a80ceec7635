"""The LLM relay: assistants in sessions, provider answers streamed live to every participant.

See docs/relay.md. The socket handlers reach the relay through their ``CommandContext``.
"""
