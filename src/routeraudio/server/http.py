"""Just enough HTTP/1.1 for the plain endpoints sharing the WebSocket port.

The handshake of ``/v1/listen`` goes to websockets' sans-I/O ServerProtocol; everything else
(``POST /v1/token``, ``/healthz``, ``/readyz``, ``/metrics``) is parsed here, with hard limits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, unquote, urlsplit

MAX_BODY = 4096


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Head:
    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ","

    @property
    def is_websocket(self) -> bool:
        return "websocket" in self.headers.get("upgrade", "").lower()

    @property
    def content_length(self) -> int:
        raw = self.headers.get("content-length", "0")
        if not raw.isdigit():
            raise BadRequest(400, "invalid Content-Length")
        return int(raw)


def parse_head(raw: bytes) -> Head:
    """Parse a request head (everything before the blank line)."""
    try:
        text = raw.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError:
        raise BadRequest(400, "malformed HTTP request line") from None
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest(505, "HTTP/1.1 required")
    headers: dict[str, str] = {}
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "malformed HTTP header")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    if "transfer-encoding" in headers:
        raise BadRequest(501, "Transfer-Encoding is not supported; send Content-Length")
    url = urlsplit(target)
    return Head(method, target, unquote(url.path), parse_qs(url.query, keep_blank_values=True), headers)


def response(status: int, body: bytes | str | dict = b"", content_type: str = "application/json",
             extra_headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    if isinstance(body, dict):
        body = json.dumps(body, separators=(",", ":"))
    if isinstance(body, str):
        body = body.encode("utf-8")
    reason = HTTPStatus(status).phrase
    head = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}", "Connection: close", "Cache-Control: no-store"]
    head += [f"{k}: {v}" for k, v in extra_headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def error_response(status: int, message: str) -> bytes:
    return response(status, {"error": message, "code": status})
