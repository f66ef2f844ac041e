"""THE session driver: one client socket, one adapter, one upstream socket, for every provider.

Theory of operation. ``Session.start`` builds the audio path (convert or meter) and the adapter, and
starts connecting upstream. Client audio is converted as it arrives; until the provider's socket is
open it waits in ``_pending`` (bounded by seconds of audio). Every adapter call is followed by
``_pump``, which writes the adapter's frames upstream, sends its events to the client, and ends the
session when the adapter is ``done`` (1000) or has an ``error`` (error frame + 4040).

Timers (all ``loop.call_later``, re-armed lazily so the audio path never touches them): idle (no
client audio/keep_alive), keepalive (no audio sent upstream), the adapter's own deadline, and the
finalize deadline after ``close_stream``.

Ending: ``close_stream`` / empty binary frame -> flush audio, ``adapter.send_close()``, wait for
``done``. Client vanishes -> ``adapter.send_close()`` and the upstream socket is closed at once.
Any error -> ``_fail``: one error frame, the close code from ``errors.close_code_for``, upstream closed.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from typing import TYPE_CHECKING

from ..audio import AudioMeter, AudioPipeline
from ..config import ListenParams
from ..errors import (AudioFormatError, LimitError, ParameterError, ProviderError, RouterError,
                      ShutdownError, UpstreamTimeoutError, close_code_for, IdleTimeoutError)
from ..events import Raw, error_json, to_json
from ..providers import adapter_class
from . import upstream as upstream_mod

if TYPE_CHECKING:
    from .app import ClientConnection, Router

logger = logging.getLogger("routeraudio.session")
FINALIZE = object()  # a client finalize queued behind audio while upstream connects


class Session:
    def __init__(self, router: "Router", client: "ClientConnection", params: ListenParams,
                 provider_key: str, key_id: str | None) -> None:
        self.router = router
        self.client = client
        self.params = params
        self.key_id = key_id
        cfg = router.config
        self.cfg = cfg
        self.loop = asyncio.get_running_loop()
        self.adapter = adapter_class(params.provider)(params, provider_key, cfg.provider_urls.get(params.provider))
        plan = self.adapter.plan
        if plan.convert:
            self.audio = AudioPipeline(params.encoding, params.sample_rate, params.channels, plan.sample_rate)
        else:
            self.audio = AudioMeter(params.encoding, params.sample_rate, params.channels)
        # Raw PCM forwarded unchanged may take the relay fast path (see _update_relay).
        self.relay_write = None
        self.relay_free = 0
        self._relay_bytes_per_s = 0 if plan.convert else self.audio.raw_bytes_per_second
        self.upstream: upstream_mod.UpstreamConnection | None = None
        # Audio (bytes) and finalize requests (FINALIZE) that arrived before upstream opened, in order;
        # None once it is open.
        self._pending: list[bytes | object] | None = []
        self.ending = False  # close_stream received
        self.finished = False  # the client has been closed (or is gone)
        now = self.loop.time()
        self.last_client = now
        self.last_upstream_audio = now
        self.started = now
        self._connect_task: asyncio.Task | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._adapter_deadline: float | None = None
        self._partials = params.partial_results
        self._paused: set[str] = set()  # why client reading is paused: "pace", "stall"
        # Client messages read but not yet processed because the client is being paced (at most what
        # one socket read held when the pause began); kept in order with control messages.
        self._held: collections.deque[str | bytes] = collections.deque()
        self._ping_outstanding: bytes | None = None
        self._end_code = 1000  # 1001 when the drain deadline ended the stream

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._connect_task = self.loop.create_task(self._connect())
        self._arm("idle", self.cfg.idle_timeout, self._check_idle)
        interval = self.adapter.CAPABILITIES.keepalive_interval
        if interval:
            self._arm("keepalive", interval, self._check_keepalive)

    async def _connect(self) -> None:
        req = self.adapter.connect_request()
        t0 = self.loop.time()
        try:
            conn = await upstream_mod.connect(req, self.params.provider, self.cfg.upstream_connect_timeout)
        except ProviderError as exc:
            self._fail(exc)
            return
        except Exception as exc:  # noqa: BLE001 - anything else is our bug; report it as 1011
            logger.exception("upstream connect failed")
            self._fail(exc)
            return
        if self.finished:
            conn.close(1000)
            return
        self.router.metrics.inc("routeraudio_upstream_connect_seconds_sum", self.loop.time() - t0,
                                provider=self.params.provider)
        self.router.metrics.inc("routeraudio_upstream_connect_seconds_count", provider=self.params.provider)
        self.upstream = conn
        if self.cfg.upstream_ping_interval:
            self._arm("ping", self.cfg.upstream_ping_interval, self._ping)
        self.adapter.receive_open()
        pending, self._pending = self._pending, None
        now = self.loop.time()
        for item in pending:
            if item is FINALIZE:
                self.adapter.send_finalize()
            else:
                self.adapter.send_audio(item, now)
        if pending:
            self.last_upstream_audio = now
        if self.ending:
            self.adapter.send_close()
        self._pump()
        # Only now, with the adapter open and its first frames queued, does the provider's side flow:
        # whatever it sent together with the handshake is replayed first.
        conn.attach(self._on_upstream_message, self._on_upstream_closed, self._on_upstream_writable,
                    self._on_pong)

    # -- from the client ----------------------------------------------------------------------
    def on_message(self, data: str | bytes) -> None:
        if self._held or "pace" in self._paused:
            self._held.append(data)
            self.relay_write = None
        elif type(data) is bytes:
            self.on_audio(data)
        else:
            self.on_text(data)

    def on_audio(self, data: bytes) -> None:
        if self.finished:
            return
        if not data:
            self.on_close_stream()
            return
        if self.ending:
            if self._end_code != 1000:
                return  # the router ended the audio (drain deadline): frames still in flight are moot
            self._fail(ParameterError("audio received after close_stream; open a new session"))
            return
        try:
            pcm = self.audio.feed(data)
        except AudioFormatError as exc:
            self._fail(exc)
            return
        now = self.loop.time()
        self.last_client = now
        self._pace(now)
        if not pcm:
            return
        if self._pending is None:
            self.last_upstream_audio = now
            adapter = self.adapter
            adapter.send_audio(pcm, now)
            self._pump()
        else:
            self._pending.append(pcm)
            if self.audio.duration > self.cfg.max_pending_audio_seconds:
                self._fail(LimitError(
                    f"{self.params.provider} is still connecting after {self.cfg.max_pending_audio_seconds:g} s "
                    "of audio were buffered; the router does not buffer more"))

    # -- the relay fast path: raw PCM forwarded unchanged --------------------------------------
    # While ``relay_write`` is set, the client connection relays whole audio frames straight to the
    # provider (re-masked in C by wsframe.relay_binary_frames) and reports them to ``relayed``:
    # no per-frame on_audio, adapter or pump. ``_update_relay`` sets or clears it wherever one of
    # its conditions changes: the end of every ``_pump`` (adapter and upstream state), pausing and
    # resuming, close_stream and every ending. ``relay_free`` is how many audio bytes may go before
    # the pace lead has to be checked against the clock again.
    def _update_relay(self) -> None:
        up = self.upstream
        if (self._relay_bytes_per_s and self._pending is None and not self.ending and not self.finished
                and not self._held and not self._paused and up is not None and self.adapter.relay_ready()
                and up.writes_directly()):
            self.relay_write = up.transport.write
            self._refresh_relay_free()
        else:
            self.relay_write = None

    def _refresh_relay_free(self) -> None:
        lead = self.cfg.pace_lead_seconds
        if not lead:
            self.relay_free = 1 << 62
        else:  # at least one frame: on_audio, too, pauses only after the frame that crosses the lead
            ahead = (self.loop.time() - self.started + lead) * self._relay_bytes_per_s - self.audio.bytes_in
            self.relay_free = max(1, int(ahead))

    def relayed(self, frames: int, nbytes: int) -> None:
        """``frames`` client frames carrying ``nbytes`` of audio went upstream through ``relay_write``."""
        self.adapter.relayed(frames, nbytes)
        self.audio.count(nbytes)
        now = self.last_client = self.last_upstream_audio = self.loop.time()
        free = self.relay_free = self.relay_free - nbytes
        if free <= 0 and not self._pace(now):  # pausing clears relay_write
            self._refresh_relay_free()

    def _pace(self, now: float) -> bool:
        """A client ahead of real time by more than the pace lead: stop reading it until real time
        catches up to half the lead. True if it was paused now."""
        lead = self.cfg.pace_lead_seconds
        ahead = self.audio.duration - (now - self.started)
        if lead and ahead > lead and "pace" not in self._paused:
            self._pause("pace")
            self._arm("pace", ahead - lead / 2, self._unpace)
            return True
        return False

    def on_text(self, text: str) -> None:
        if self.finished:
            return
        try:
            msg = json.loads(text)
            kind = msg.get("type") if isinstance(msg, dict) else None
        except ValueError:
            kind = None
        self.last_client = self.loop.time()
        if kind == "keep_alive":
            return
        if kind == "finalize":
            if self.ending:
                return
            if self._pending is None:
                self.adapter.send_finalize()
                self._pump()
            else:
                self._pending.append(FINALIZE)
            return
        if kind == "close_stream":
            self.on_close_stream()
            return
        self._fail(ParameterError(
            'control messages are JSON objects with "type" one of finalize, close_stream, keep_alive; '
            f"got {text[:100]!r}"))

    def on_close_stream(self) -> None:
        if self.ending or self.finished:
            return
        self.ending = True
        self.relay_write = None
        try:
            tail = self.audio.flush()
        except AudioFormatError as exc:
            self._fail(exc)
            return
        self._arm("finalize", self.cfg.finalize_timeout, self._finalize_expired)
        if self._pending is None:
            if tail:
                self.adapter.send_audio(tail, self.loop.time())
            self.adapter.send_close()
            self._pump()
        elif tail:
            self._pending.append(tail)

    def on_client_gone(self, code: int) -> None:
        """The client closed its socket (cleanly or not) before the session ended."""
        if self.finished:
            return
        self.finished = True
        self.relay_write = None
        self._record_close(code)
        self._close_upstream()
        self._cleanup()

    # -- from the provider --------------------------------------------------------------------
    def _on_upstream_message(self, data: str | bytes) -> None:
        self.adapter.receive_frame(data)
        self._pump()

    def _on_upstream_closed(self, code: int, reason: str) -> None:
        self.adapter.receive_close(code, reason)
        self._pump()
        if not self.finished:  # an adapter that neither finished nor failed on close: still an end
            self._fail(ProviderError(f"{self.params.provider} closed the connection (code {code})",
                                     provider_code=code, provider_message=reason or None))

    def _on_upstream_writable(self, writable: bool) -> None:
        # The provider reads slower than the client sends: stop reading the client (TCP pushes back),
        # and give the provider stall_timeout to catch up.
        if writable:
            self._cancel("stall")
            self._resume("stall")
        else:
            self._pause("stall")
            self._arm("stall", self.cfg.stall_timeout, self._stalled)

    def _stalled(self) -> None:
        up = self.upstream
        buffered = up.buffered_bytes() if up is not None else 0
        plan = self.adapter.plan
        per_second = plan.sample_rate * (1 if plan.encoding == "pcm_mulaw" else 2)
        what = (f"{buffered / per_second:.1f} s of audio" if plan.encoding.startswith("pcm")
                else f"{buffered} bytes of audio")
        self._fail(UpstreamTimeoutError(
            f"{self.params.provider} stopped reading audio for {self.cfg.stall_timeout:g} s; "
            f"{what} not yet delivered to it were dropped"))

    def _pause(self, reason: str) -> None:
        transport = self.client.transport
        if not self._paused and transport is not None and not transport.is_closing():
            transport.pause_reading()
        self._paused.add(reason)
        self.relay_write = None

    def _resume(self, reason: str) -> None:
        self._paused.discard(reason)
        transport = self.client.transport
        if not self._paused and transport is not None and not transport.is_closing():
            transport.resume_reading()
        self._update_relay()

    def _unpace(self) -> None:
        self._paused.discard("pace")
        held = self._held
        while held and "pace" not in self._paused and not self.finished:
            data = held.popleft()
            if type(data) is bytes:
                self.on_audio(data)
            else:
                self.on_text(data)
        if "pace" not in self._paused:
            self._paused.add("pace")  # _resume() resumes the transport only when nothing else holds it
            self._resume("pace")

    def _ping(self) -> None:
        if self.finished or self.upstream is None:
            return
        if self._ping_outstanding is not None:
            self._fail(UpstreamTimeoutError(
                f"{self.params.provider} stopped answering WebSocket pings for "
                f"{self.cfg.upstream_ping_timeout:g} s"))
            return
        self._ping_outstanding = data = self.loop.time().hex().encode()
        self.upstream.ping(data)
        self._arm("ping", self.cfg.upstream_ping_timeout, self._ping)

    def _on_pong(self, data: bytes) -> None:
        if data == self._ping_outstanding:
            self._ping_outstanding = None
            self._arm("ping", self.cfg.upstream_ping_interval, self._ping)

    # -- the pump -----------------------------------------------------------------------------
    def _pump(self) -> None:
        adapter = self.adapter
        out = adapter.data_to_send()
        up = self.upstream
        if out and up is not None:
            for frame in out:
                if type(frame) is bytes:
                    up.send_binary(frame)
                else:
                    up.send_text(frame)
        events = adapter.events_received()
        if events and not self.finished:
            client = self.client
            partials = self._partials
            for ev in events:
                if type(ev) is Raw:
                    if type(ev.data) is bytes:
                        client.send_binary(ev.data)
                    else:
                        client.send_text(ev.data)
                else:
                    client.send_text(to_json(ev, partials_enabled=partials))
        if adapter.error is not None:
            self._fail(adapter.error)
        elif adapter.done:
            self._end_normally()
        else:
            deadline = adapter.next_deadline()
            if deadline != self._adapter_deadline:
                self._adapter_deadline = deadline
                self._cancel("adapter")
                if deadline is not None:
                    self._arm("adapter", max(0.0, deadline - self.loop.time()), self._adapter_timer)
            self._update_relay()

    def _adapter_timer(self) -> None:
        self._adapter_deadline = None
        self.adapter.receive_timer(self.loop.time())
        self._pump()

    # -- timers -------------------------------------------------------------------------------
    def _arm(self, name: str, delay: float, callback) -> None:
        self._cancel(name)
        self._timers[name] = self.loop.call_later(delay, callback)

    def _cancel(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _check_idle(self) -> None:
        if self.finished or self.ending:
            return
        idle = self.loop.time() - self.last_client
        if idle >= self.cfg.idle_timeout:
            self._fail(IdleTimeoutError(
                f"no audio or keep_alive for {self.cfg.idle_timeout:g} s; send keep_alive during silence"))
        else:
            self._arm("idle", self.cfg.idle_timeout - idle, self._check_idle)

    def _check_keepalive(self) -> None:
        if self.finished:
            return
        interval = self.adapter.CAPABILITIES.keepalive_interval
        quiet = self.loop.time() - self.last_upstream_audio
        if self._pending is None and quiet >= interval and not self.adapter.done:
            self.adapter.send_keepalive()
            self.last_upstream_audio = self.loop.time()
            self._pump()
            quiet = 0.0
        self._arm("keepalive", max(0.05, interval - quiet), self._check_keepalive)

    def _finalize_expired(self) -> None:
        self._fail(UpstreamTimeoutError(
            f"{self.params.provider} did not finish within {self.cfg.finalize_timeout:g} s after "
            "close_stream; every transcript received before this error was delivered"))

    # -- endings ------------------------------------------------------------------------------
    def drain_expired(self) -> None:
        """The drain deadline passed with this stream still open: end its audio as close_stream
        does, deliver what the provider still sends, then close with 1001 instead of 1000."""
        self._end_code = 1001
        self.on_close_stream()

    def shutdown_expired(self) -> None:
        self._fail(ShutdownError("the router is shutting down; reconnect to continue"))

    def _end_normally(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.relay_write = None
        code = self._end_code
        if code != 1000:
            self.client.send_text(error_json(
                "the router is shutting down: this stream's audio was ended at the drain deadline and "
                "every transcript for it was delivered; reconnect to continue", code))
        self.client.close(code)
        self._record_close(code)
        self._close_upstream()
        self._cleanup()

    def _fail(self, exc: BaseException) -> None:
        if self.finished:
            return
        self.finished = True
        self.relay_write = None
        code = close_code_for(exc)
        message = str(exc) if isinstance(exc, RouterError) else "internal error in the router"
        extra: dict = {}
        if isinstance(exc, ProviderError):
            extra = {"provider": self.params.provider, "provider_code": exc.provider_code,
                     "provider_message": exc.provider_message}
        self.client.send_text(error_json(message, code, **extra))
        self.client.close(code, message)
        self._record_close(code)
        self.router.metrics.inc("routeraudio_errors_total", provider=self.params.provider, code=str(code))
        logger.info("session failed: %s (%d)", message, code)
        self._close_upstream()
        self._cleanup()

    def _close_upstream(self) -> None:
        self.relay_write = None
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
        up = self.upstream
        if up is None:
            return
        adapter = self.adapter
        if not adapter.done and adapter.error is None:
            adapter.send_close()  # the provider's own end-of-stream message first
            for frame in adapter.data_to_send():
                if type(frame) is bytes:
                    up.send_binary(frame)
                else:
                    up.send_text(frame)
        up.close(1000)
        self.loop.call_later(self.cfg.upstream_close_timeout, up.abort)

    def _record_close(self, code: int) -> None:
        m = self.router.metrics
        m.inc("routeraudio_closes_total", provider=self.params.provider, code=str(code))
        m.inc("routeraudio_audio_seconds_total", self.audio.duration, provider=self.params.provider)

    def _cleanup(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self.router.session_ended(self)
