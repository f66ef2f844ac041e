"""DeepgramAdapter: Deepgram frames in, unified events out (no sockets).

Frames come from two places: a hand-written session shaped like Deepgram's documented messages, and
the simulator's transcript engine (``routeraudio.testing.deepgram.DeepgramEngine``) driven offline.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from routeraudio.config import ListenParams
from routeraudio.errors import ProviderError, UpstreamProtocolError
from routeraudio.events import Raw, Transcript, TurnEnd, Word
from routeraudio.providers.base import State
from routeraudio.providers.deepgram import DeepgramAdapter, _close_error, _transcript_from_results
from routeraudio.testing.base import Script, ScriptWord
from routeraudio.testing.deepgram import DeepgramEngine, metadata_message, parse_options

BASE = "ws://127.0.0.1:9/v1/listen"


def make(**kw) -> DeepgramAdapter:
    q = {"provider": "deepgram", "encoding": "pcm_s16le", "sample_rate": "16000"}
    q.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in kw.items()})
    a = DeepgramAdapter(ListenParams.from_query(q), "dg-secret", BASE)
    a.receive_open()
    return a


def query_of(a: DeepgramAdapter) -> dict[str, str]:
    parts = urlsplit(a.connect_request().url)
    return {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}


def feed(a: DeepgramAdapter, *frames) -> list:
    for f in frames:
        a.receive_frame(f if isinstance(f, (str, bytes)) else json.dumps(f))
    return a.events_received()


def word(w, s, e, p=None, spk=None):
    d = {"word": w, "start": s, "end": e, "confidence": 0.9}
    if p is not None:
        d["punctuated_word"] = p
    if spk is not None:
        d["speaker"] = spk
    return d


def results(words, *, start, duration, is_final=True, speech_final=False, transcript=None, **extra):
    if transcript is None:
        transcript = " ".join(w.get("punctuated_word", w["word"]) for w in words)
    msg = {"type": "Results", "channel_index": [0, 1], "duration": duration, "start": start,
           "is_final": is_final, "speech_final": speech_final,
           "channel": {"alternatives": [{"transcript": transcript, "confidence": 0.9, "words": words}]},
           "metadata": {"request_id": "r", "model_uuid": "m",
                        "model_info": {"name": "general-nova-3", "version": "v", "arch": "nova-3"}},
           "from_finalize": False}
    msg.update(extra)
    return msg


UTTERANCE_END = {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": 1.2}
METADATA = {"type": "Metadata", "transaction_key": "deprecated", "request_id": "r", "sha256": "00",
            "created": "2026-01-01T00:00:00.000Z", "duration": 3.0, "channels": 1}

# A recorded-style session: interim, interim, final+speech_final, UtteranceEnd, silence final, ...
HELLO = [word("hello", 0.32, 0.6, "Hello,", 0), word("world", 0.64, 1.2, "world.", 0)]
BYE = [word("bye", 2.1, 2.5, "Bye.", 1)]
SESSION = [
    results(HELLO[:1], start=0.0, duration=1.0, is_final=False),
    results(HELLO, start=0.0, duration=1.5, is_final=False),
    results(HELLO, start=0.0, duration=1.72, speech_final=True),
    UTTERANCE_END,
    {"type": "SpeechStarted", "channel": [0, 1], "timestamp": 2.0},
    results([], start=1.72, duration=0.2, transcript=""),
    results(BYE, start=1.92, duration=0.8, is_final=False),
    results(BYE, start=1.92, duration=1.08, from_finalize=True),
]


# -- connect_request ------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding,rate,channels,expect", [
    ("pcm_s16le", 16000, 1, {"encoding": "linear16", "sample_rate": "16000", "channels": "1"}),
    ("pcm_s16le", 44100, 2, {"encoding": "linear16", "sample_rate": "44100", "channels": "1"}),
    ("pcm_mulaw", 8000, 1, {"encoding": "mulaw", "sample_rate": "8000", "channels": "1"}),
    ("pcm_mulaw", 8000, 2, {"encoding": "linear16", "sample_rate": "8000", "channels": "1"}),
    ("ogg_opus", 48000, 1, {}),
    ("webm", 48000, 2, {}),
    ("mp3", 44100, 1, {}),
])
def test_connect_request_per_encoding_plan(encoding, rate, channels, expect):
    a = make(encoding=encoding, sample_rate=rate, channels=channels)
    req = a.connect_request()
    assert req.url.startswith(BASE + "?")
    assert req.headers == (("Authorization", "Token dg-secret"),)
    assert req.subprotocols == ()
    q = query_of(a)
    for key in ("encoding", "sample_rate", "channels"):
        assert q.get(key) == expect.get(key)
    assert q["model"] == "nova-3" and q["language"] == "en" and q["vad_events"] == "false"
    # whatever the plan, the simulator (Deepgram's rules) accepts the request
    parse_options({k: [v] for k, v in q.items()})


@pytest.mark.parametrize("kw,expect,absent", [
    ({}, {"punctuate": "true", "smart_format": "true", "diarize": "false", "interim_results": "false",
          "endpointing": "500"}, ["utterance_end_ms"]),
    ({"punctuate": False, "diarize": True}, {"punctuate": "false", "smart_format": "false", "diarize": "true"}, []),
    ({"partial_results": True}, {"interim_results": "true", "utterance_end_ms": "1000"}, []),
    ({"partial_results": True, "endpointing": 1500}, {"utterance_end_ms": "1500", "endpointing": "1500"}, []),
    ({"partial_results": True, "endpointing": 0}, {"interim_results": "true", "endpointing": "false"},
     ["utterance_end_ms"]),
    ({"endpointing": 0}, {"interim_results": "false", "endpointing": "false"}, ["utterance_end_ms"]),
    ({"model": "nova-2-phonecall", "language": "pt-BR"}, {"model": "nova-2-phonecall", "language": "pt-BR"}, []),
])
def test_query_maps_every_option(kw, expect, absent):
    q = query_of(make(**kw))
    for k, v in expect.items():
        assert q[k] == v, k
    for k in absent:
        assert k not in q
    parse_options({k: [v] for k, v in q.items()})


def test_base_url_with_its_own_query_and_url_encoding():
    a = DeepgramAdapter(ListenParams.from_query({"provider": "deepgram", "encoding": "mp3", "sample_rate": "44100",
                                                 "model": "a:b/c"}), "k", "wss://dg.example/v1/listen?tier=x")
    url = a.connect_request().url
    assert url.startswith("wss://dg.example/v1/listen?tier=x&model=a%3Ab%2Fc&")


def test_default_url_and_registration():
    from routeraudio.providers import adapter_class

    assert adapter_class("deepgram") is DeepgramAdapter
    a = DeepgramAdapter(ListenParams.from_query({"provider": "deepgram", "encoding": "mp3", "sample_rate": "44100"}), "k")
    assert a.connect_request().url.startswith("wss://api.deepgram.com/v1/listen?")


# -- client side ----------------------------------------------------------------------------------
def test_audio_control_and_close_frames():
    a = make()
    a.send_audio(b"", 1.0)
    a.send_audio(memoryview(b"\x01\x02"), 1.0)
    a.send_keepalive()
    a.send_finalize()
    assert a.data_to_send() == [b"\x01\x02", '{"type":"KeepAlive"}', '{"type":"Finalize"}']
    a.send_close()
    assert a.state is State.CLOSING and not a.done
    a.send_close()
    a.send_audio(b"\x00\x00", 2.0)
    a.send_keepalive()
    a.send_finalize()
    assert a.data_to_send() == ['{"type":"CloseStream"}']
    assert all(json.loads(f) for f in ['{"type":"KeepAlive"}', '{"type":"Finalize"}', '{"type":"CloseStream"}'])


def test_close_before_open_stays_closing():
    a = DeepgramAdapter(ListenParams.from_query({"provider": "deepgram", "encoding": "pcm_s16le",
                                                 "sample_rate": "16000"}), "k")
    a.send_audio(b"\x00\x00", 0.0)
    a.send_close()
    a.receive_open()
    assert a.state is State.CLOSING
    assert a.data_to_send() == [b"\x00\x00", '{"type":"CloseStream"}']


# -- transcripts ----------------------------------------------------------------------------------
def test_recorded_session_finals_only():
    a = make()
    ev = feed(a, *SESSION)
    assert ev == [
        Transcript("deepgram", "Hello, world.", 0.0, 1.72, False,
                   (Word("Hello,", 0.32, 0.6), Word("world.", 0.64, 1.2))),
        TurnEnd("deepgram", 1.2),
        Transcript("deepgram", "Bye.", 1.92, 3.0, False, (Word("Bye.", 2.1, 2.5),)),
    ]
    assert a.error is None and a.state is State.OPEN


def test_recorded_session_with_partials():
    a = make(partial_results=True)
    ev = feed(a, *SESSION)
    assert [(type(e).__name__, getattr(e, "transcript", None), getattr(e, "is_partial", None)) for e in ev] == [
        ("Transcript", "Hello,", True),
        ("Transcript", "Hello, world.", True),
        ("Transcript", "Hello, world.", False),
        ("TurnEnd", None, None),
        ("Transcript", "Bye.", True),
        ("Transcript", "Bye.", False),
    ]


def test_partial_repeats_are_dropped():
    a = make(partial_results=True)
    ev = feed(a, results(HELLO, start=0.0, duration=1.3, is_final=False),
              results(HELLO, start=0.0, duration=1.5, is_final=False))
    assert len(ev) == 1 and ev[0].is_partial


def test_speech_final_then_utterance_end_is_one_turn():
    a = make(partial_results=True)
    ev = feed(a, results(HELLO, start=0.0, duration=1.7, speech_final=True), UTTERANCE_END,
              UTTERANCE_END, results(BYE, start=1.7, duration=1.0, speech_final=True), UTTERANCE_END)
    assert [type(e) for e in ev] == [Transcript, TurnEnd, Transcript, TurnEnd]


def test_utterance_end_without_speech_final_ends_the_turn():
    a = make(partial_results=True)
    ev = feed(a, results(HELLO, start=0.0, duration=1.7), {**UTTERANCE_END, "last_word_end": 1.25})
    assert ev[-1] == TurnEnd("deepgram", 1.25)


def test_utterance_end_before_the_final_of_its_words():
    a = make(partial_results=True)
    ev = feed(a, results(HELLO, start=0.0, duration=1.5, is_final=False), UTTERANCE_END,
              results(HELLO, start=0.0, duration=1.7, speech_final=True))
    assert [(type(e), getattr(e, "is_partial", None)) for e in ev] == [
        (Transcript, True), (Transcript, False), (TurnEnd, None)]


def test_late_utterance_end_of_an_ended_turn_does_not_end_the_next_one():
    a = make(partial_results=True)
    ev = feed(a, results(HELLO, start=0.0, duration=1.7, speech_final=True),
              results(BYE, start=1.7, duration=1.0, is_final=False),
              UTTERANCE_END,  # last_word_end 1.2: HELLO's, before BYE's first word
              results(BYE, start=1.7, duration=1.0))
    assert [type(e) for e in ev] == [Transcript, TurnEnd, Transcript, Transcript]


def test_no_turn_end_without_words():
    a = make()
    assert feed(a, results([], start=0.0, duration=2.0, transcript="", speech_final=True), UTTERANCE_END) == []


def test_diarization_speakers_are_strings():
    a = make(diarize=True)
    (t, _) = feed(a, results(HELLO + [word("yes", 1.3, 1.5, "Yes.", 1)], start=0.0, duration=1.6, speech_final=True))
    assert [w.speaker for w in t.words] == ["0", "0", "1"]
    (t2, _) = feed(make(), results(HELLO, start=0.0, duration=1.6, speech_final=True))
    assert [w.speaker for w in t2.words] == [None, None]


def test_unpunctuated_words():
    a = make(punctuate=False)
    (t,) = feed(a, results([word("hello", 0.1, 0.4), word("world", 0.5, 0.9)], start=0.0, duration=1.0))
    assert t.transcript == "hello world"
    assert [w.text for w in t.words] == ["hello", "world"]
    (t2,) = feed(make(punctuate=False), results(HELLO, start=0.0, duration=1.3))
    assert [w.text for w in t2.words] == ["hello", "world"]  # punctuated_word ignored when not asked for


def test_transcript_from_results_pure():
    msg = results(HELLO, start=0.5, duration=0.3)  # window narrower than the words
    t = _transcript_from_results(msg, "deepgram", True)
    assert (t.start_time, t.end_time) == (0.32, 1.2)
    assert _transcript_from_results(results([], start=0, duration=1, transcript="  "), "deepgram", True) is None
    assert _transcript_from_results({**msg, "channel": {"alternatives": []}}, "deepgram", True) is None


# -- end of stream, raw mode, errors --------------------------------------------------------------
def test_metadata_after_close_stream_is_done():
    a = make()
    assert feed(a, METADATA) == [] and not a.done  # Metadata while open changes nothing
    a.send_close()
    feed(a, results(BYE, start=1.0, duration=1.5), METADATA)
    assert a.done and a.state is State.CLOSED and a.error is None
    assert feed(a, results(HELLO, start=3, duration=1)) == []
    a.receive_close(1000, "")
    assert a.error is None


@pytest.mark.parametrize("code", [1000, 1005])
def test_clean_close_after_close_stream(code):
    a = make()
    a.send_close()
    a.receive_close(code, "")
    assert a.done and a.error is None


def test_raw_mode_forwards_every_text_frame():
    a = make(parse_json=False, partial_results=True)
    frames = [json.dumps(f) for f in SESSION] + ['{"type":"SomethingNew","x":1}']
    ev = feed(a, *frames)
    assert ev == [Raw(f) for f in frames]
    a.send_close()
    meta = json.dumps(METADATA)
    assert feed(a, meta) == [Raw(meta)] and a.done and a.error is None


def test_raw_mode_error_frame_is_forwarded_then_fails():
    a = make(parse_json=False)
    err = '{"type":"Error","variant":"SchemaError","description":"bad","message":"x"}'
    assert feed(a, err) == [Raw(err)]
    assert isinstance(a.error, ProviderError) and a.state is State.CLOSED


def test_error_frame():
    a = make()
    feed(a, {"type": "Error", "variant": "SchemaError", "description": "Could not parse message", "message": "{"})
    assert a.state is State.CLOSED and a.done
    assert type(a.error) is ProviderError
    assert a.error.provider_code == "SchemaError"
    assert a.error.provider_message == "Could not parse message"
    assert "Could not parse message" in str(a.error)


@pytest.mark.parametrize("msg,code,message", [
    ({"type": "Error", "code": "LEGACY", "description": "old style"}, "LEGACY", "old style"),
    ({"type": "Error", "variant": 5, "code": {"x": 1}, "description": None}, None, None),
])
def test_error_frames_with_odd_fields(msg, code, message):
    a = make()
    feed(a, msg)
    assert type(a.error) is ProviderError
    assert (a.error.provider_code, a.error.provider_message) == (code, message)


NET_0001 = ("Deepgram did not receive audio data or a text message within the timeout window. "
            "See https://dpgr.am/net0001")


@pytest.mark.parametrize("code,reason,dg_code,hint", [
    (1011, NET_0001, "NET-0001", "keep_alive"),
    (1011, "NET-0001", "NET-0001", "keep_alive"),
    (1008, "DATA-0000", "DATA-0000", "check encoding/sample_rate"),
    (1008, "bad audio https://dpgr.am/data0000", "DATA-0000", "could not decode the audio"),
    (1011, "NET-0000", "NET-0000", "retry"),
    (1011, "", 1011, "retry"),
    (1008, "", 1008, "encoding"),
    (1000, "", 1000, "before close_stream"),
    (4000, "weird", 4000, "unexpectedly"),
])
def test_close_reasons(code, reason, dg_code, hint):
    a = make()
    feed(a, results(HELLO, start=0, duration=1.3))
    a.receive_close(code, reason)
    assert a.state is State.CLOSED and a.done
    assert isinstance(a.error, ProviderError)
    assert a.error.provider_code == dg_code
    assert a.error.provider_message == (reason or None)
    assert hint in str(a.error)


def test_close_reason_during_closing_is_still_an_error():
    a = make()
    a.send_close()
    a.receive_close(1011, NET_0001)
    assert a.error is not None and a.error.provider_code == "NET-0001"
    assert _close_error(1011, NET_0001).provider_message == NET_0001


@pytest.mark.parametrize("frame", [
    "not json", "", "[1, 2]", "null", '"Results"', '{"no_type": 1}', '{"type": 5}',
    b"\x00\x01binary", b"",
    json.dumps({"type": "Results", "start": 0, "duration": 1}),
    json.dumps(results(HELLO, start="0", duration=1)),
    json.dumps(results([{"word": "x", "start": None, "end": 1}], start=0, duration=1)),
    json.dumps(results([{"start": 0, "end": 1}], start=0, duration=1, transcript="x")),
    json.dumps({**results(HELLO, start=0, duration=1), "channel": {"alternatives": [{"words": []}]}}),
    json.dumps({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": "late"}),
])
def test_garbage_is_a_protocol_error_never_an_exception(frame):
    a = make(partial_results=True)
    a.receive_frame(frame)
    assert isinstance(a.error, UpstreamProtocolError)
    assert a.state is State.CLOSED and a.done
    assert a.events_received() == []
    a.receive_frame(json.dumps(results(HELLO, start=0, duration=1)))  # after CLOSED: ignored
    a.receive_close(1000, "")
    assert a.events_received() == []


def test_interim_frames_are_validated_even_without_partials():
    a = make()
    a.receive_frame(json.dumps(results(HELLO, start=None, duration=1, is_final=False)))
    assert isinstance(a.error, UpstreamProtocolError)


@pytest.mark.parametrize("msg", [
    {"type": "SpeechStarted", "channel": [0, 1], "timestamp": 1.0},
    {"type": "Warning", "description": "something new"},
    {"type": "ConfigureSuccess", "request_id": "r"},
    {"type": "TurnInfo", "event": "Update"},
])
def test_unknown_and_informational_types_are_ignored(msg):
    a = make()
    assert feed(a, msg) == [] and a.error is None and a.state is State.OPEN


# -- replaying simulated sessions -----------------------------------------------------------------
SCRIPT = Script.from_text("Hello, how are you today? I am calling about my order. It was supposed to "
                          "arrive on Monday.", speakers=2)


def simulate(a: DeepgramAdapter, seconds: float, chunk_s: float = 0.1, finalize_at: float | None = None):
    """Drive the simulator's engine with the adapter's own query; feed what it says back."""
    opts = parse_options({k: [v] for k, v in query_of(a).items()})
    engine = DeepgramEngine(opts, SCRIPT, request_id="r")
    events, t = [], 0.0
    while t < seconds - 1e-9:
        t = min(seconds, t + chunk_s)
        events += feed(a, *engine.advance(t))
        if finalize_at is not None and abs(t - finalize_at) < 1e-6:
            events += feed(a, *engine.finalize())
    a.send_close()
    events += feed(a, *engine.close(), metadata_message("r", "00", t, 1))
    return events


@pytest.mark.parametrize("partials", [False, True])
@pytest.mark.parametrize("diarize", [False, True])
def test_simulated_session(partials, diarize):
    a = make(partial_results=partials, diarize=diarize)
    ev = simulate(a, 12.0)
    assert a.done and a.error is None
    finals = [e for e in ev if isinstance(e, Transcript) and not e.is_partial]
    partial_events = [e for e in ev if isinstance(e, Transcript) and e.is_partial]
    assert " ".join(f.transcript for f in finals) == " ".join(w.text for w in SCRIPT)
    for f1, f2 in zip(finals, finals[1:]):
        assert f1.end_time <= f2.start_time  # non-overlapping segments
    assert bool(partial_events) == partials
    assert sum(isinstance(e, TurnEnd) for e in ev) == 3  # one per sentence, never two
    speakers = {w.speaker for f in finals for w in f.words}
    assert speakers == ({"0", "1"} if diarize else {None})
    # every turn_end follows the final of its last word
    for i, e in enumerate(ev):
        if isinstance(e, TurnEnd):
            before = [x for x in ev[:i] if isinstance(x, Transcript) and not x.is_partial]
            assert before and before[-1].words[-1].end_time == e.end_time


def test_simulated_session_with_endpointing_off_has_no_turn_ends():
    a = make(endpointing=0)
    ev = simulate(a, 12.0)
    assert not any(isinstance(e, TurnEnd) for e in ev)
    assert " ".join(e.transcript for e in ev) == " ".join(w.text for w in SCRIPT)


def test_finalize_flushes_the_words_heard_so_far():
    a = make()
    ev = simulate(a, 12.0, finalize_at=1.6)  # mid-sentence: "are" ended at 1.52
    first = ev[0]
    assert isinstance(first, Transcript) and first.transcript == "Hello, how are"
    assert " ".join(e.transcript for e in ev if isinstance(e, Transcript)) == " ".join(w.text for w in SCRIPT)


def test_script_word_times_survive_translation():
    a = make(diarize=True)
    ev = simulate(a, 12.0)
    words = [w for e in ev if isinstance(e, Transcript) for w in e.words]
    assert [(w.text, w.start_time, w.end_time, w.speaker) for w in words] == [
        (s.text, s.start, s.end, str(s.speaker)) for s in SCRIPT]


def test_repeated_script():
    s = Script([ScriptWord("a", 0.0, 0.5)], repeat=True, period=1.0)
    assert s.word(3) == ScriptWord("a", 3.0, 3.5)
