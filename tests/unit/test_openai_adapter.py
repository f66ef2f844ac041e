"""OpenAIAdapter: OpenAI Realtime transcription events in, unified events out (no sockets).

Frames come from two places: hand-written sessions shaped like OpenAI's documented events, and the
simulator's engine (``routeraudio.testing.openai.OpenAIEngine``) wired to the adapter offline: what
the adapter sends is applied to the engine (session.update, append, commit) and what the engine
answers goes back into the adapter.
"""

from __future__ import annotations

import base64
import json

import pytest

from routeraudio.config import ListenParams
from routeraudio.errors import ProviderError, UpstreamProtocolError
from routeraudio.events import Raw, Transcript, TurnEnd
from routeraudio.providers.base import State
from routeraudio.providers.openai import (OpenAIAdapter, close_error, error_from_event, language_code,
                                          silence_ms)
from routeraudio.testing.base import Script
from routeraudio.testing.openai import (END_OF_STREAM_FRAMES, OpenAIEngine, SessionConfig, SessionError,
                                        apply_session_update)

BASE = "ws://127.0.0.1:9/v1/realtime"
DELTA = "conversation.item.input_audio_transcription.delta"
COMPLETED = "conversation.item.input_audio_transcription.completed"


def params(**kw) -> ListenParams:
    q = {"provider": "openai", "encoding": "pcm_s16le", "sample_rate": "24000"}
    q.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in kw.items()})
    return ListenParams.from_query(q)


def make(**kw) -> OpenAIAdapter:
    a = OpenAIAdapter(params(**kw), "sk-secret", BASE)
    a.receive_open()
    return a


def feed(a: OpenAIAdapter, *frames) -> list:
    for f in frames:
        a.receive_frame(f if isinstance(f, (str, bytes)) else json.dumps(f))
    return a.events_received()


def ev(kind: str, **fields) -> dict:
    return {"type": kind, "event_id": "event_x", **fields}


def started(item, ms):
    return ev("input_audio_buffer.speech_started", item_id=item, audio_start_ms=ms)


def stopped(item, ms):
    return ev("input_audio_buffer.speech_stopped", item_id=item, audio_end_ms=ms)


def committed(item, previous=None):
    return ev("input_audio_buffer.committed", item_id=item, previous_item_id=previous)


def delta(item, text):
    return ev(DELTA, item_id=item, content_index=0, delta=text)


def completed(item, text):
    return ev(COMPLETED, item_id=item, content_index=0, transcript=text,
              usage={"type": "duration", "seconds": 1.0})


def error(code, message="boom", kind="invalid_request_error", param=None):
    return ev("error", error={"type": kind, "code": code, "message": message, "param": param, "event_id": None})


def second(a: OpenAIAdapter, seconds: float = 1.0) -> None:
    """Send ``seconds`` of 24 kHz PCM through the adapter."""
    a.send_audio(b"\x00\x00" * int(24000 * seconds), 0.0)


def sent(a: OpenAIAdapter) -> list[dict]:
    return [json.loads(f) for f in a.data_to_send()]


# -- request and configuration --------------------------------------------------------------------
def test_connect_request():
    a = OpenAIAdapter(params(), "sk-secret", None)
    req = a.connect_request()
    assert req.url == "wss://api.openai.com/v1/realtime?intent=transcription"  # never model= in the URL
    assert req.headers == (("Authorization", "Bearer sk-secret"),) and req.subprotocols == ()
    b = OpenAIAdapter(params(), "k", "wss://gw.example/v1/realtime?deployment=x")
    assert b.connect_request().url == "wss://gw.example/v1/realtime?deployment=x&intent=transcription"


@pytest.mark.parametrize("encoding,rate,channels,fmt", [
    ("pcm_s16le", 24000, 1, {"type": "audio/pcm", "rate": 24000}),
    ("pcm_s16le", 16000, 1, {"type": "audio/pcm", "rate": 24000}),
    ("pcm_s16le", 24000, 2, {"type": "audio/pcm", "rate": 24000}),
    ("pcm_mulaw", 8000, 1, {"type": "audio/pcmu"}),
    ("pcm_mulaw", 8000, 2, {"type": "audio/pcm", "rate": 24000}),
    ("pcm_mulaw", 16000, 1, {"type": "audio/pcm", "rate": 24000}),
    ("ogg_opus", 48000, 1, {"type": "audio/pcm", "rate": 24000}),
    ("mp3", 44100, 2, {"type": "audio/pcm", "rate": 24000}),
])
def test_session_update_format_follows_the_plan(encoding, rate, channels, fmt):
    a = OpenAIAdapter(params(encoding=encoding, sample_rate=rate, channels=channels), "k", BASE)
    upd = a.session_update()
    assert upd["type"] == "session.update" and upd["session"]["type"] == "transcription"
    assert upd["session"]["audio"]["input"]["format"] == fmt
    native = fmt == {"type": "audio/pcmu"} or (encoding, rate, channels) == ("pcm_s16le", 24000, 1)
    assert a.plan.convert == (not native)
    apply_session_update(SessionConfig(), upd["session"])  # the simulator (OpenAI's rules) accepts it


@pytest.mark.parametrize("kw,transcription,turn", [
    ({}, {"model": "gpt-transcribe", "languages": ["en"]},
     {"type": "server_vad", "prefix_padding_ms": 300, "silence_duration_ms": 500}),
    ({"endpointing": 50}, None, {"type": "server_vad", "prefix_padding_ms": 300, "silence_duration_ms": 200}),
    ({"endpointing": 60000}, None, {"type": "server_vad", "prefix_padding_ms": 300, "silence_duration_ms": 10000}),
    ({"endpointing": 0}, None, None),
    ({"model": "gpt-live-transcribe", "language": "pt-BR"}, {"model": "gpt-live-transcribe", "languages": ["pt"]},
     None),
    ({"model": "gpt-realtime-whisper", "endpointing": 800}, {"model": "gpt-realtime-whisper", "language": "en"}, None),
    ({"model": "gpt-4o-transcribe", "language": "de"}, {"model": "gpt-4o-transcribe", "language": "de"}, ...),
    ({"language": "auto"}, {"model": "gpt-transcribe"}, ...),
    ({"model": "whisper-1", "language": "multi"}, {"model": "whisper-1"}, ...),
])
def test_options_map_to_the_session(kw, transcription, turn):
    upd = make(**kw).session_update()
    inp = upd["session"]["audio"]["input"]
    if transcription is not None:
        assert inp["transcription"] == transcription
    if turn is not ...:
        assert inp["turn_detection"] == turn
    assert "noise_reduction" not in inp and "include" not in upd["session"]
    apply_session_update(SessionConfig(), upd["session"])


def test_pure_helpers():
    assert [language_code(x) for x in ("en", "pt-BR", "zh_Hant", "AUTO", " multi ")] == ["en", "pt", "zh", None, None]
    assert [silence_ms(x) for x in (0, 1, 200, 500, 10_000, 60_000)] == [None, 200, 200, 500, 10_000, 10_000]
    fatal, err = error_from_event(error("invalid_value", "Invalid 'language'",
                                        param="session.audio.input.transcription.language"))
    assert fatal and err.provider_code == "invalid_value" and "param session.audio" in str(err)
    fatal, err = error_from_event(error("input_audio_buffer_commit_empty"))
    assert not fatal
    fatal, err = error_from_event({"type": "error", "error": "weird"})
    assert fatal and err.provider_code is None and "no message" in str(err)
    e = close_error(3000, "invalid_request_error.invalid_api_key")
    assert e.provider_code == "invalid_api_key" and "API key" in str(e)
    assert close_error(1011, "").provider_code == 1011


def test_the_simulator_refuses_what_openai_refuses():
    upd = make(model="gpt-live-transcribe").session_update()["session"]
    bad = json.loads(json.dumps(upd))
    bad["audio"]["input"]["turn_detection"] = {"type": "server_vad"}
    with pytest.raises(SessionError, match="Turn detection is not supported"):
        apply_session_update(SessionConfig(), bad)
    bad["audio"]["input"]["turn_detection"] = None
    bad["audio"]["input"]["transcription"]["languages"] = []
    with pytest.raises(SessionError, match="non-empty"):
        apply_session_update(SessionConfig(), bad)
    with pytest.raises(SessionError, match="invalid_model|intent=transcription"):
        apply_session_update(SessionConfig(), upd, conversation=True)


# -- client side ----------------------------------------------------------------------------------
def test_configuration_goes_first_and_audio_is_base64_json():
    a = OpenAIAdapter(params(), "k", BASE)
    a.send_audio(b"\x01\x02\x03\x04", 0.0)  # while connecting
    a.receive_open()
    a.send_audio(b"", 0.0)
    a.send_audio(memoryview(b"\x05\x06"), 0.0)
    a.send_keepalive()  # nothing: OpenAI has no keep-alive message
    frames = a.data_to_send()
    assert [json.loads(f)["type"] for f in frames] == ["session.update", "input_audio_buffer.append",
                                                      "input_audio_buffer.append"]
    assert base64.b64decode(json.loads(frames[1])["audio"]) == b"\x01\x02\x03\x04"
    assert base64.b64decode(json.loads(frames[2])["audio"]) == b"\x05\x06"


def test_finalize_commits_only_when_audio_was_sent_since():
    a = make()
    a.data_to_send()
    a.send_finalize()
    assert a.data_to_send() == []
    second(a)
    a.send_finalize()
    a.send_finalize()
    assert [f["type"] for f in sent(a)] == ["input_audio_buffer.append", "input_audio_buffer.commit"]


def test_close_before_open_keeps_closing_and_sends_config_first():
    a = OpenAIAdapter(params(), "k", BASE)
    second(a, 0.5)
    a.send_close()
    a.receive_open()
    assert a.state is State.CLOSING and not a.done
    assert [f["type"] for f in sent(a)] == ["session.update", "input_audio_buffer.append", "input_audio_buffer.commit"]


def test_close_without_audio_is_done_at_once():
    a = make()
    a.send_close()
    assert a.done and a.error is None and a.state is State.CLOSED


# -- transcripts ----------------------------------------------------------------------------------
VAD_SESSION = [
    ev("session.created", session={"type": "transcription"}),
    ev("session.updated", session={"type": "transcription"}),
    started("item_1", 200),
    stopped("item_1", 1600),
    committed("item_1"),
    ev("conversation.item.added", item={}),
    delta("item_1", "Hello"),
    delta("item_1", " there."),
    completed("item_1", "Hello there."),
    ev("conversation.item.done", item={}),
    started("item_2", 2100),
    stopped("item_2", 3500),
    committed("item_2", "item_1"),
    delta("item_2", "How"),
    delta("item_2", " are you?"),
    completed("item_2", "How are you?"),
]


def test_vad_session_finals_and_turn_ends():
    a = make()
    second(a, 4.0)
    assert feed(a, *VAD_SESSION) == [
        Transcript("openai", "Hello there.", 0.2, 1.6, False, None),
        TurnEnd("openai", 1.6),
        Transcript("openai", "How are you?", 2.1, 3.5, False, None),
        TurnEnd("openai", 3.5),
    ]
    assert a.error is None and a.state is State.OPEN


def test_vad_session_with_partials_rebuilt_per_item():
    a = make(partial_results=True)
    second(a, 4.0)
    out = [(type(e).__name__, getattr(e, "transcript", None), getattr(e, "is_partial", None))
           for e in feed(a, *VAD_SESSION)]
    assert out == [
        ("Transcript", "Hello", True), ("Transcript", "Hello there.", True), ("Transcript", "Hello there.", False),
        ("TurnEnd", None, None),
        ("Transcript", "How", True), ("Transcript", "How are you?", True), ("Transcript", "How are you?", False),
        ("TurnEnd", None, None),
    ]


def test_out_of_order_completions_are_released_in_commit_order():
    a = make(partial_results=True)
    second(a, 5.0)
    out = feed(a, started("A", 100), stopped("A", 1000), committed("A"), started("B", 1500), stopped("B", 2500),
               committed("B", "A"), delta("B", "second"), completed("B", "Second."), delta("A", "first"))
    assert [(e.transcript, e.is_partial) for e in out if isinstance(e, Transcript)] == [
        ("second", True), ("first second", True)]  # partials cover every item not final yet, in order
    out = feed(a, completed("A", "First."))
    assert out == [Transcript("openai", "First.", 0.1, 1.0, False, None), TurnEnd("openai", 1.0),
                   Transcript("openai", "Second.", 1.5, 2.5, False, None), TurnEnd("openai", 2.5)]


def test_client_commits_take_their_times_from_the_audio_sent():
    a = make(model="gpt-live-transcribe", partial_results=True)
    second(a, 1.5)
    out = feed(a, delta("L1", "Hello"), delta("L1", " there"))  # live model: deltas before the commit
    assert [e.transcript for e in out] == ["Hello", "Hello there"]
    assert (out[0].start_time, out[0].end_time) == (0.0, 1.5)
    a.send_finalize()
    second(a, 1.0)
    a.send_finalize()
    assert [f["type"] for f in sent(a)][-4:] == ["input_audio_buffer.append", "input_audio_buffer.commit",
                                                 "input_audio_buffer.append", "input_audio_buffer.commit"]
    out = feed(a, committed("L1"), completed("L1", "Hello there."), committed("L2", "L1"), delta("L2", "Bye"),
               completed("L2", "Bye."))
    finals = [e for e in out if isinstance(e, Transcript) and not e.is_partial]
    assert [(f.transcript, f.start_time, f.end_time) for f in finals] == [("Hello there.", 0.0, 1.5),
                                                                          ("Bye.", 1.5, 2.5)]
    assert not any(isinstance(e, TurnEnd) for e in out)  # no VAD, no turn end


def test_live_deltas_under_another_id_are_folded_into_the_committed_item():
    a = make(model="gpt-live-transcribe", partial_results=True)
    second(a, 1.0)
    feed(a, delta("pending", "Hello"), delta("pending", " there"))
    a.send_finalize()
    out = feed(a, committed("item_9"), delta("item_9", " you"), completed("item_9", "Hello there you."))
    assert [(e.transcript, e.is_partial) for e in out] == [("Hello there you", True), ("Hello there you.", False)]
    second(a, 0.05)
    feed(a, delta("late", "x"))  # streamed, then the close commit comes back empty: dropped, not awaited
    a.send_close()
    feed(a, error("input_audio_buffer_commit_empty"))
    assert a.done and a.error is None


def test_commit_during_vad_speech_then_vad_stop():
    a = make()
    second(a, 2.0)
    feed(a, started("X", 500))
    a.send_finalize()  # mid-speech: commits 0..2.0, which OpenAI names after the speech_started item
    second(a, 1.5)
    out = feed(a, committed("X"), completed("X", "Hello there"), stopped("Y", 3200), committed("Y", "X"),
               completed("Y", "friend."))
    assert out == [Transcript("openai", "Hello there", 0.5, 2.0, False, None),
                   Transcript("openai", "friend.", 2.0, 3.2, False, None), TurnEnd("openai", 3.2)]


def test_finals_never_overlap_and_empty_items_give_no_final():
    a = make()
    second(a, 4.0)
    out = feed(a, started("A", 0), stopped("A", 1500), committed("A"), completed("A", "One."),
               started("B", 1200), stopped("B", 2000), committed("B"), completed("B", "  "),  # noise: empty
               started("C", 1800), stopped("C", 3000), committed("C"), completed("C", "Two."))
    assert out == [Transcript("openai", "One.", 0.0, 1.5, False, None), TurnEnd("openai", 1.5),
                   Transcript("openai", "Two.", 1.8, 3.0, False, None), TurnEnd("openai", 3.0)]


def test_stale_events_of_released_items_are_ignored():
    a = make(partial_results=True)
    second(a, 2.0)
    feed(a, started("A", 0), stopped("A", 1000), committed("A"), completed("A", "One."))
    assert feed(a, completed("A", "One."), delta("A", "late"), committed("A")) == []
    a.send_close()  # the second committed("A") answered no commit of ours: the close commit is awaited
    assert not a.done
    feed(a, error("input_audio_buffer_commit_empty"))
    assert a.done and a.error is None


def test_failed_item_is_skipped_and_the_session_goes_on():
    a = make()
    second(a, 3.0)
    failed = ev("conversation.item.input_audio_transcription.failed", item_id="A", content_index=0,
                error={"type": "server_error", "code": None, "message": "oops", "param": None})
    out = feed(a, started("A", 0), stopped("A", 1000), committed("A"), started("B", 1100), stopped("B", 2000),
               committed("B"), completed("B", "Two."), failed)
    assert out == [Transcript("openai", "Two.", 1.1, 2.0, False, None), TurnEnd("openai", 2.0)]
    assert a.error is None


# -- end of stream, raw mode, errors --------------------------------------------------------------
def test_close_commits_and_waits_for_every_item():
    a = make()
    second(a, 3.0)
    feed(a, started("A", 100), stopped("A", 1200))  # VAD ended a turn: its commit is still to come
    a.send_close()
    assert [f["type"] for f in sent(a)][-1] == "input_audio_buffer.commit"
    assert feed(a, committed("A")) == [] and not a.done
    feed(a, committed("B", "A"), delta("B", "Bye"))
    assert not a.done
    out = feed(a, completed("B", "Bye."))
    assert not a.done  # A is still transcribing: finals go out in order
    out = feed(a, completed("A", "Hi."))
    assert [e.transcript for e in out if isinstance(e, Transcript)] == ["Hi.", "Bye."]
    assert a.done and a.error is None and a.state is State.CLOSED
    a.receive_close(1000, "")
    assert a.error is None


def test_close_commit_refused_as_empty_is_benign():
    a = make()
    second(a, 2.0)
    feed(a, started("A", 100), stopped("A", 1990), committed("A"), completed("A", "Hi."))
    a.send_close()  # 10 ms after the VAD commit: OpenAI answers commit_empty
    assert not a.done
    feed(a, error("input_audio_buffer_commit_empty", "buffer too small"))
    assert a.done and a.error is None


def test_end_of_stream_frames_complete_a_session():
    a = make()
    second(a, 0.5)
    a.send_close()
    out = feed(a, *END_OF_STREAM_FRAMES)
    assert a.done and a.error is None
    assert out == [Transcript("openai", "Bye.", 0.0, 0.5, False, None)]


@pytest.mark.parametrize("code", [1000, 1005])
def test_clean_close_while_closing(code):
    a = make()
    second(a)
    a.send_close()
    a.receive_close(code, "")
    assert a.done and a.error is None


def test_raw_mode_forwards_every_frame_and_still_knows_the_end():
    a = make(parse_json=False, partial_results=True)
    second(a, 4.0)
    frames = [json.dumps(f) for f in VAD_SESSION] + ['{"type":"something.new","x":1}']
    assert feed(a, *frames) == [Raw(f) for f in frames]
    a.send_close()
    eos = list(END_OF_STREAM_FRAMES)
    out = feed(a, *eos)
    assert a.done and a.error is None
    assert out == [Raw(f) for f in eos[:4]]  # done at completed: conversation.item.done comes after the end


def test_raw_mode_error_frame_is_forwarded_then_fails():
    a = make(parse_json=False)
    err = json.dumps(error("invalid_api_key", "Incorrect API key provided."))
    assert feed(a, err) == [Raw(err)]
    assert isinstance(a.error, ProviderError) and a.state is State.CLOSED


@pytest.mark.parametrize("code,param,hint", [
    ("invalid_api_key", None, "refused the API key"),
    ("invalid_value", "session.audio.input.transcription.model", "param session.audio.input.transcription.model"),
    ("session_expired", None, "maximum duration"),
    (None, None, "OpenAI reported an error: boom"),
])
def test_fatal_error_events(code, param, hint):
    a = make()
    second(a)
    feed(a, error(code, "boom", param=param))
    assert a.state is State.CLOSED and a.done
    assert type(a.error) is ProviderError and hint in str(a.error)
    assert a.error.provider_code == (code or "invalid_request_error")
    assert a.error.provider_message == "boom"


def test_commit_empty_while_open_is_not_an_error():
    a = make()
    second(a, 0.05)
    a.send_finalize()
    feed(a, error("input_audio_buffer_commit_empty"))
    assert a.error is None and a.state is State.OPEN


@pytest.mark.parametrize("code,reason,oa_code,hint", [
    (3000, "invalid_request_error.invalid_api_key", "invalid_api_key", "API key"),
    (1011, "", 1011, "unexpectedly"),
    (1000, "", 1000, "unexpectedly"),
])
def test_close_codes(code, reason, oa_code, hint):
    a = make()
    a.receive_close(code, reason)
    assert isinstance(a.error, ProviderError) and a.error.provider_code == oa_code and hint in str(a.error)
    assert a.error.provider_message == (reason or None)


@pytest.mark.parametrize("frame", [
    "not json", "", "[1]", "null", '"error"', '{"no_type": 1}', '{"type": 7}', b"\x00binary", b"",
    json.dumps(delta(5, "x")),
    json.dumps(delta("A", 7)),
    json.dumps(ev(COMPLETED, item_id="A", transcript=None)),
    json.dumps(started("A", "soon")),
    json.dumps(stopped("A", True)),
    json.dumps(ev("input_audio_buffer.committed", item_id=None)),
])
def test_garbage_is_a_protocol_error_never_an_exception(frame):
    a = make(partial_results=True)
    a.receive_frame(frame)
    assert isinstance(a.error, UpstreamProtocolError) and a.state is State.CLOSED and a.done
    assert a.events_received() == []
    a.receive_frame(json.dumps(completed("A", "x")))
    a.receive_close(1000, "")
    assert a.events_received() == []


@pytest.mark.parametrize("msg", [
    ev("rate_limits.updated", rate_limits=[]),
    ev("conversation.item.input_audio_transcription.segment", item_id="A", id="s", start=0.0, end=1.0,
       speaker="A", text="x", content_index=0),
    ev("input_audio_buffer.cleared"),
    ev("response.created", response={}),
    ev("conversation.item.input_audio_transcription.something_new"),
])
def test_unknown_and_informational_types_are_ignored(msg):
    a = make()
    assert feed(a, msg) == [] and a.error is None and a.state is State.OPEN


# -- the simulator's engine wired to the adapter --------------------------------------------------
TEXT = "Hello, how are you today? I am calling about my order. It was supposed to arrive on Monday."
SCRIPT = Script.from_text(TEXT)


def wire(a: OpenAIAdapter, engine: OpenAIEngine, bytes_per_second: int) -> list:
    """Deliver the adapter's frames to the engine, and the engine's answers back; return events."""
    events = []
    while frames := a.data_to_send():
        for f in frames:
            msg = json.loads(f)
            if msg["type"] == "session.update":
                engine.config = apply_session_update(engine.config, msg["session"])
                out = []
            elif msg["type"] == "input_audio_buffer.append":
                out = engine.advance(engine.t + len(base64.b64decode(msg["audio"])) / bytes_per_second)
            else:
                assert msg == {"type": "input_audio_buffer.commit"}
                out = engine.commit()
            events += feed(a, *out)
    return events


def simulate(a: OpenAIAdapter, seconds: float, *, chunk_s: float = 0.1, finalize_at: float | None = None,
             rate_bytes: int = 48000) -> list:
    engine = OpenAIEngine(SCRIPT, seed="t")
    chunk = b"\x00" * int(rate_bytes * chunk_s)
    events, t = [], 0.0
    while t < seconds - 1e-9:
        a.send_audio(chunk, 0.0)
        t += chunk_s
        if finalize_at is not None and abs(t - finalize_at) < 1e-6:
            a.send_finalize()
        events += wire(a, engine, rate_bytes)
    a.send_close()
    events += wire(a, engine, rate_bytes)
    return events


@pytest.mark.parametrize("partials", [False, True])
@pytest.mark.parametrize("encoding,rate,bps", [("pcm_s16le", 24000, 48000), ("pcm_mulaw", 8000, 8000)])
def test_simulated_vad_session(partials, encoding, rate, bps):
    a = make(partial_results=partials, encoding=encoding, sample_rate=rate)
    ev_ = simulate(a, 12.0, rate_bytes=bps)
    assert a.done and a.error is None
    finals = [e for e in ev_ if isinstance(e, Transcript) and not e.is_partial]
    assert " ".join(f.transcript for f in finals) == TEXT
    assert all(f.words is None for f in finals)
    for f1, f2 in zip(finals, finals[1:]):
        assert f1.end_time <= f2.start_time
    assert sum(isinstance(e, TurnEnd) for e in ev_) == 3
    partial_events = [e for e in ev_ if isinstance(e, Transcript) and e.is_partial]
    assert bool(partial_events) == partials
    for i, e in enumerate(ev_):  # each turn_end follows its final
        if isinstance(e, TurnEnd):
            assert isinstance(ev_[i - 1], Transcript) and not ev_[i - 1].is_partial
    # the segment of a VAD item starts at its first word less the prefix padding
    assert finals[0].start_time == pytest.approx(SCRIPT.words[0].start - 0.3, abs=1e-3)


def test_simulated_session_closed_mid_sentence_gets_the_rest_by_the_close_commit():
    a = make()
    ev_ = simulate(a, 7.5)  # "It was" heard, "supposed to arrive on Monday." not yet
    finals = [e for e in ev_ if isinstance(e, Transcript)]
    assert [f.transcript for f in finals] == ["Hello, how are you today?", "I am calling about my order.", "It was"]
    assert finals[2].end_time == pytest.approx(7.5)  # a client commit ends where the audio sent does
    assert sum(isinstance(e, TurnEnd) for e in ev_) == 2 and a.done and a.error is None


@pytest.mark.parametrize("model", ["gpt-live-transcribe", "gpt-realtime-whisper"])
def test_simulated_live_model_finals_only_at_commits(model):
    a = make(model=model, partial_results=True)
    ev_ = simulate(a, 12.0, finalize_at=1.6)
    finals = [e for e in ev_ if isinstance(e, Transcript) and not e.is_partial]
    assert [f.transcript for f in finals] == ["Hello, how are", TEXT[len("Hello, how are "):]]
    assert (finals[0].start_time, finals[0].end_time) == pytest.approx((0.0, 1.6))
    assert not any(isinstance(e, TurnEnd) for e in ev_)
    partials = [e.transcript for e in ev_ if isinstance(e, Transcript) and e.is_partial]
    assert partials[0] == "Hello," and partials[1] == "Hello, how"  # streamed as the words are heard
    after = partials[partials.index("Hello, how are") + 1]
    assert after == "you"  # the next item's partial starts afresh after the final
