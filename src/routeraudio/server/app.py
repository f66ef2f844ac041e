"""Routes and the handshake: one listening socket serves ``/v1/listen`` (WebSocket), ``POST /v1/token``,
``/healthz``, ``/readyz`` and ``/metrics``.

Parameters and credentials are validated right after the WebSocket handshake and before any upstream
connection or decoder exists; a refusal is an error frame plus its close code (the spec's contract),
which is why the handshake itself is accepted first.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import PayloadTooBig
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

OPEN = State.OPEN

from ..auth import KeyStore, SharedJtiStore, TokenIssuer, is_router_key
from ..config import PROVIDER_KEY_ENV, ListenParams, ServerConfig
from ..errors import AuthError, FrameTooLargeError, LimitError, ParameterError, RouterError, ShutdownError, close_code_for
from ..events import error_json
from . import http
from .metrics import Metrics
from .session import Session
from .wsio import (WsEndpoint, install_redaction, redact, redacting_logger, relay_binary_frames,
                   split_binary_frames)

logger = redacting_logger("routeraudio.server")
ws_logger = redacting_logger("routeraudio.server.ws")


class Router:
    """The server's state: configuration, key store, token issuer, metrics and open sessions."""

    def __init__(self, config: ServerConfig, keys: KeyStore | None = None) -> None:
        install_redaction()
        self.config = config
        secret = config.secret_bytes()  # refuses a short secret before anything listens
        self.keys = keys or KeyStore(config.database)
        self.tokens = TokenIssuer(secret, default_ttl=config.token_default_ttl, max_ttl=config.token_max_ttl,
                                  jti_store=SharedJtiStore(config.database))
        self.metrics = Metrics()
        self.sessions: set[Session] = set()
        self.sessions_per_key: Counter[str] = Counter()
        self.connections: set[ClientConnection] = set()
        self.ready = False
        self.draining = False
        self.server: asyncio.base_events.Server | None = None

    # -- serving ------------------------------------------------------------------------------
    async def start(self, sock=None, reuse_port: bool = False) -> None:
        loop = asyncio.get_running_loop()
        if sock is not None:
            self.server = await loop.create_server(lambda: ClientConnection(self), sock=sock, backlog=4096)
        else:
            self.server = await loop.create_server(
                lambda: ClientConnection(self), self.config.host, self.config.port,
                reuse_port=reuse_port or None, backlog=4096)
        self.ready = True

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]

    async def shutdown(self, drain_timeout: float | None = None) -> None:
        """Drain: /readyz turns 503 and new sessions are refused (error frame + 1001) while open
        streams finish (close_stream semantics) until the deadline; the rest get their finals and 1001.
        The listener stays open meanwhile so that load balancers can read the 503."""
        self.ready = False
        self.draining = True
        deadline = self.config.drain_timeout if drain_timeout is None else drain_timeout
        if not await self._wait_sessions(deadline):
            for s in list(self.sessions):
                s.drain_expired()
            if not await self._wait_sessions(self.config.finalize_timeout + 0.5):
                for s in list(self.sessions):
                    s.shutdown_expired()
        for conn in list(self.connections):
            conn.close(1001, "server shutting down")
        if self.server is not None:
            self.server.close()
        await asyncio.sleep(0.1)  # let close frames go out
        self.keys.close()
        self.tokens.close()

    async def _wait_sessions(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                while self.sessions:
                    await asyncio.sleep(0.05)
        except TimeoutError:
            return False
        return True

    def session_ended(self, session: Session) -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            self.metrics.inc("routeraudio_sessions_active", -1, provider=session.params.provider)
            if session.key_id is not None:
                self.sessions_per_key[session.key_id] -= 1
                if self.sessions_per_key[session.key_id] <= 0:
                    del self.sessions_per_key[session.key_id]

    # -- authentication -----------------------------------------------------------------------
    def authenticate(self, headers, query: dict[str, str], provider: str) -> tuple[str, str | None]:
        """Resolve credentials to (provider key to use upstream, router key id or None)."""
        key = headers.get("x-api-key") or query.get("api_key")  # the header wins
        token = query.get("jwt_token")
        if key:
            key = key.strip()
            if is_router_key(key):
                record = self.keys.verify(key)
                if record is None:
                    raise AuthError("invalid or revoked router API key")
                return self._router_provider_key(provider), record.id
            if not self.config.allow_provider_keys:
                raise AuthError("provider keys (bring your own key) are disabled on this router; use a router_ key")
            return key, None
        if token:
            claims = self.tokens.verify(token, provider)
            record = self.keys.get(claims["sub"])
            if record is None or not record.active:
                raise AuthError("the key that minted this jwt_token was revoked")
            return self._router_provider_key(provider), record.id
        raise AuthError("missing credentials: send x-api-key, or api_key or jwt_token in the query")

    def _router_provider_key(self, provider: str) -> str:
        key = self.config.provider_keys.get(provider)
        if not key:
            raise AuthError(
                f"this router has no {provider} key configured ({PROVIDER_KEY_ENV[provider]}); "
                "pass your own provider key instead")
        return key

    def open_session(self, conn: "ClientConnection", request: Request) -> Session:
        if self.draining:
            raise ShutdownError("the router is shutting down; connect to another instance")
        url = urlsplit(request.path)
        raw = parse_qs(url.query, keep_blank_values=True)
        query = {k: v[-1] for k, v in raw.items()}
        params = ListenParams.from_query(raw)
        provider_key, key_id = self.authenticate(request.headers, query, params.provider)
        if key_id is not None:
            record = self.keys.get(key_id)
            limit = (record.max_sessions if record and record.max_sessions else self.config.max_sessions_per_key)
            if self.sessions_per_key[key_id] >= limit:
                raise LimitError(f"this key already has {limit} concurrent sessions (the limit)")
        session = Session(self, conn, params, provider_key, key_id)
        self.sessions.add(session)
        if key_id is not None:
            self.sessions_per_key[key_id] += 1
        self.metrics.inc("routeraudio_sessions_total", provider=params.provider)
        self.metrics.inc("routeraudio_sessions_active", provider=params.provider)
        session.start()
        return session

    # -- plain HTTP ---------------------------------------------------------------------------
    def handle_http(self, head: http.Head, body: bytes) -> bytes:
        path, method = head.path, head.method
        if path == "/healthz" and method in ("GET", "HEAD"):
            return http.response(200, {"status": "ok"})
        if path == "/readyz" and method in ("GET", "HEAD"):
            return http.response(200 if self.ready else 503, {"ready": self.ready, "sessions": len(self.sessions)})
        if path == "/metrics" and method == "GET":
            return http.response(200, self.metrics.render(), "text/plain; version=0.0.4")
        if path == "/v1/token":
            if method != "POST":
                return http.error_response(405, "use POST /v1/token with x-api-key")
            return self._mint(head, body)
        if path == "/v1/listen":
            return http.error_response(426, "/v1/listen is a WebSocket endpoint: send a WebSocket upgrade")
        return http.error_response(404, f"no route for {method} {path}")

    def _mint(self, head: http.Head, body: bytes) -> bytes:
        key = head.headers.get("x-api-key", "").strip()
        record = self.keys.verify(key) if key else None
        if record is None:
            return http.error_response(401, "POST /v1/token needs a valid router API key in x-api-key")
        ttl = providers = None
        if body.strip():
            try:
                req = json.loads(body)
            except ValueError:
                return http.error_response(400, "request body must be JSON")
            if not isinstance(req, dict) or set(req) - {"expires_in", "providers"}:
                return http.error_response(400, 'body fields: "expires_in" (seconds), "providers" (list)')
            ttl, providers = req.get("expires_in"), req.get("providers")
        try:
            token, expires_in = self.tokens.mint(record.id, ttl=ttl, providers=providers)
        except ParameterError as exc:
            return http.error_response(400, str(exc))
        self.metrics.inc("routeraudio_tokens_minted_total")
        return http.response(200, {"token": token, "expires_in": expires_in})


class ClientConnection(WsEndpoint):
    """A client TCP connection: an HTTP request, or a WebSocket carrying one listen session."""

    def __init__(self, router: Router) -> None:
        super().__init__()
        self.router = router
        self.max_message = router.config.max_frame_bytes
        self.session: Session | None = None
        self._head = bytearray()
        self._http: http.Head | None = None
        self._open_timer: asyncio.TimerHandle | None = None
        self._handshake_done = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.router.connections.add(self)
        self._open_timer = asyncio.get_running_loop().call_later(self.router.config.open_timeout, transport.abort)

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        if ws is not None:
            if (self._handshake_done and ws.state is OPEN and not ws.debug and not ws.reader.buffer
                    and not self._parts and self.session is not None):
                # The audio hot path: whole binary frames at a frame boundary are relayed upstream
                # re-masked (raw PCM forwarded unchanged) or unmasked here for the session; anything
                # else (control, text, partial frames) goes through websockets as usual.
                session = self.session
                write = session.relay_write
                if write is not None:
                    wire, frames, nbytes, used = relay_binary_frames(data, self.max_message, session.relay_free)
                    if frames:
                        write(wire)
                        session.relayed(frames, nbytes)
                        if used == len(data):
                            return
                        data = data[used:]
                payloads, used = split_binary_frames(data, self.max_message)
                for payload in payloads:
                    session.on_message(payload)
                if used == len(data):
                    return
                data = data[used:]  # the rest, from a frame boundary, even if the session just ended
            try:
                self.feed(data)
            except EOFError:
                pass
            return
        self._head += data
        if self._http is not None:
            self._maybe_finish_http()
            return
        end = self._head.find(b"\r\n\r\n")
        limit = self.router.config.max_http_header_bytes
        if end < 0:
            if len(self._head) > limit:
                self._reply(http.error_response(431, "request header too large"))
            return
        if end > limit:
            self._reply(http.error_response(431, "request header too large"))
            return
        try:
            head = http.parse_head(bytes(self._head[:end]))
        except http.BadRequest as exc:
            self._reply(http.error_response(exc.status, str(exc)))
            return
        if head.is_websocket and head.method == "GET" and head.path == "/v1/listen":
            self.ws = ServerProtocol(max_size=self.router.config.max_frame_bytes, logger=ws_logger)
            buffered, self._head = bytes(self._head), bytearray()
            try:
                self.feed(buffered)
            except EOFError:
                pass
            return
        self._http = head
        self._maybe_finish_http()

    def _maybe_finish_http(self) -> None:
        head = self._http
        try:
            length = head.content_length
        except http.BadRequest as exc:
            self._reply(http.error_response(exc.status, str(exc)))
            return
        if length > http.MAX_BODY:
            self._reply(http.error_response(413, f"request body over {http.MAX_BODY} bytes"))
            return
        start = self._head.find(b"\r\n\r\n") + 4
        if len(self._head) - start < length:
            return
        body = bytes(self._head[start:start + length])
        try:
            reply = self.router.handle_http(head, body)
        except Exception:  # noqa: BLE001
            logger.exception("HTTP handler failed")
            reply = http.error_response(500, "internal error")
        self._reply(reply, head_only=head.method == "HEAD")

    def _reply(self, data: bytes, head_only: bool = False) -> None:
        if self._open_timer is not None:
            self._open_timer.cancel()
        if head_only:
            data = data[: data.find(b"\r\n\r\n") + 4]
        self.transport.write(data)
        self.transport.close()

    # -- WebSocket ----------------------------------------------------------------------------
    def on_request(self, request: Request) -> None:
        ws: ServerProtocol = self.ws
        response = ws.accept(request)
        ws.send_response(response)
        self.flush()
        if response.status_code != 101:
            return
        self._handshake_done = True
        if self._open_timer is not None:
            self._open_timer.cancel()
        logger.debug("listen %s", redact(request.path))
        try:
            self.session = self.router.open_session(self, request)
        except RouterError as exc:
            self.refuse(exc)
        except Exception as exc:  # noqa: BLE001
            logger.exception("opening a session failed")
            self.refuse(exc)

    def refuse(self, exc: BaseException) -> None:
        code = close_code_for(exc)
        message = str(exc) if isinstance(exc, RouterError) else "internal error in the router"
        self.router.metrics.inc("routeraudio_errors_total", provider="none", code=str(code))
        self.send_text(error_json(message, code))
        self.close(code, message)

    def on_message(self, data: str | bytes) -> None:
        if self.session is not None:
            self.session.on_message(data)

    def on_message_too_big(self, size: int) -> None:
        self._too_big(size)

    def on_parser_error(self, exc: Exception) -> None:
        # The protocol already queued its close frame; put the error frame in front of it.
        if isinstance(exc, PayloadTooBig):
            err = FrameTooLargeError(
                f"frame over the {self.router.config.max_frame_bytes} byte limit; send audio in chunks "
                "of at most 1 s (20-100 ms is typical)")
            code = 1009
        else:
            err, code = None, close_code_for(exc)
        if err is None:
            return
        queued = self.ws.data_to_send()
        frame = Frame(Opcode.TEXT, error_json(str(err), code).encode()).serialize(mask=False, extensions=[])
        self.transport.write(frame)
        for d in queued:
            if d:
                self.transport.write(d)
        if self.session is not None:
            self.session.finished = True
            self.session._record_close(code)
            self.session._close_upstream()
            self.session._cleanup()

    def _too_big(self, size: int) -> None:
        err = FrameTooLargeError(f"message of {size} bytes is over the {self.max_message} byte limit")
        if self.session is not None:
            self.session._fail(err)
        else:
            self.refuse(err)

    def on_closed(self, code: int, reason: str) -> None:
        if self.session is not None:
            self.session.on_client_gone(code)

    def on_lost(self, exc: Exception | None) -> None:
        if self._open_timer is not None:
            self._open_timer.cancel()
        self.router.connections.discard(self)
        if self.session is not None:
            self.session.on_client_gone(1006)
