"""The Python bot SDK: an async client for bot participants (docs/bot-sdk.md).

::

    from parley.client import ParleyClient

    async with ParleyClient("http://127.0.0.1:8000", token) as bot:
        @bot.on_message
        async def echo(message, ctx):
            await ctx.reply(message.text)

        await bot.join(session_id)
        await bot.run_forever()
"""

from parley.client.backoff import Backoff
from parley.client.bot import ParleyClient
from parley.client.context import MessageContext, StreamReply
from parley.client.errors import (
    ClientClosed,
    ClientError,
    Conflict,
    ConnectionLost,
    Forbidden,
    InvalidRequest,
    NotFound,
    ProtocolViolation,
    RateLimited,
    ServerError,
    StreamStopped,
    Unauthenticated,
)
from parley.client.models import (
    Event,
    JoinResult,
    Message,
    Participant,
    Presence,
    SendResult,
    Session,
    User,
)
from parley.client.rest import RestClient

__all__ = [
    "Backoff",
    "ClientClosed",
    "ClientError",
    "Conflict",
    "ConnectionLost",
    "Event",
    "Forbidden",
    "InvalidRequest",
    "JoinResult",
    "Message",
    "MessageContext",
    "NotFound",
    "ParleyClient",
    "Participant",
    "Presence",
    "ProtocolViolation",
    "RateLimited",
    "RestClient",
    "SendResult",
    "ServerError",
    "Session",
    "StreamReply",
    "StreamStopped",
    "Unauthenticated",
    "User",
]
