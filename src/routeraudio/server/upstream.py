"""Open the provider's WebSocket from an adapter's ``UpstreamRequest``.

Direct TCP (and TLS for wss) to the URL's host: proxy environment variables are never consulted and
an HTTP redirect is a refusal, never followed, so a provider key cannot be carried to another host.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Callable

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from ..errors import UpstreamConnectError
from ..providers.base import UpstreamRequest
from .wsio import WsEndpoint, redact, redacting_logger

logger = redacting_logger("routeraudio.upstream")
_ssl_context: ssl.SSLContext | None = None


def _tls() -> ssl.SSLContext:
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = ssl.create_default_context()
    return _ssl_context


class UpstreamConnection(WsEndpoint):
    """One provider socket. The session sets the ``on_*`` callables."""

    masks = True

    def __init__(self, request: UpstreamRequest, provider: str, max_message: int = 16 * 2**20) -> None:
        super().__init__()
        self.request = request
        self.provider = provider
        self.max_message = max_message
        uri = parse_uri(request.url)
        self.uri = uri
        self.ws = ClientProtocol(
            uri, subprotocols=[Subprotocol(s) for s in request.subprotocols] or None,
            max_size=max_message, logger=logger)
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.message_cb: Callable[[str | bytes], None] = lambda data: None
        self.closed_cb: Callable[[int, str], None] = lambda code, reason: None
        self.writable_cb: Callable[[bool], None] = lambda ok: None
        self.pong_cb: Callable[[bytes], None] = lambda data: None
        # Frames and the close that arrive before the session attaches (a provider may greet, or
        # refuse, in the same TCP read as its 101 response); replayed in order by attach().
        self._early: list[tuple] | None = []

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=256 * 1024)
        req = self.ws.connect()
        req.headers["User-Agent"] = "routeraudio"
        for name, value in self.request.headers:
            req.headers[name] = value
        self.ws.send_request(req)
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            self.feed_messages(data)
        except EOFError:
            pass

    def on_response(self, response: Response) -> None:
        exc = self.ws.handshake_exc
        if exc is None:
            if not self.opened.done():
                self.opened.set_result(None)
            return
        if not self.opened.done():
            self.opened.set_exception(_refusal(self.provider, response, exc))

    def attach(self, message_cb: Callable[[str | bytes], None], closed_cb: Callable[[int, str], None],
               writable_cb: Callable[[bool], None], pong_cb: Callable[[bytes], None]) -> None:
        """Start delivering to the session, beginning with anything that arrived before."""
        self.message_cb, self.closed_cb, self.writable_cb, self.pong_cb = message_cb, closed_cb, writable_cb, pong_cb
        early, self._early = self._early, None
        for item in early or ():
            if item[0] == "message":
                message_cb(item[1])
            else:
                closed_cb(item[1], item[2])

    def on_message(self, data: str | bytes) -> None:
        if self._early is not None:
            self._early.append(("message", data))
        else:
            self.message_cb(data)

    def on_message_too_big(self, size: int) -> None:
        self.ws.fail(1009, "message too big")
        self.flush()

    def on_closed(self, code: int, reason: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(UpstreamConnectError(
                f"{self.provider} closed the connection during the handshake", provider_code=code))
            return
        if self._early is not None:
            self._early.append(("closed", code, reason))
        else:
            self.closed_cb(code, reason)

    def on_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            detail = f": {exc}" if exc else ""
            self.opened.set_exception(UpstreamConnectError(
                f"{self.provider} closed the connection during the handshake{detail}"))
        elif not self._closed_reported:
            self._report_closed()

    def on_pong(self, data: bytes) -> None:
        self.pong_cb(data)

    def buffered_bytes(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def pause_writing(self) -> None:
        self.writable_cb(False)

    def resume_writing(self) -> None:
        self.writable_cb(True)


def _refusal(provider: str, response: Response, exc: Exception) -> UpstreamConnectError:
    status = response.status_code if isinstance(exc, InvalidStatus) or response else None
    headers = response.headers
    detail = headers.get("dg-error") or headers.get("x-error") or ""
    body = (response.body or b"")[:300].decode("utf-8", "replace").strip()
    if 300 <= (status or 0) < 400:
        return UpstreamConnectError(
            f"{provider} answered HTTP {status} (redirect to {headers.get('Location', '?')}); "
            "redirects are not followed: check ROUTERAUDIO_" + provider.upper() + "_URL",
            provider_code=status)
    text = detail or body or response.reason_phrase
    if status == 401 or status == 403:
        message = f"{provider} rejected the credentials (HTTP {status}): {text}"
    elif status == 429:
        message = f"{provider} refused the session: too many requests or concurrent streams (HTTP 429): {text}"
    else:
        message = f"{provider} refused the connection (HTTP {status}): {text}"
    return UpstreamConnectError(redact(message), provider_code=status, provider_message=redact(text) or None)


async def connect(request: UpstreamRequest, provider: str, timeout: float) -> UpstreamConnection:
    """Open and handshake; raises ``UpstreamConnectError`` (refusal, unreachable, timeout)."""
    loop = asyncio.get_running_loop()
    conn = UpstreamConnection(request, provider)
    uri = conn.uri
    try:
        async with asyncio.timeout(timeout):
            await loop.create_connection(
                lambda: conn, uri.host, uri.port,
                ssl=_tls() if uri.secure else None,
                server_hostname=uri.host if uri.secure else None)
            await conn.opened
    except TimeoutError:
        conn.abort()
        raise UpstreamConnectError(f"{provider} did not complete the WebSocket handshake within {timeout:g} s") from None
    except UpstreamConnectError:
        conn.abort()
        raise
    except OSError as exc:
        conn.abort()
        raise UpstreamConnectError(f"cannot reach {provider} at {uri.host}:{uri.port}: {exc.strerror or exc}") from None
    return conn
