"""Which webhook URLs may be called (server-side request forgery care).

Only http(s) URLs with a host are accepted. Unless ``webhook_allow_private`` is set, a URL
whose host is, or resolves to, a loopback, private, link-local, multicast or reserved address
is refused: a tenant admin must not make the server call into its own network. The check runs
when a webhook is saved and again before every delivery (DNS may have changed).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from parley.errors import InvalidRequest

MAX_URL = 2000


def check_shape(url: str) -> str:
    """The URL if it is an absolute http(s) URL with a host; else a precise error."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise InvalidRequest(f"url must be 1-{MAX_URL} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises on a port that is not a number
    except ValueError as exc:
        raise InvalidRequest(f"url is not valid: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest("url must start with http:// or https://")
    if not parts.hostname:
        raise InvalidRequest("url needs a host")
    if parts.username or parts.password:
        raise InvalidRequest("url may not carry credentials; use the signature instead")
    return url


def _forbidden(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


async def check_destination(url: str, *, allow_private: bool) -> None:
    """Refuse URLs that lead to internal addresses unless they are allowed."""
    check_shape(url)
    if allow_private:
        return
    host = urlsplit(url).hostname or ""
    try:
        addresses = [host] if _is_ip(host) else await _resolve(host)
    except OSError as exc:
        raise InvalidRequest(f"url host {host!r} does not resolve: {exc}") from None
    if any(_forbidden(a) for a in addresses):
        raise InvalidRequest(
            f"url host {host!r} is a private or local address; "
            "an operator may allow that with PARLEY_WEBHOOK_ALLOW_PRIVATE"
        )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _resolve(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]
