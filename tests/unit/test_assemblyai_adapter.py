"""AssemblyAIAdapter: AssemblyAI frames in, unified events out (no sockets).

Frames come from two places: hand-written sessions shaped like AssemblyAI's documented message
sequences (docs "Message Sequence Breakdown", Universal-Streaming and Universal-3 Pro), and the
simulator's transcript engine (``routeraudio.testing.assemblyai.AssemblyAIEngine``) driven offline.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routeraudio.config import ListenParams
from routeraudio.errors import ProviderError, UpstreamProtocolError
from routeraudio.events import Raw, Transcript, TurnEnd, Word
from routeraudio.providers.assemblyai import (FORMAT_WAIT_S, AssemblyAIAdapter, error_from,
                                              language_code, parse_turn, turn_silence_ms)
from routeraudio.providers.base import State
from routeraudio.testing.assemblyai import AssemblyAIEngine, parse_options, termination_message
from routeraudio.testing.base import Script

BASE = "ws://127.0.0.1:9/v3/ws"
US = "universal-streaming-english"


def make(**kw) -> AssemblyAIAdapter:
    q = {"provider": "assemblyai", "encoding": "pcm_s16le", "sample_rate": "16000"}
    q.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in kw.items()})
    a = AssemblyAIAdapter(ListenParams.from_query(q), "aai-secret", BASE)
    a.receive_open()
    return a


def query_of(a: AssemblyAIAdapter) -> dict[str, str]:
    parts = urlsplit(a.connect_request().url)
    return {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}


def feed(a: AssemblyAIAdapter, *frames) -> list:
    for f in frames:
        a.receive_frame(f if isinstance(f, (str, bytes)) else json.dumps(f))
    return a.events_received()


def w(text, start, end, final=True, speaker=None):
    d = {"start": start, "end": end, "text": text, "confidence": 0.9, "word_is_final": final}
    if speaker is not None:
        d["speaker"] = speaker
    return d


def turn(order, words, *, eot=False, formatted=False, transcript=None, **extra):
    if transcript is None:
        transcript = " ".join(x["text"] for x in words if x["word_is_final"])
    msg = {"type": "Turn", "turn_order": order, "turn_is_formatted": formatted, "end_of_turn": eot,
           "transcript": transcript, "end_of_turn_confidence": 0.9 if eot else 0.01, "words": words,
           "utterance": transcript if eot else ""}
    msg.update(extra)
    return msg


TERMINATION = termination_message(3.0, 3.0)

# Universal-Streaming with format_turns=true, as in the docs' sequence for "Hi my name is Sonny."
SONNY = [
    turn(0, [w("hi", 1920, 2000, False)]),
    turn(0, [w("hi", 1920, 2000), w("my", 2800, 2880, False)]),
    turn(0, [w("hi", 1920, 2000), w("my", 2800, 2880), w("name", 2960, 3040, False)]),
    turn(0, [w("hi", 1920, 2000), w("my", 2800, 2880), w("name", 2960, 3040), w("is", 3100, 3200),
             w("sonny", 3300, 3600)], eot=True),
    turn(0, [w("Hi", 1920, 2000), w("my", 2800, 2880), w("name", 2960, 3040), w("is", 3100, 3200),
             w("Sonny.", 3300, 3600)], eot=True, formatted=True),
]
SONNY_WORDS = (Word("Hi", 1.92, 2.0), Word("my", 2.8, 2.88), Word("name", 2.96, 3.04), Word("is", 3.1, 3.2),
               Word("Sonny.", 3.3, 3.6))


# -- connect_request ------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding,rate,channels,expect", [
    ("pcm_s16le", 16000, 1, ("pcm_s16le", "16000")),
    ("pcm_s16le", 44100, 1, ("pcm_s16le", "44100")),
    ("pcm_s16le", 48000, 2, ("pcm_s16le", "48000")),
    ("pcm_mulaw", 8000, 1, ("pcm_mulaw", "8000")),
    ("pcm_mulaw", 16000, 1, ("pcm_s16le", "16000")),
    ("pcm_mulaw", 8000, 2, ("pcm_s16le", "8000")),
    ("ogg_opus", 48000, 1, ("pcm_s16le", "16000")),
    ("webm", 48000, 2, ("pcm_s16le", "16000")),
    ("mp3", 44100, 1, ("pcm_s16le", "16000")),
])
def test_connect_request_per_encoding_plan(encoding, rate, channels, expect):
    a = make(encoding=encoding, sample_rate=rate, channels=channels)
    req = a.connect_request()
    assert req.url.startswith(BASE + "?")
    assert req.headers == (("Authorization", "aai-secret"), ("AssemblyAI-Version", "2025-05-12"))
    assert req.subprotocols == ()
    q = query_of(a)
    assert (q["encoding"], q["sample_rate"]) == expect
    assert q["speech_model"] == "universal-3-5-pro"
    opts, ignored = parse_options({k: [v] for k, v in q.items()})  # the simulator (AssemblyAI's rules) accepts it
    assert ignored == [] and opts.sample_rate == int(expect[1])


@pytest.mark.parametrize("kw,expect,absent", [
    ({}, {"language_codes": '["en"]', "min_turn_silence": "100", "max_turn_silence": "500"},
     ["format_turns", "speaker_labels"]),
    ({"model": US}, {"format_turns": "true", "min_turn_silence": "400", "max_turn_silence": "500"},
     ["language_codes"]),
    ({"model": US, "punctuate": False}, {"format_turns": "false"}, []),
    ({"model": "whisper-rt", "language": "de"}, {"format_turns": "true"}, ["language_codes"]),
    ({"model": "universal-streaming-multilingual", "language": "es"}, {"format_turns": "true"}, ["language_codes"]),
    ({"diarize": True}, {"speaker_labels": "true"}, []),
    ({"endpointing": 0}, {}, ["min_turn_silence", "max_turn_silence"]),
    ({"endpointing": 20}, {"min_turn_silence": "100", "max_turn_silence": "100"}, []),
    ({"endpointing": 60000}, {"min_turn_silence": "100", "max_turn_silence": "3600"}, []),
    ({"model": US, "endpointing": 200}, {"min_turn_silence": "200", "max_turn_silence": "200"}, []),
    ({"language": "pt-BR"}, {"language_codes": '["pt"]'}, []),
    ({"language": "multi"}, {}, ["language_codes"]),
    ({"model": "u3-rt-pro", "language": "fr"}, {"speech_model": "u3-rt-pro", "language_codes": '["fr"]'}, []),
    ({"model": "universal-3-6"}, {"speech_model": "universal-3-6"}, ["language_codes", "format_turns"]),
])
def test_query_maps_every_option(kw, expect, absent):
    q = query_of(make(**kw))
    for k, v in expect.items():
        assert q[k] == v, k
    for k in absent:
        assert k not in q
    parse_options({k: [v] for k, v in q.items()})


def test_pure_helpers():
    assert turn_silence_ms(0, True) is None
    assert turn_silence_ms(500, False) == (100, 500)
    assert turn_silence_ms(1500, True) == (400, 1500)
    assert language_code("pt_BR") == language_code("PT-br") == "pt"


def test_base_url_with_its_own_query_and_url_encoding():
    a = AssemblyAIAdapter(ListenParams.from_query({"provider": "assemblyai", "encoding": "pcm_s16le",
                                                   "sample_rate": "16000", "model": "a:b/c"}),
                          "k", "wss://streaming.eu.assemblyai.com/v3/ws?x=1")
    assert a.connect_request().url.startswith("wss://streaming.eu.assemblyai.com/v3/ws?x=1&speech_model=a%3Ab%2Fc&")


def test_default_url_and_registration():
    from routeraudio.providers import adapter_class

    assert adapter_class("assemblyai") is AssemblyAIAdapter
    a = AssemblyAIAdapter(ListenParams.from_query({"provider": "assemblyai", "encoding": "mp3",
                                                   "sample_rate": "44100"}), "k")
    assert a.connect_request().url.startswith("wss://streaming.assemblyai.com/v3/ws?speech_model=")


# -- audio framing --------------------------------------------------------------------------------
def ms_of(frame: bytes, rate=16000, width=2) -> float:
    return len(frame) * 1000 / rate / width


def test_audio_is_rechunked_into_100_ms_messages():
    a = make()
    for i in range(12):  # 20 ms frames
        a.send_audio(bytes([i]) * 640, float(i))
    out = a.data_to_send()
    assert [ms_of(f) for f in out] == [100.0, 100.0]
    assert out[0] == b"".join(bytes([i]) * 640 for i in range(5))
    a.send_audio(bytes(32000 * 3), 20.0)  # 3 s at once: never more than 1000 ms a message
    assert [ms_of(f) for f in a.data_to_send()] == [100.0] * 30


def test_finalize_pads_a_short_remainder_to_50_ms():
    a = make()
    a.send_audio(b"\x01\x02" * 480, 0.0)  # 30 ms
    a.send_finalize()
    pad, control = a.data_to_send()
    assert ms_of(pad) == 50.0 and pad == b"\x01\x02" * 480 + bytes(640)
    assert control == '{"type":"ForceEndpoint"}'
    a.send_audio(b"\x01\x02" * 1120, 1.0)  # 70 ms: sent as it is
    a.send_finalize()
    chunk, _ = a.data_to_send()
    assert ms_of(chunk) == 70.0
    a.send_finalize()  # nothing buffered: only the control message
    assert a.data_to_send() == ['{"type":"ForceEndpoint"}']


def test_mulaw_padding_is_mulaw_silence_and_odd_rates_keep_whole_samples():
    a = make(encoding="pcm_mulaw", sample_rate=8000)
    a.send_audio(b"\x10" * 1000, 0.0)  # 125 ms: one 100 ms message, 25 ms left
    a.send_close()
    first, rest, end = a.data_to_send()
    assert (len(first), len(rest)) == (800, 400) and rest == b"\x10" * 200 + b"\xff" * 200
    assert end == '{"type":"Terminate"}' and a.state is State.CLOSING
    b = make(sample_rate=22050)
    b.send_audio(b"\x00" * 4411, 0.0)  # 2205.5 samples
    b.send_close()
    chunks = [f for f in b.data_to_send() if isinstance(f, bytes)]
    assert [len(c) for c in chunks] == [4410, 2206]  # 100 ms, then 50.02 ms (1103 whole samples)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40000), st.booleans()), min_size=1, max_size=30),
       st.sampled_from([(8000, "pcm_mulaw", 1), (16000, "pcm_s16le", 2), (44100, "pcm_s16le", 2)]))
def test_every_message_holds_50_to_1000_ms(frames, fmt):
    rate, encoding, width = fmt
    a = make(encoding=encoding, sample_rate=rate)
    sent = bytearray()
    for i, (size, finalize) in enumerate(frames):
        data = bytes([i % 251]) * (size - size % width)
        sent += data
        a.send_audio(data, float(i))
        if finalize:
            a.send_finalize()
    a.send_close()
    audio = [f for f in a.data_to_send() if isinstance(f, bytes)]
    for f in audio:
        assert 50 <= len(f) * 1000 / rate / width <= 1000 and len(f) % width == 0
    got = b"".join(audio)
    assert len(got) >= len(sent)  # padding only adds silence...
    assert got.replace(b"\xff" if width == 1 else b"\x00", b"") == bytes(sent).replace(
        b"\xff" if width == 1 else b"\x00", b"")  # ...and never reorders or drops audio


def test_times_after_padding_are_the_clients():
    a = make(partial_results=True)
    a.send_audio(bytes(32000 + 960), 0.0)  # 1.03 s: 10 messages + 30 ms
    a.send_finalize()  # 20 ms of padding at 1.03 s
    assert a._client_time(1000) == 1.0 and a._client_time(1040) == 1.03  # inside the padding
    assert a._client_time(2050) == 2.03
    (t, _) = feed(a, turn(0, [w("late", 2050, 2450)], eot=True))
    assert t.words == (Word("late", 2.03, 2.43),) and (t.start_time, t.end_time) == (2.03, 2.43)


def test_a_remainder_waits_for_more_audio():
    a = make()
    a.send_audio(bytes(2240), 10.0)  # 70 ms
    assert a.data_to_send() == [] and a.next_deadline() is None
    a.send_audio(bytes(960), 10.1)  # 100 ms in all
    assert [ms_of(f) for f in a.data_to_send()] == [100.0]


def test_keepalive_and_nothing_after_close():
    a = make()
    a.send_keepalive()
    assert a.data_to_send() == ['{"type":"KeepAlive"}']
    a.send_close()
    a.send_close()
    a.send_audio(bytes(3200), 1.0)
    a.send_finalize()
    a.send_keepalive()
    assert a.data_to_send() == ['{"type":"Terminate"}']


def test_close_before_open_stays_closing():
    a = AssemblyAIAdapter(ListenParams.from_query({"provider": "assemblyai", "encoding": "pcm_s16le",
                                                   "sample_rate": "16000"}), "k")
    a.send_audio(bytes(3200), 0.0)
    a.send_close()
    a.receive_open()
    assert a.state is State.CLOSING
    assert a.data_to_send() == [bytes(3200), '{"type":"Terminate"}']


# -- transcripts ----------------------------------------------------------------------------------
def test_double_end_of_turn_gives_one_formatted_final():
    a = make(model=US)
    ev = feed(a, *SONNY)
    assert ev == [Transcript("assemblyai", "Hi my name is Sonny.", 1.92, 3.6, False, SONNY_WORDS),
                  TurnEnd("assemblyai", 3.6)]
    assert a.next_deadline() is None


def test_partials_are_cumulative_and_replace_each_other():
    a = make(model=US, partial_results=True)
    ev = feed(a, *SONNY)
    assert [(e.transcript, e.is_partial) for e in ev if isinstance(e, Transcript)] == [
        ("hi", True), ("hi my", True), ("hi my name", True), ("Hi my name is Sonny.", False)]
    assert feed(a, SONNY[2]) == []  # a late message of an ended turn


def test_messages_behind_a_pending_end_of_turn_keep_their_order():
    a = make(model=US, partial_results=True)
    nxt = turn(1, [w("bye", 4000, 4200, False)])
    ev = feed(a, SONNY[3], nxt)
    assert ev == [] and a.next_deadline() == 0.0  # waiting; asks for the time at once
    ev = feed(a, SONNY[4])
    assert [(type(e).__name__, getattr(e, "transcript", None)) for e in ev] == [
        ("Transcript", "Hi my name is Sonny."), ("TurnEnd", None), ("Transcript", "bye")]


def test_a_whole_turn_held_behind_a_pending_end_keeps_its_own_twin():
    a = make(model=US, partial_results=True)
    bye = [w("bye", 4000, 4200)]
    ev = feed(a, SONNY[3], turn(1, [dict(bye[0], word_is_final=False)]), turn(1, bye, eot=True),
              turn(1, [w("Bye.", 4000, 4200)], eot=True, formatted=True))
    assert ev == []
    ev = feed(a, SONNY[4])
    assert [(type(e).__name__, getattr(e, "transcript", None), getattr(e, "is_partial", None)) for e in ev] == [
        ("Transcript", "Hi my name is Sonny.", False), ("TurnEnd", None, None), ("Transcript", "bye", True),
        ("Transcript", "Bye.", False), ("TurnEnd", None, None)]
    assert a.next_deadline() is None and a._held == []


def test_a_late_formatted_twin_is_dropped_after_the_wait():
    a = make(model=US)
    assert feed(a, SONNY[3]) == []
    a.receive_timer(100.0)  # learns the time
    assert a.next_deadline() == 100.0 + FORMAT_WAIT_S
    a.receive_timer(100.0 + FORMAT_WAIT_S)
    ev = a.events_received()
    assert ev[0].transcript == "hi my name is sonny" and ev[1] == TurnEnd("assemblyai", 3.6)
    assert feed(a, SONNY[4]) == [] and a.next_deadline() is None


def test_unpunctuated_universal_streaming_has_no_wait():
    a = make(model=US, punctuate=False)
    ev = feed(a, *SONNY[:4])
    assert [e.transcript for e in ev if isinstance(e, Transcript)] == ["hi my name is sonny"]
    assert feed(a, SONNY[4]) == []  # were a twin to come anyway, it would be a duplicate


def test_universal_3_pro_formats_partials_and_ends_once():
    a = make(partial_results=True)
    words = [w("Hello,", 300, 600, False), w("world.", 640, 1000, False)]
    ev = feed(a, turn(0, words[:1], formatted=True, transcript="Hello,"),
              turn(0, words, formatted=True, transcript="Hello, world."),
              turn(0, [dict(x, word_is_final=True) for x in words], eot=True, formatted=True))
    assert [(type(e).__name__, getattr(e, "transcript", None), getattr(e, "is_partial", None)) for e in ev] == [
        ("Transcript", "Hello,", True), ("Transcript", "Hello, world.", True),
        ("Transcript", "Hello, world.", False), ("TurnEnd", None, None)]


def test_partials_only_when_asked_for():
    assert [type(e) for e in feed(make(model=US), *SONNY)] == [Transcript, TurnEnd]


def test_diarization_speakers_are_strings_unknown_is_null():
    words = [w("yes", 100, 300, speaker="A"), w("no", 400, 600, speaker="UNKNOWN"), w("ok", 700, 900)]
    (t, _) = feed(make(diarize=True), turn(0, words, eot=True, formatted=True, speaker_label="B"))
    assert [x.speaker for x in t.words] == ["A", None, "B"]
    (t2, _) = feed(make(), turn(0, words, eot=True, formatted=True, speaker_label="B"))
    assert [x.speaker for x in t2.words] == [None, None, None]


def test_an_end_of_turn_without_speech_gives_nothing():
    a = make()
    assert feed(a, turn(0, [], eot=True, formatted=True, transcript="")) == []
    assert feed(a, turn(1, [w("x", 10, 20)], eot=True, formatted=True))[0].transcript == "x"


def test_parse_turn_pure():
    t = parse_turn(turn(3, [w("a", 1, 2)], eot=True, speaker_label="A"))
    assert (t.order, t.end_of_turn, t.formatted, t.words[0].speaker) == (3, True, False, "A")


# -- end of stream, raw mode, errors --------------------------------------------------------------
def test_termination_after_terminate_is_done():
    a = make()
    a.send_close()
    feed(a, turn(0, [w("bye", 10, 200)], eot=True, formatted=True), TERMINATION)
    assert a.done and a.state is State.CLOSED and a.error is None
    a.receive_close(1000, "")
    assert a.error is None


def test_an_unfinished_turn_is_delivered_at_termination():
    a = make(model=US, partial_results=True)
    a.send_close()
    ev = feed(a, SONNY[2], TERMINATION)
    assert [(e.transcript, e.is_partial) for e in ev] == [("hi my name", True), ("hi my name", False)]
    assert a.done and a.error is None


def test_a_pending_end_of_turn_goes_out_at_the_close():
    a = make(model=US)
    a.send_close()
    feed(a, SONNY[3])
    a.receive_close(1000, "")
    ev = a.events_received()
    assert [type(e) for e in ev] == [Transcript, TurnEnd] and a.done and a.error is None


def test_termination_before_close_stream_is_an_error():
    a = make()
    feed(a, TERMINATION)
    assert isinstance(a.error, ProviderError) and a.done


@pytest.mark.parametrize("code", [1000, 1005])
def test_clean_close_after_terminate(code):
    a = make()
    a.send_close()
    a.receive_close(code, "")
    assert a.done and a.error is None


def test_close_1000_while_open_is_an_error():
    a = make()
    a.receive_close(1000, "")
    assert isinstance(a.error, ProviderError) and a.error.provider_code == 1000


def test_raw_mode_forwards_every_text_frame():
    a = make(parse_json=False, model=US)
    frames = [json.dumps(f) for f in SONNY] + ['{"type":"SomethingNew","x":1}']
    assert feed(a, *frames) == [Raw(f) for f in frames]
    a.send_close()
    end = json.dumps(TERMINATION)
    assert feed(a, end) == [Raw(end)] and a.done and a.error is None


def test_raw_mode_error_frame_is_forwarded_then_fails():
    a = make(parse_json=False)
    err = '{"type":"Error","error_code":3005,"error":"Session Cancelled: An error occurred"}'
    assert feed(a, err) == [Raw(err)]
    assert isinstance(a.error, ProviderError) and a.error.provider_code == 3005


@pytest.mark.parametrize("msg,code,message,hint", [
    ({"type": "Error", "error_code": 3007, "error": "Input duration violation: 20 ms. Expected between 50 and "
      "1000 ms"}, 3007, "Input duration violation: 20 ms. Expected between 50 and 1000 ms", "50-1000 ms"),
    ({"type": "Error", "error_code": 3008, "error": "Session Expired: Maximum session duration exceeded"}, 3008,
     "Session Expired: Maximum session duration exceeded", "expired"),
    ({"type": "Error", "error_code": 1008, "error": "Unauthorized Connection: Missing Authorization header"}, 1008,
     "Unauthorized Connection: Missing Authorization header", "API key"),
    ({"type": "Error", "error": "Session Cancelled: An error occurred"}, None,
     "Session Cancelled: An error occurred", "ended the session"),
    ({"error": "legacy untyped error"}, None, "legacy untyped error", "ended the session"),
    ({"type": "Error", "error_code": "x", "error": 5}, None, None, "ended the session"),
])
def test_error_frames(msg, code, message, hint):
    a = make()
    feed(a, msg)
    assert a.state is State.CLOSED and a.done and type(a.error) is ProviderError
    assert (a.error.provider_code, a.error.provider_message) == (code, message)
    assert hint in str(a.error)


def test_an_error_delivers_the_held_final_first():
    a = make(model=US)
    ev = feed(a, SONNY[3], {"type": "Error", "error_code": 3005, "error": "boom"})
    assert [type(e) for e in ev] == [Transcript, TurnEnd] and a.error.provider_code == 3005


@pytest.mark.parametrize("code,reason,hint", [
    (3007, "See Error message for details", "real time"),
    (3009, "Too many concurrent sessions", "concurrent"),
    (1008, "Unauthorized connection: Incorrect padding", "unauthorized"),
    (1011, "", "retry"),
    (4999, "weird", "ended the session"),
])
def test_close_codes(code, reason, hint):
    a = make()
    a.receive_close(code, reason)
    assert a.error.provider_code == code and a.error.provider_message == (reason or None)
    assert hint in str(a.error)
    assert str(error_from(code, reason)) == str(a.error)


@pytest.mark.parametrize("frame", [
    "not json", "", "[1, 2]", "null", '"Turn"', '{"no_type": 1}', '{"type": 5}', b"\x00\x01binary", b"",
    json.dumps({"type": "Turn"}),
    json.dumps(turn("0", [w("a", 1, 2)])),
    json.dumps(turn(0, [w("a", 1, 2)], end_of_turn="yes")),
    json.dumps(dict(turn(0, [w("a", 1, 2)]), transcript=None)),
    json.dumps(turn(0, [{"start": 1, "end": 2}], transcript="x")),
    json.dumps(turn(0, [w("a", "1", 2)])),
    json.dumps(turn(0, [w("a", 1, True)])),
    json.dumps(turn(0, "words", transcript="x")),
])
def test_garbage_is_a_protocol_error_never_an_exception(frame):
    a = make(partial_results=True)
    a.receive_frame(frame)
    assert isinstance(a.error, UpstreamProtocolError)
    assert a.state is State.CLOSED and a.done and a.events_received() == []
    a.receive_frame(json.dumps(SONNY[3]))  # after CLOSED: ignored
    a.receive_close(1000, "")
    assert a.events_received() == []


@pytest.mark.parametrize("msg", [
    {"type": "Begin", "id": "x", "expires_at": 1, "configuration": {"model": "u3-rt-pro"}},
    {"type": "SpeechStarted", "timestamp": 1440, "confidence": 0.9},
    {"type": "Warning", "warning_code": 1, "warning": "something"},
    {"type": "Heartbeat", "total_audio_received_ms": 1, "total_duration_ms": 1, "realtime_factor": 1.0},
    {"type": "SpeakerRevision", "revisions": []},
    {"type": "Silence", "start_ms": 0, "end_ms": 1000},
    {"type": "TurnInfo", "whatever": True},
])
def test_unknown_and_informational_types_are_ignored(msg):
    a = make()
    assert feed(a, msg) == [] and a.error is None and a.state is State.OPEN


# -- replaying simulated sessions -----------------------------------------------------------------
TEXT = "Hello, how are you today? I am calling about my order. It was supposed to arrive on Monday."
SCRIPT = Script.from_text(TEXT, speakers=2)


def simulate(a: AssemblyAIAdapter, seconds: float, chunk_s: float = 0.1, finalize_at: float | None = None):
    """Drive the simulator's engine with the adapter's own query; feed what it says back."""
    opts, _ = parse_options({k: [v] for k, v in query_of(a).items()})
    engine = AssemblyAIEngine(opts, SCRIPT)
    events, t = [], 0.0
    while t < seconds - 1e-9:
        t = min(seconds, t + chunk_s)
        events += feed(a, *engine.advance(t))
        if finalize_at is not None and abs(t - finalize_at) < 1e-6:
            events += feed(a, *engine.force_endpoint())
    a.send_close()
    events += feed(a, *engine.force_endpoint(), termination_message(t, t))
    return events


@pytest.mark.parametrize("model", ["universal-3-5-pro", US])
@pytest.mark.parametrize("partials", [False, True])
@pytest.mark.parametrize("diarize", [False, True])
def test_simulated_session(model, partials, diarize):
    a = make(model=model, partial_results=partials, diarize=diarize)
    ev = simulate(a, 12.0)
    assert a.done and a.error is None
    finals = [e for e in ev if isinstance(e, Transcript) and not e.is_partial]
    assert " ".join(f.transcript for f in finals) == TEXT  # formatted, once
    for f1, f2 in zip(finals, finals[1:]):
        assert f1.end_time <= f2.start_time
    assert bool([e for e in ev if isinstance(e, Transcript) and e.is_partial]) == partials
    assert sum(isinstance(e, TurnEnd) for e in ev) == 3  # one per sentence, never two
    assert {x.speaker for f in finals for x in f.words} == ({"A", "B"} if diarize else {None})
    words = [x for f in finals for x in f.words]
    assert [(x.text, x.start_time, x.end_time) for x in words] == [(s.text, s.start, s.end) for s in SCRIPT]


def test_simulated_session_unpunctuated():
    ev = simulate(make(model=US, punctuate=False), 12.0)
    assert " ".join(e.transcript for e in ev if isinstance(e, Transcript)) == " ".join(s.word for s in SCRIPT)


def test_finalize_ends_the_turn_heard_so_far():
    a = make(model=US)
    ev = simulate(a, 12.0, finalize_at=1.6)  # mid-sentence: "are" ended at 1.52
    assert ev[:2] == [ev[0], TurnEnd("assemblyai", 1.52)] and ev[0].transcript == "Hello, how are"
    assert " ".join(e.transcript for e in ev if isinstance(e, Transcript)) == TEXT
