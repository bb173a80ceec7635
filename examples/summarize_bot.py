"""Summarizer bot: when asked ("@summarizer summarize"), it summarizes the session's recent
messages.

    python examples/summarize_bot.py --url http://127.0.0.1:8000 --token TOKEN --session ID

The summary is extractive and works offline: it picks the sentences whose words are the most
frequent in the conversation (common words aside) and quotes them in their original order.
With ``--assistant NAME`` it asks that assistant of the session instead (docs/relay.md), whose
answer streams into the session for everyone.

The bot answers messages that mention it by its user id or display name (``@summarizer``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
from collections import Counter
from collections.abc import Sequence

from parley.client import Message, MessageContext, ParleyClient

_STOP_WORDS = """a about after again all also am an and any are as at be because been before
    being but
    by can could did do does doing for from had has have having he her here hers him his how i
    if in into is it its just me more most my no nor not now of off on once only or other our
    out over own same she should so some such than that the their them then there these they
    this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours ok okay yes yeah"""
STOP_WORDS = frozenset(_STOP_WORDS.split())
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def sentences_of(text: str) -> list[str]:
    """The sentences of a message (split after . ! ? and at line breaks)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def content_words(sentence: str) -> list[str]:
    return [w for w in (m.lower() for m in _WORD.findall(sentence)) if w not in STOP_WORDS]


def summarize(texts: Sequence[str], max_sentences: int = 3) -> list[str]:
    """The ``max_sentences`` most informative sentences of ``texts``, in their original order.

    A word's weight is its frequency in the whole conversation relative to the most frequent
    word; a sentence's score is the mean weight of its content words, with a small bonus for
    sentences of several content words so that one-word exclamations do not win. Repeated
    sentences count once.
    """
    candidates: list[str] = []
    for text in texts:
        for sentence in sentences_of(text):
            if sentence not in candidates and content_words(sentence):
                candidates.append(sentence)
    frequency = Counter(w for s in candidates for w in content_words(s))
    if not frequency:
        return []
    top = max(frequency.values())

    def score(sentence: str) -> float:
        words = content_words(sentence)
        mean = sum(frequency[w] / top for w in words) / len(words)
        return mean * min(1.0, len(words) / 4)

    ranked = sorted(range(len(candidates)), key=lambda i: (-score(candidates[i]), i))
    return [candidates[i] for i in sorted(ranked[:max_sentences])]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="A Parley bot that summarizes the session when asked (@name summarize)."
    )
    parser.add_argument(
        "--url", default=os.environ.get("PARLEY_URL", "http://127.0.0.1:8000"), help="server URL"
    )
    parser.add_argument(
        "--token", default=os.environ.get("PARLEY_TOKEN"), help="token or API key ($PARLEY_TOKEN)"
    )
    parser.add_argument(
        "--session", action="append", required=True, help="session id to join (repeatable)"
    )
    parser.add_argument("--window", type=int, default=50, help="how many recent messages to read")
    parser.add_argument("--sentences", type=int, default=3, help="sentences in a summary")
    parser.add_argument("--assistant", help="ask this assistant of the session to summarize")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("--token (or PARLEY_TOKEN) is required")
    return args


async def main(args: argparse.Namespace) -> None:
    async with ParleyClient(args.url, args.token) as bot:

        @bot.on_message(mentioned=True)
        async def on_request(message: Message, ctx: MessageContext) -> None:
            if "summar" not in ctx.text.lower():
                await ctx.reply("Ask me to summarize: @" + bot.names[0] + " summarize")
                return
            if args.assistant:
                await bot.ask(
                    ctx.session_id,
                    args.assistant,
                    text="Summarize this conversation in a few sentences.",
                )
                return
            async with ctx.typing():
                history = await bot.history(ctx.session_id, limit=args.window)
                texts = [
                    m.text
                    for m in history
                    if m.seq < message.seq and m.author not in bot.names and not m.deleted_at
                ]
                picked = summarize(texts, args.sentences)
            if not picked:
                await ctx.reply("There is nothing to summarize yet.")
                return
            lines = [f"Summary of the last {len(texts)} messages:"]
            lines += [f"• {sentence}" for sentence in picked]
            await ctx.reply("\n".join(lines))

        for session_id in args.session:
            await bot.join(session_id)
            print(f"joined {session_id}", flush=True)
        await bot.run_forever(stop_on_signals=True)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
