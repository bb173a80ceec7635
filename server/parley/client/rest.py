"""The REST half of the SDK: sessions, messages, participants and presence over ``httpx``."""

from __future__ import annotations

from typing import Any

import httpx

from parley.client.errors import ServerError, error_from
from parley.client.models import Message, Participant, Presence, SendResult, Session, User


class RestClient:
    """``/api/v1`` with the bot's bearer credential (a token or an ``pk_`` API key)."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        """One call; the decoded JSON body, or a typed :class:`ServerError`."""
        response = await self._http.request(method, path, json=json, params=params)
        if response.status_code >= 400:
            try:
                body = response.json().get("error") or {}
            except ValueError:
                body = {}
            if not isinstance(body, dict) or "code" not in body:
                body = {
                    "code": "internal",
                    "message": response.text[:200] or response.reason_phrase,
                }
            raise error_from(body, status=response.status_code)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def me(self) -> User:
        """Who the credential belongs to."""
        return User.from_dict(await self.request("GET", "/me"))

    async def create_session(
        self,
        title: str | None = None,
        *,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Session:
        """A new session, owned by the bot."""
        body: dict[str, Any] = {}
        if title is not None:
            body["title"] = title
        if tags is not None:
            body["tags"] = tags
        if metadata is not None:
            body["metadata"] = metadata
        return Session.from_dict(await self.request("POST", "/sessions", json=body))

    async def list_sessions(
        self, *, status: str | None = None, tag: str | None = None, limit: int = 50
    ) -> list[Session]:
        """The tenant's sessions, newest first (one page of at most ``limit``)."""
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = status
        if tag is not None:
            params["tag"] = tag
        body = await self.request("GET", "/sessions", params=params)
        return [Session.from_dict(item) for item in body["items"]]

    async def get_session(self, session_id: str) -> Session:
        return Session.from_dict(await self.request("GET", f"/sessions/{session_id}"))

    async def post_message(
        self,
        session_id: str,
        text: str = "",
        *,
        parent_id: str | None = None,
        parts: list[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
        client_id: str | None = None,
    ) -> tuple[Message, SendResult]:
        """Post a message; with ``client_id`` a retry is stored once (``duplicate`` is then
        true and the original message is returned)."""
        body: dict[str, Any] = {"text": text}
        for key, value in (
            ("parent_id", parent_id),
            ("parts", parts),
            ("metadata", metadata),
            ("client_id", client_id),
        ):
            if value is not None:
                body[key] = value
        data = await self.request("POST", f"/sessions/{session_id}/messages", json=body)
        message = Message.from_dict(data["message"])
        result = SendResult(session_id, message.id, int(data["seq"]), client_id, data["duplicate"])
        return message, result

    async def list_messages(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        before_seq: int | None = None,
        limit: int = 100,
    ) -> list[Message]:
        """Messages in ``seq`` order: those after ``after_seq`` (and before ``before_seq``)."""
        params: dict[str, Any] = {"after_seq": after_seq, "limit": limit}
        if before_seq is not None:
            params["before_seq"] = before_seq
        body = await self.request("GET", f"/sessions/{session_id}/messages", params=params)
        return [Message.from_dict(item) for item in body["items"]]

    async def participants(self, session_id: str) -> list[Participant]:
        body = await self.request("GET", f"/sessions/{session_id}/participants")
        return [Participant.from_dict(item) for item in body["items"]]

    async def add_participant(
        self, session_id: str, user_id: str, role: str = "editor"
    ) -> Participant:
        body = await self.request(
            "POST", f"/sessions/{session_id}/participants", json={"user_id": user_id, "role": role}
        )
        return Participant.from_dict(body)

    async def presence(self, session_id: str) -> list[Presence]:
        """Who is connected to the session right now, on every server process."""
        body = await self.request("GET", f"/sessions/{session_id}/presence")
        return [Presence.from_dict(item) for item in body["items"]]


__all__ = ["RestClient", "ServerError"]
