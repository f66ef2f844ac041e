"""SonioxAdapter: Soniox responses in, unified events out (no sockets).

Frames come from two places: hand-written responses shaped like Soniox's documented ones, and the
simulator's token engine (``routeraudio.testing.soniox.SonioxEngine``) driven offline.
"""

from __future__ import annotations

import json

import pytest

from routeraudio.config import ListenParams
from routeraudio.errors import ProviderError, UpstreamProtocolError
from routeraudio.events import Raw, Transcript, TurnEnd, Word
from routeraudio.providers.base import State
from routeraudio.providers.soniox import (SonioxAdapter, Token, complete_prefix, error_from_response,
                                          language_hint, words_from_tokens)
from routeraudio.testing.base import Script
from routeraudio.testing.soniox import END_OF_STREAM_FRAMES, SonioxEngine, parse_config

BASE = "ws://127.0.0.1:9/transcribe-websocket"


def make(**kw) -> SonioxAdapter:
    q = {"provider": "soniox", "encoding": "pcm_s16le", "sample_rate": "16000"}
    q.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in kw.items()})
    a = SonioxAdapter(ListenParams.from_query(q), "sx-secret", BASE)
    a.receive_open()
    return a


def start_of(a: SonioxAdapter) -> dict:
    return json.loads(a.data_to_send()[0])


def feed(a: SonioxAdapter, *frames) -> list:
    for f in frames:
        a.receive_frame(f if isinstance(f, (str, bytes)) else json.dumps(f))
    return a.events_received()


def tok(text, s=None, e=None, final=True, speaker=None):
    d = {"text": text, "is_final": final, "confidence": 0.9}
    if s is not None:
        d["start_ms"], d["end_ms"] = s, e
    if speaker is not None:
        d["speaker"] = speaker
    return d


def resp(*tokens, final_ms=0, total_ms=0, **extra):
    return {"tokens": list(tokens), "final_audio_proc_ms": final_ms, "total_audio_proc_ms": total_ms, **extra}


END = {"text": "<end>", "is_final": True}
FIN = {"text": "<fin>", "is_final": True}
FINISHED = resp(final_ms=4000, total_ms=4000, finished=True)

# A recorded-style session: "How are you?" then a pause (<end>), then "Fine." closed by finalize (<fin>).
# Non-final tokens are re-sent (and change) in every response until they turn final, once.
SESSION = [
    resp(tok("How", 600, 760, False, "1"), tok("'re", 780, 900, False, "1")),
    resp(tok("How", 600, 760, True, "1"), tok(" are", 780, 900, False, "1")),
    resp(tok(" are", 780, 900, False, "1"), tok(" you", 920, 1100, False, "1")),
    resp(tok(" are", 780, 900, True, "1"), tok(" you", 920, 1100, True, "1"), tok("?", 1100, 1100, True, "1")),
    resp(END),
    resp(),  # an empty progress response during silence
    resp(tok(" Fi", 2000, 2150, False, "2")),
    resp(tok(" Fi", 2000, 2150, True, "2"), tok("ne", 2150, 2300, False, "2")),
    resp(tok("ne", 2150, 2300, True, "2"), tok(".", 2300, 2300, True, "2"), FIN),
]


# -- the start request ------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding,rate,channels,expect", [
    ("pcm_s16le", 16000, 1, {"audio_format": "pcm_s16le", "sample_rate": 16000, "num_channels": 1}),
    ("pcm_s16le", 44100, 2, {"audio_format": "pcm_s16le", "sample_rate": 44100, "num_channels": 1}),
    ("pcm_s16le", 22050, 1, {"audio_format": "pcm_s16le", "sample_rate": 22050, "num_channels": 1}),
    ("pcm_mulaw", 8000, 1, {"audio_format": "mulaw", "sample_rate": 8000, "num_channels": 1}),
    ("pcm_mulaw", 8000, 2, {"audio_format": "pcm_s16le", "sample_rate": 8000, "num_channels": 1}),
    ("ogg_opus", 48000, 1, {"audio_format": "auto"}),
    ("webm", 48000, 2, {"audio_format": "auto"}),
    ("mp3", 44100, 1, {"audio_format": "auto"}),
])
def test_start_request_per_encoding_plan(encoding, rate, channels, expect):
    a = make(encoding=encoding, sample_rate=rate, channels=channels)
    cfg = start_of(a)
    for key in ("audio_format", "sample_rate", "num_channels"):
        assert cfg.get(key) == expect.get(key), key
    assert a.plan.convert == (channels == 2 and encoding.startswith("pcm"))
    assert cfg["model"] == "stt-rt-v5" and cfg["language_hints"] == ["en"]
    assert "api_key" not in cfg  # the key travels in the header only: both at once is rejected
    parse_config(json.dumps(cfg))  # the simulator (Soniox's rules) accepts it


def test_connect_request_is_the_bare_url_with_a_bearer_header():
    a = SonioxAdapter(ListenParams.from_query({"provider": "soniox", "encoding": "mp3", "sample_rate": "44100"}),
                      "sx-secret", BASE)
    req = a.connect_request()
    assert req.url == BASE and req.subprotocols == ()
    assert req.headers == (("Authorization", "Bearer sx-secret"),)
    assert SonioxAdapter(a.params, "k").connect_request().url == "wss://stt-rt.soniox.com/transcribe-websocket"


@pytest.mark.parametrize("endpointing,detection,delay", [
    (0, False, None), (1, True, 500), (300, True, 500), (500, True, 500), (1500, True, 1500),
    (3000, True, 3000), (3001, True, 3000), (60000, True, 3000),
])
def test_endpointing_is_clamped_into_sonioxs_range(endpointing, detection, delay):
    cfg = start_of(make(endpointing=endpointing))
    assert cfg["enable_endpoint_detection"] is detection
    assert cfg.get("max_endpoint_delay_ms") == delay
    parse_config(json.dumps(cfg))


@pytest.mark.parametrize("kw,expect,absent", [
    ({}, {"enable_speaker_diarization": False, "language_hints": ["en"]}, []),
    ({"diarize": True}, {"enable_speaker_diarization": True}, []),
    ({"language": "pt-BR"}, {"language_hints": ["pt"]}, []),
    ({"language": "zh_Hans"}, {"language_hints": ["zh"]}, []),
    ({"language": "fil"}, {}, ["language_hints"]),
    ({"model": "stt-rt-v4"}, {"model": "stt-rt-v4"}, []),
    ({"punctuate": False, "partial_results": True}, {}, ["punctuate", "enable_non_final_tokens"]),
])
def test_start_request_maps_every_option(kw, expect, absent):
    cfg = start_of(make(**kw))
    for k, v in expect.items():
        assert cfg[k] == v, k
    for k in absent:
        assert k not in cfg
    parse_config(json.dumps(cfg))


@pytest.mark.parametrize("tag,hint", [("en", "en"), ("EN-us", "en"), ("sr-Latn-RS", "sr"), ("yue", None),
                                      ("x", None), ("1a", None)])
def test_language_hint(tag, hint):
    assert language_hint(tag) == hint


# -- client side ----------------------------------------------------------------------------------
def test_audio_control_and_close_frames():
    a = make()
    assert json.loads(a.data_to_send()[0])["model"] == "stt-rt-v5"
    a.send_audio(b"", 1.0)  # an empty frame would end Soniox's stream
    a.send_audio(memoryview(b"\x01\x02"), 1.0)
    a.send_keepalive()
    a.send_finalize()
    assert a.data_to_send() == [b"\x01\x02", '{"type":"keepalive"}', '{"type":"finalize"}']
    a.send_close()
    assert a.state is State.CLOSING and not a.done
    a.send_close()
    a.send_audio(b"\x00\x00", 2.0)
    a.send_keepalive()
    a.send_finalize()
    out = a.data_to_send()
    assert out == [b""] and type(out[0]) is bytes  # the end of audio: one empty binary frame


def test_start_request_goes_before_anything_queued_while_connecting():
    a = SonioxAdapter(ListenParams.from_query({"provider": "soniox", "encoding": "pcm_s16le",
                                               "sample_rate": "16000"}), "k")
    a.send_audio(b"\x00\x00", 0.0)
    a.send_finalize()
    a.send_close()
    a.receive_open()
    assert a.state is State.CLOSING
    out = a.data_to_send()
    assert json.loads(out[0])["audio_format"] == "pcm_s16le"
    assert out[1:] == [b"\x00\x00", '{"type":"finalize"}', b""]


# -- transcripts ----------------------------------------------------------------------------------
def test_recorded_session_finals_only():
    a = make(diarize=True)
    ev = feed(a, *SESSION)
    assert ev == [
        Transcript("soniox", "How are you?", 0.6, 1.1, False,
                   (Word("How", 0.6, 0.76, "1"), Word("are", 0.78, 0.9, "1"), Word("you?", 0.92, 1.1, "1"))),
        TurnEnd("soniox", 1.1),
        Transcript("soniox", "Fine.", 2.0, 2.3, False, (Word("Fine.", 2.0, 2.3, "2"),)),
    ]
    assert a.error is None and a.state is State.OPEN


def test_soniox_tokens_re_sent_until_final():
    """The quirk: a final token comes once, non-final ones in every response until final; partials
    are the utterance so far and replace each other; no word is ever delivered twice."""
    a = make(partial_results=True)
    ev = feed(a, *SESSION)
    assert [(type(e).__name__, getattr(e, "transcript", None), getattr(e, "is_partial", None)) for e in ev] == [
        ("Transcript", "How're", True),  # a first guess...
        ("Transcript", "How are", True),  # ...replaced, not appended to
        ("Transcript", "How are you", True),
        ("Transcript", "How are you?", True),
        ("Transcript", "How are you?", False),
        ("TurnEnd", None, None),
        ("Transcript", "Fi", True),
        ("Transcript", "Fine", True),
        ("Transcript", "Fine.", False),
    ]
    finals = [e for e in ev if isinstance(e, Transcript) and not e.is_partial]
    assert [f.transcript for f in finals] == ["How are you?", "Fine."]
    words = [w.text for f in finals for w in f.words]
    assert words == ["How", "are", "you?", "Fine."]  # each once, although " are" came three times
    partials = [e.transcript for e in ev if isinstance(e, Transcript) and e.is_partial]
    assert partials == ["How're", "How are", "How are you", "How are you?", "Fi", "Fine"]
    assert all("<" not in t for t in partials)


def test_repeated_identical_responses_give_one_partial():
    a = make(partial_results=True)
    r = resp(tok("Hi", 100, 300, False))
    assert len(feed(a, r, r, r)) == 1


def test_markers_never_leak():
    a = make(partial_results=True)
    ev = feed(a, resp(tok("Yes", 0, 200, True), tok("<end>", final=False), tok("<fin>", final=False)),
              resp(END), resp(FIN), resp(END))
    texts = [e.transcript for e in ev if isinstance(e, Transcript)]
    assert texts == ["Yes", "Yes"] and not any("<" in t for t in texts)
    assert sum(isinstance(e, TurnEnd) for e in ev) == 1  # <end> without new words ends no turn


def test_fin_ends_a_segment_but_not_the_turn():
    a = make()
    ev = feed(a, resp(tok("One", 0, 300)), resp(FIN), resp(tok(" two", 400, 600)), resp(END))
    assert [type(e) for e in ev] == [Transcript, Transcript, TurnEnd]
    assert [e.transcript for e in ev[:2]] == ["One", "two"] and ev[2].end_time == 0.6


def test_finalize_then_endpoint_is_one_turn_end():
    a = make()
    ev = feed(a, resp(tok("One", 0, 300)), resp(FIN), resp(END), resp(END))
    assert [type(e) for e in ev] == [Transcript, TurnEnd]


def test_word_pieces_joined_across_responses():
    a = make()
    ev = feed(a, resp(tok("On", 0, 200), tok(" Mon", 300, 450), tok("day", 450, 600, False)),
              resp(tok("day", 450, 600), tok(".", 600, 600), END))
    (t, _) = ev
    assert [w.text for w in t.words] == ["On", "Monday."] and t.words[1] == Word("Monday.", 0.3, 0.6)


def test_without_endpoint_detection_finals_come_per_word():
    a = make(endpointing=0)
    ev = feed(a,
              resp(tok("On", 0, 200), tok(" Mon", 300, 450), tok("day", 450, 600, False)),  # "Mon" continues
              resp(tok("day", 450, 600), tok(" we", 700, 800, False)),  # "day" complete: " we" starts a word
              resp(tok(" we", 700, 800), tok(" go", 900, 1000), tok(".", 1000, 1000)),  # nothing in flight
              resp(tok(" Ok", 2000, 2100), FIN))
    assert [e.transcript for e in ev] == ["On", "Monday", "we go.", "Ok"]
    assert not any(isinstance(e, TurnEnd) for e in ev)


@pytest.mark.parametrize("pending,following,n", [
    ([], None, 0), (["a", " b"], None, 2), (["a", " b"], " c", 2), (["a", " b"], "c", 1),
    (["a", "b"], "c", 0), ([" a", "b"], ",", 0),
])
def test_complete_prefix(pending, following, n):
    toks = [Token(t, 0.0, 0.1, True) for t in pending]
    assert complete_prefix(toks, Token(following, 0.2, 0.3, False) if following else None) == n


def test_words_from_tokens():
    toks = [Token("Hel", 0.0, 0.1, True, "1"), Token("lo", 0.1, 0.2, True, "1"), Token(",", 0.2, 0.2, True, "1"),
            Token(" ", None, None, True), Token(" world", 0.3, 0.5, True, "2")]
    assert words_from_tokens(toks, True) == (Word("Hello,", 0.0, 0.2, "1"), Word("world", 0.3, 0.5, "2"))
    assert words_from_tokens(toks, False)[0].speaker is None
    assert words_from_tokens([Token("x", None, None, True)], False) is None


def test_tokens_without_times_have_no_words():
    a = make()
    (t, _) = feed(a, resp(tok("Hi"), tok(" there", 500, 700)), resp(END))
    assert t.transcript == "Hi there" and t.words is None and (t.start_time, t.end_time) == (0.5, 0.7)
    (t2,) = feed(a, resp(tok(" Bye"), FIN))
    assert t2.words is None and t2.start_time == t2.end_time == 0.7  # no times at all: the last end


def test_diarization_speakers_only_when_asked():
    (t, _) = feed(make(), resp(tok("Hi", 0, 100, speaker="1"), END))
    assert t.words[0].speaker is None
    (t2, _) = feed(make(diarize=True), resp(tok("Hi", 0, 100, speaker=2), END))
    assert t2.words[0].speaker == "2"


# -- end of stream, raw mode, errors --------------------------------------------------------------
def test_finished_response_flushes_and_is_done():
    a = make()
    a.send_close()
    ev = feed(a, resp(tok("Last", 0, 300), tok(" words", 300, 600)), FINISHED)
    assert [e.transcript for e in ev] == ["Last words"]
    assert a.done and a.state is State.CLOSED and a.error is None
    assert feed(a, resp(tok("late", 700, 800))) == []
    a.receive_close(1000, "")
    assert a.error is None


def test_end_of_stream_frames_complete_a_session():
    a = make()
    a.send_close()
    for f in END_OF_STREAM_FRAMES:
        a.receive_frame(f)
    assert a.done and a.error is None


@pytest.mark.parametrize("code", [1000, 1005])
def test_clean_close_after_end_of_audio_delivers_pending_finals(code):
    a = make()
    feed(a, resp(tok("Pending", 0, 300)))
    a.send_close()
    a.receive_close(code, "")
    assert a.done and a.error is None
    assert [e.transcript for e in a.events_received()] == ["Pending"]


def test_unexpected_close_delivers_finals_then_fails():
    a = make()
    feed(a, resp(tok("Got", 0, 300), tok(" this", 300, 500, False)))
    a.receive_close(1011, "internal")
    assert [e.transcript for e in a.events_received()] == ["Got"]  # the non-final " this" is not
    assert isinstance(a.error, ProviderError) and a.error.provider_code == 1011
    assert a.error.provider_message == "internal"


def test_raw_mode_forwards_every_frame():
    a = make(parse_json=False, partial_results=True)
    frames = [json.dumps(f) for f in SESSION] + ['{"something_new": 1}']
    assert feed(a, *frames) == [Raw(f) for f in frames]
    a.send_close()
    fin = json.dumps(FINISHED)
    assert feed(a, fin) == [Raw(fin)] and a.done and a.error is None


def test_raw_mode_error_is_forwarded_then_fails():
    a = make(parse_json=False)
    err = '{"error_code":400,"error_type":"model_not_available","error_message":"Invalid model specified."}'
    assert feed(a, err) == [Raw(err)]
    assert isinstance(a.error, ProviderError) and a.state is State.CLOSED


@pytest.mark.parametrize("msg,code,message,hint", [
    ({"error_code": 400, "error_type": "model_not_available", "error_message": "Invalid model specified.",
      "request_id": "r", "more_info": "https://soniox.com/docs/api-reference/errors#model-not-available"},
     400, "Invalid model specified.", "check model"),
    ({"error_code": 401, "error_type": "unauthenticated", "error_message": "Incorrect API key provided."},
     401, "Incorrect API key provided.", "rejected the API key"),
    ({"error_code": 503, "error_message": "Cannot continue request (code 4). Please restart the request."},
     503, "Cannot continue request (code 4). Please restart the request.", "start a new session"),
    ({"error_code": 429, "error_message": "Too many concurrent requests"}, 429, "Too many concurrent requests",
     "concurrent"),
    ({"error_code": 499, "error_message": "new"}, 499, "new", "Soniox reported an error"),
    ({"error_type": "odd", "error_code": True, "error_message": 5}, "odd", None, "no message"),
    ({"error_message": "only a message", "tokens": []}, None, "only a message", "only a message"),
])
def test_error_responses(msg, code, message, hint):
    a = make()
    feed(a, resp(tok("Before", 0, 300)))
    ev = feed(a, msg)
    assert [e.transcript for e in ev] == ["Before"]  # final tokens first, then the error
    assert a.state is State.CLOSED and a.done and type(a.error) is ProviderError
    assert (a.error.provider_code, a.error.provider_message) == (code, message)
    assert hint in str(a.error)
    assert str(error_from_response(msg)) == str(a.error)


@pytest.mark.parametrize("frame", [
    "not json", "", "[1, 2]", "null", '"tokens"', b"\xff\xfe", b"\x00\x01",
    json.dumps({"tokens": {}}), json.dumps({"tokens": [1]}), json.dumps({"tokens": [{"is_final": True}]}),
    json.dumps({"tokens": [{"text": 5}]}), json.dumps(resp(tok("x", "0", 100))),
    json.dumps(resp(tok("x", True, 100))), json.dumps(resp({"text": "x", "is_final": "yes"})),
    json.dumps({"tokens": [], "finished": "yes"}),
])
def test_garbage_is_a_protocol_error_never_an_exception(frame):
    a = make(partial_results=True)
    a.receive_frame(frame)
    assert isinstance(a.error, UpstreamProtocolError)
    assert a.state is State.CLOSED and a.done
    assert a.events_received() == []
    a.receive_frame(json.dumps(resp(tok("x", 0, 100), END)))  # after CLOSED: ignored
    a.receive_close(1000, "")
    assert a.events_received() == []


def test_a_malformed_response_changes_nothing_before_failing():
    a = make()
    feed(a, resp(tok("Kept", 0, 300)))
    ev = feed(a, resp(tok(" lost", 300, 400), {"text": None}))
    assert [e.transcript for e in ev] == ["Kept"]  # the bad frame's good token never counts
    assert isinstance(a.error, UpstreamProtocolError)


def test_binary_frames_with_json_are_read_like_text():
    a = make()
    ev = feed(a, json.dumps(resp(tok("Hi", 0, 100), END)).encode())
    assert ev == [Transcript("soniox", "Hi", 0.0, 0.1, False, (Word("Hi", 0.0, 0.1),)), TurnEnd("soniox", 0.1)]


@pytest.mark.parametrize("msg", [{}, {"type": "something_new"}, {"tokens": [], "new_field": [1, 2]},
                                 {"final_audio_proc_ms": 10}])
def test_unknown_messages_are_ignored(msg):
    a = make()
    assert feed(a, msg) == [] and a.error is None and a.state is State.OPEN


# -- replaying simulated sessions -----------------------------------------------------------------
SCRIPT = Script.from_text("Hello, how are you today? I am calling about my order. It was supposed to "
                          "arrive on Monday.", speakers=2)


def simulate(a: SonioxAdapter, seconds: float, chunk_s: float = 0.1, finalize_at: float | None = None):
    """Drive the simulator's engine with the adapter's own start request; feed what it says back."""
    engine = SonioxEngine(parse_config(a.data_to_send()[0]), SCRIPT)
    events, t = [], 0.0
    while t < seconds - 1e-9:
        t = min(seconds, t + chunk_s)
        events += feed(a, *(r.msg for r in engine.advance(t)))
        if finalize_at is not None and abs(t - finalize_at) < 1e-6:
            events += feed(a, *(r.msg for r in engine.finalize()))
    a.send_close()
    events += feed(a, *(r.msg for r in engine.finish()))
    assert a.done and a.error is None
    return events


@pytest.mark.parametrize("partials", [False, True])
@pytest.mark.parametrize("diarize", [False, True])
@pytest.mark.parametrize("endpointing", [0, 500])
def test_simulated_session(partials, diarize, endpointing):
    a = make(partial_results=partials, diarize=diarize, endpointing=endpointing)
    ev = simulate(a, 12.0)
    finals = [e for e in ev if isinstance(e, Transcript) and not e.is_partial]
    partial_events = [e for e in ev if isinstance(e, Transcript) and e.is_partial]
    assert " ".join(f.transcript for f in finals) == " ".join(w.text for w in SCRIPT)
    for f1, f2 in zip(finals, finals[1:]):
        assert f1.end_time <= f2.start_time  # non-overlapping segments
    assert bool(partial_events) == partials
    assert all("<" not in e.transcript for e in partial_events)
    assert sum(isinstance(e, TurnEnd) for e in ev) == (3 if endpointing else 0)
    if endpointing:
        assert len(finals) == 3  # one per utterance
    speakers = {w.speaker for f in finals for w in f.words}
    assert speakers == ({"1", "2"} if diarize else {None})
    words = [w for f in finals for w in f.words]
    assert [(w.text, w.start_time, w.end_time) for w in words] == [(s.text, s.start, s.end) for s in SCRIPT]


def test_simulated_long_endpoint_delay_merges_utterances():
    a = make(endpointing=3000)  # longer than the script's 1.2 s pauses: one utterance until the end
    ev = simulate(a, 12.5)  # the last word ends at 9.2 s: the endpoint is due at 12.2 s
    assert [type(e) for e in ev] == [Transcript, TurnEnd]
    assert ev[0].transcript == " ".join(w.text for w in SCRIPT)


def test_finalize_flushes_the_words_heard_so_far():
    a = make(endpointing=0, partial_results=True)
    engine_input = simulate(a, 1.6, finalize_at=1.6)  # mid-sentence: "are" ended at 1.52
    finals = [e.transcript for e in engine_input if isinstance(e, Transcript) and not e.is_partial]
    assert " ".join(finals) == "Hello, how are"
