"""Echo bot: answers every message in its sessions with the same text.

    python examples/echo_bot.py --url http://127.0.0.1:8000 --token TOKEN --session SESSION_ID

With ``--stream`` the echo is streamed word by word, the way an LLM's answer arrives. Get a
token with ``parley token create --user echo --kind bot`` (or use an API key, ``pk_...``).
Stop it with Ctrl-C: it finishes the message it is answering, then leaves.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from parley.client import Message, MessageContext, ParleyClient


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A Parley bot that echoes every message.")
    parser.add_argument(
        "--url", default=os.environ.get("PARLEY_URL", "http://127.0.0.1:8000"), help="server URL"
    )
    parser.add_argument(
        "--token", default=os.environ.get("PARLEY_TOKEN"), help="token or API key ($PARLEY_TOKEN)"
    )
    parser.add_argument(
        "--session", action="append", required=True, help="session id to join (repeatable)"
    )
    parser.add_argument("--stream", action="store_true", help="stream the echo word by word")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("--token (or PARLEY_TOKEN) is required")
    return args


async def main(args: argparse.Namespace) -> None:
    async with ParleyClient(args.url, args.token) as bot:

        @bot.on_message
        async def echo(message: Message, ctx: MessageContext) -> None:
            if not args.stream:
                await ctx.reply(f"echo: {message.text}")
                return
            async with ctx.stream_reply() as stream:
                await stream.write("echo:")
                for word in message.text.split(" "):
                    await stream.write(" " + word)
                    await asyncio.sleep(0.05)

        for session_id in args.session:
            await bot.join(session_id)
            print(f"joined {session_id}", flush=True)
        await bot.run_forever(stop_on_signals=True)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
