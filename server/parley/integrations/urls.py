"""Which webhook URLs may be called (server-side request forgery care).

Only http(s) URLs with a host are accepted. Unless ``webhook_allow_private`` is set, a URL
whose host is, or resolves to, a loopback, private, link-local, multicast or reserved address
is refused: a tenant admin must not make the server call into its own network. The check runs
when a webhook is saved, again before every delivery (DNS may have changed), and a third time
where it counts, when the delivery client opens its connection (:class:`GuardedBackend`): the
name is resolved once there, the answer checked, and the connection made to a checked address,
so a name that answers a public address to the check and a private one to the connection (DNS
rebinding) reaches nothing. Deliveries through a proxy (``HTTPS_PROXY``) connect to the proxy,
which resolves the name itself; only the earlier checks apply to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpcore
import httpx

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
        addresses = await _addresses(host)
    except OSError as exc:
        raise InvalidRequest(f"url host {host!r} does not resolve: {exc}") from None
    refusal = _private_refusal(host, addresses)
    if refusal is not None:
        raise InvalidRequest(refusal)


def _private_refusal(host: str, addresses: list[str]) -> str | None:
    """Why ``host`` may not be called at ``addresses`` (None: it may)."""
    private = [a for a in addresses if _forbidden(a)]
    if not private:
        return None
    return (
        f"url host {host!r} is or resolves to a private or local address "
        f"({', '.join(private)}); an operator may allow that with PARLEY_WEBHOOK_ALLOW_PRIVATE"
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _addresses(host: str) -> list[str]:
    """The addresses to connect to for ``host`` (itself when it is one)."""
    if _is_ip(host):
        return [host]
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the rule allows: each name is
    resolved once, every answer checked, and the connection opened to an address that was."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_private = allow_private

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 -- httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await _addresses(host)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(
                f"url host {host!r} does not resolve: {exc or 'timed out'}"
            ) from exc
        refusal = None if self._allow_private else _private_refusal(host, addresses)
        if refusal is not None:
            raise httpcore.ConnectError(refusal)
        for address in addresses[:-1]:
            with contextlib.suppress(httpcore.ConnectError, httpcore.ConnectTimeout):
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
        # getaddrinfo answers at least one address or raises; the last one's error is told.
        return await self._inner.connect_tcp(
            addresses[-1], port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 -- httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are delivered over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(*, allow_private: bool) -> httpx.AsyncHTTPTransport:
    """httpx's transport, with its connection pool opening connections through
    :class:`GuardedBackend`."""
    transport = httpx.AsyncHTTPTransport()
    # httpx takes no network backend of its own; its pool (httpcore's) does. Replacing the
    # pool keeps httpx's request handling and error mapping (ConnectError stays ConnectError).
    # The pool gets httpx's default limits, as the transport's own had.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=GuardedBackend(allow_private=allow_private),
    )
    return transport
