"""Glue between websockets' sans-I/O protocols and asyncio transports, shared by both sides.

``WsEndpoint`` owns one protocol object and one transport: it feeds received bytes in, writes what
the protocol wants written, reassembles fragmented messages, and hands complete messages and the
close to a callback. Logging goes through a redacting logger so no key or token reaches a log.
"""

from __future__ import annotations

import asyncio
import logging
import re

from websockets.frames import Frame, Opcode

OP_CONT, OP_TEXT, OP_BINARY, OP_PONG = Opcode.CONT, Opcode.TEXT, Opcode.BINARY, Opcode.PONG
from websockets.protocol import Protocol, State
from websockets.http11 import Request, Response

# The audio hot path's frame handling is in C; see its module docstring for what it takes.
from .._codec.wsframe import (binary_frame, masked_binary_frame, relay_binary_frames,  # noqa: F401
                              split_binary_frames, split_data_frames, text_frame)

_SECRET_PATTERNS = [
    # query parameters and header values that carry credentials
    (re.compile(r"(?i)((?:api_key|jwt_token|token|key)=)[^&\s'\"]+"), r"\1[REDACTED]"),
    (re.compile(r"(?i)((?:authorization|x-api-key|xi-api-key|sec-websocket-protocol)['\"]?\s*[:=,]\s*['\"]?)"
                r"[^'\"\r\n]+"), r"\1[REDACTED]"),
    (re.compile(r"(?i)(\"(?:api_key|key|token)\"\s*:\s*\")[^\"]*"), r"\1[REDACTED]"),
    (re.compile(r"router_[A-Za-z0-9_\-]+"), "router_[REDACTED]"),
    (re.compile(r"eyJ[\w\-]+\.[\w\-]+\.[\w\-]*"), "[REDACTED-JWT]"),
]


def redact(text: str) -> str:
    """Remove keys and tokens from text bound for a log (URLs, headers, JSON)."""
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not take the process down
            message = str(record.msg)
        record.msg = redact(message)
        record.args = ()
        return True


def redacting_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger


def install_redaction() -> None:
    """Filter the websockets library's own loggers too, in case anything logs through them."""
    for name in ("websockets", "websockets.server", "websockets.client", "websockets.protocol",
                 "routeraudio", "routeraudio.server", "routeraudio.session", "routeraudio.upstream"):
        redacting_logger(name)


class WsEndpoint(asyncio.Protocol):
    """Base for the client-facing and upstream connections. Subclasses implement the ``on_*`` hooks."""

    max_message: int = 2**20
    #: this side masks the frames it sends (RFC 6455: a client does, a server does not)
    masks: bool = False

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.ws: Protocol | None = None
        self._parts: list[bytes] = []
        self._part_op = 0
        self._part_size = 0
        self._closed_reported = False
        self._abort_handle: asyncio.TimerHandle | None = None

    # -- writing ------------------------------------------------------------------------------
    def flush(self) -> None:
        ws, transport = self.ws, self.transport
        if ws is None or transport is None:
            return
        for data in ws.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()
        if ws.close_expected() and self._abort_handle is None and not transport.is_closing():
            # The peer should close TCP now; don't wait for it forever.
            self._abort_handle = asyncio.get_running_loop().call_later(2.0, transport.abort)

    def send_text(self, text: str) -> None:
        ws = self.ws
        if ws is not None and ws.state is State.OPEN:
            ws.send_text(text.encode("utf-8"))
            self.flush()

    def writes_directly(self) -> bool:
        """Whether a data frame may be built here (wsframe, in C) and written to the transport
        directly, bypassing websockets: open, nothing of websockets' own waiting to be written, no
        extensions, no debug logging of frames. websockets keeps no state for unfragmented data
        frames it sends."""
        ws = self.ws
        return (ws is not None and ws.state is State.OPEN and not ws.debug and not ws.writes
                and not ws.extensions and not self.transport.is_closing())

    def send_text(self, text: str) -> None:
        if self.writes_directly():
            self.transport.write(text_frame(text, self.masks))
        elif self.ws is not None and self.ws.state is State.OPEN:
            self.ws.send_text(text.encode("utf-8"))
            self.flush()

    def send_binary(self, data: bytes) -> None:
        if self.writes_directly():
            self.transport.write(binary_frame(data, self.masks))
        elif self.ws is not None and self.ws.state is State.OPEN:
            self.ws.send_binary(data)
            self.flush()

    def close(self, code: int = 1000, reason: str = "") -> None:
        ws = self.ws
        if ws is None:
            if self.transport is not None:
                self.transport.close()
            return
        if ws.state is State.OPEN:
            ws.send_close(code, reason[:120])
            self.flush()
        elif ws.state is State.CONNECTING and self.transport is not None:
            self.transport.abort()

    def ping(self, data: bytes) -> None:
        ws = self.ws
        if ws is not None and ws.state is State.OPEN:
            ws.send_ping(data)
            self.flush()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- reading ------------------------------------------------------------------------------
    def feed_messages(self, data: bytes) -> None:
        """``feed`` for a peer that sends unmasked frames (a provider): whole text and binary
        frames at a frame boundary are parsed in C and delivered straight to ``on_message``; the
        rest (control frames, fragments, partial frames, the handshake) goes through websockets."""
        ws = self.ws
        if (ws.state is State.OPEN and not ws.debug and not ws.reader.buffer and not self._parts
                and not ws.extensions):
            messages, used = split_data_frames(data, self.max_message)
            for message in messages:
                self.on_message(message)
            if used == len(data):
                return
            data = data[used:]
        self.feed(data)

    def feed(self, data: bytes) -> None:
        ws = self.ws
        ws.receive_data(data)
        if ws.parser_exc is not None:
            self.on_parser_error(ws.parser_exc)
        events = ws.events_received()
        self.flush()
        for event in events:
            if isinstance(event, Frame):
                self._frame(event)
            elif isinstance(event, Request):
                self.on_request(event)
            elif isinstance(event, Response):
                self.on_response(event)
        if ws.state is State.CLOSED or (ws.state is State.CLOSING and ws.close_rcvd is not None):
            self._report_closed()

    def _frame(self, frame: Frame) -> None:
        op = frame.opcode
        if op is OP_TEXT or op is OP_BINARY:
            if frame.fin:
                self.on_message(frame.data.decode("utf-8") if op is OP_TEXT else frame.data)
                return
            self._part_op, self._parts, self._part_size = op, [frame.data], len(frame.data)
        elif op is OP_PONG:
            self.on_pong(frame.data)
        elif op is OP_CONT and self._parts:
            self._parts.append(frame.data)
            self._part_size += len(frame.data)
            if self._part_size > self.max_message:
                self._parts = []
                self.on_message_too_big(self._part_size)
                return
            if frame.fin:
                data = b"".join(self._parts)
                self._parts = []
                try:
                    self.on_message(data.decode("utf-8") if self._part_op is OP_TEXT else data)
                except UnicodeDecodeError:
                    self.ws.fail(1007, "invalid UTF-8 in text message")
                    self.flush()

    def _report_closed(self) -> None:
        if self._closed_reported:
            return
        self._closed_reported = True
        # close_code/close_reason stay None until the TCP close; the frame we received is what counts.
        rcvd = self.ws.close_rcvd
        self.on_closed(rcvd.code if rcvd is not None else 1006, rcvd.reason if rcvd is not None else "")

    def eof_received(self) -> bool | None:
        if self.ws is not None:
            self.ws.receive_eof()
            self.flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._abort_handle is not None:
            self._abort_handle.cancel()
        if self.ws is not None:
            self.ws.receive_eof()
            self._report_closed()
        self.on_lost(exc)

    # -- hooks --------------------------------------------------------------------------------
    def on_request(self, request: Request) -> None: ...
    def on_response(self, response: Response) -> None: ...
    def on_message(self, data: str | bytes) -> None: ...
    def on_message_too_big(self, size: int) -> None: ...
    def on_parser_error(self, exc: Exception) -> None: ...
    def on_pong(self, data: bytes) -> None: ...
    def on_closed(self, code: int, reason: str) -> None: ...
    def on_lost(self, exc: Exception | None) -> None: ...
