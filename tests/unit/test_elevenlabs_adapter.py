"""ElevenLabsAdapter: ElevenLabs frames in, unified events out (no sockets).

Frames come from hand-written sessions shaped like the SDK's models, and from the simulator's transcript
engine (``routeraudio.testing.elevenlabs.ScribeEngine``) driven offline with the adapter's own query.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from routeraudio.config import ListenParams
from routeraudio.errors import ProviderError, UpstreamProtocolError
from routeraudio.events import Raw, Transcript, TurnEnd, Word
from routeraudio.providers.base import State
from routeraudio.providers.elevenlabs import (ASAP, CLOSE_SETTLE_S, TWIN_WAIT_S, ElevenLabsAdapter, speaker_label,
                                              vad_silence_secs, words_from)
from routeraudio.testing.base import Script
from routeraudio.testing.elevenlabs import ScribeEngine, parse_options

BASE = "ws://127.0.0.1:9/v1/speech-to-text/realtime"
SECOND = b"\x00\x01" * 16000  # one second of 16 kHz s16


def make(**kw) -> ElevenLabsAdapter:
    q = {"provider": "elevenlabs", "encoding": "pcm_s16le", "sample_rate": "16000"}
    q.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in kw.items()})
    a = ElevenLabsAdapter(ListenParams.from_query(q), "xi-secret", BASE)
    a.receive_open()
    return a


def query_of(a: ElevenLabsAdapter) -> dict[str, list[str]]:
    return parse_qs(urlsplit(a.connect_request().url).query, keep_blank_values=True)


def feed(a: ElevenLabsAdapter, *frames) -> list:
    for f in frames:
        a.receive_frame(f if isinstance(f, (str, bytes)) else json.dumps(f))
    return a.events_received()


def tick(a: ElevenLabsAdapter, now: float) -> list:
    """What the driver does: fire the adapter's timer while it is due at ``now``."""
    for _ in range(10):
        d = a.next_deadline()
        if d is None or d > now:
            break
        a.receive_timer(now)
    return a.events_received()


def sent(a: ElevenLabsAdapter) -> list[dict]:
    return [json.loads(f) for f in a.data_to_send()]


def w(text, start, end, speaker=None, kind="word"):
    d = {"text": text, "start": start, "end": end, "type": kind, "logprob": -0.1}
    if speaker is not None:
        d["speaker_id"] = speaker
    return d


def plain(text):
    return {"message_type": "committed_transcript", "text": text}


def stamped(text, words):
    items = []
    for i, x in enumerate(words):
        if i:
            items.append({"text": " ", "start": words[i - 1]["end"], "end": x["start"], "type": "spacing",
                          "logprob": 0.0})
        items.append(x)
    return {"message_type": "committed_transcript_with_timestamps", "text": text, "language_code": "en",
            "words": items}


def partial(text):
    return {"message_type": "partial_transcript", "text": text}


HELLO = [w("Hello,", 0.3, 0.6), w("world.", 0.65, 1.1)]
BYE = [w("Bye.", 2.0, 2.4)]


# -- connect_request ------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding,rate,channels,fmt,sample_rate", [
    ("pcm_s16le", 16000, 1, "pcm_16000", 16000),
    ("pcm_s16le", 8000, 1, "pcm_8000", 8000),
    ("pcm_s16le", 22050, 1, "pcm_22050", 22050),
    ("pcm_s16le", 44100, 2, "pcm_44100", 44100),  # downmixed, rate kept
    ("pcm_s16le", 48000, 1, "pcm_48000", 48000),
    ("pcm_mulaw", 8000, 1, "ulaw_8000", 8000),
    ("pcm_mulaw", 16000, 1, "pcm_16000", 16000),  # mu-law only at 8 kHz: decoded
    ("pcm_mulaw", 8000, 2, "pcm_8000", 8000),
    ("ogg_opus", 48000, 1, "pcm_16000", 16000),
    ("webm", 48000, 2, "pcm_16000", 16000),
    ("mp3", 44100, 1, "pcm_16000", 16000),
])
def test_connect_request_per_encoding_plan(encoding, rate, channels, fmt, sample_rate):
    a = make(encoding=encoding, sample_rate=rate, channels=channels)
    req = a.connect_request()
    assert req.url.startswith(BASE + "?")
    assert req.headers == (("xi-api-key", "xi-secret"),) and req.subprotocols == ()
    q = query_of(a)
    assert q["audio_format"] == [fmt] and q["model_id"] == ["scribe_v2_realtime"]
    assert q["include_timestamps"] == ["true"] and q["language_code"] == ["en"]
    assert a.plan.sample_rate == sample_rate
    a.send_audio(b"\xff" * 320, 0.0)
    assert json.loads(a.data_to_send()[0])["sample_rate"] == sample_rate
    parse_options(q)  # the simulator (ElevenLabs' rules) accepts it


@pytest.mark.parametrize("endpointing,strategy,secs", [
    (500, "vad", "0.5"), (100, "vad", "0.3"), (1234, "vad", "1.234"), (3000, "vad", "3.0"),
    (60000, "vad", "3.0"), (0, "manual", None)])
def test_endpointing_picks_the_commit_strategy(endpointing, strategy, secs):
    q = query_of(make(endpointing=endpointing))
    assert q["commit_strategy"] == [strategy]
    assert q.get("vad_silence_threshold_secs") == ([secs] if secs else None)
    parse_options(q)
    assert vad_silence_secs(endpointing or 1) in (0.3, 0.5, 1.234, 3.0)


@pytest.mark.parametrize("kw,expect,absent", [
    ({"model": "scribe_v3_live", "language": "pt-BR"}, {"model_id": ["scribe_v3_live"], "language_code": ["pt"]}, []),
    ({"language": "auto"}, {}, ["language_code"]),
    ({"diarize": True}, {"diarize": ["true"]}, []),
    ({"partial_results": True, "punctuate": False}, {}, ["diarize"]),
])
def test_query_maps_options(kw, expect, absent):
    q = query_of(make(**kw))
    for k, v in expect.items():
        assert q[k] == v
    for k in absent:
        assert k not in q
    parse_options(q)


def test_base_url_with_its_own_query_and_default_url():
    from routeraudio.providers import adapter_class

    assert adapter_class("elevenlabs") is ElevenLabsAdapter
    p = ListenParams.from_query({"provider": "elevenlabs", "encoding": "pcm_s16le", "sample_rate": "16000"})
    assert ElevenLabsAdapter(p, "k").connect_request().url.startswith(
        "wss://api.elevenlabs.io/v1/speech-to-text/realtime?model_id=scribe_v2_realtime&audio_format=pcm_16000&")
    url = ElevenLabsAdapter(p, "k", "wss://api.eu.residency.elevenlabs.io/x?a=1").connect_request().url
    assert url.startswith("wss://api.eu.residency.elevenlabs.io/x?a=1&model_id=")


# -- client side ----------------------------------------------------------------------------------
def test_audio_goes_up_as_base64_json_in_bounded_whole_sample_chunks():
    a = make()
    a.send_audio(b"", 0.0)
    a.send_audio(memoryview(b"\x01\x02\x03"), 0.0)  # odd byte carried to the next chunk
    a.send_audio(b"\x04" + SECOND, 0.0)
    msgs = sent(a)
    audio = b"".join(base64.b64decode(m["audio_base_64"]) for m in msgs)
    assert audio == b"\x01\x02\x03\x04" + SECOND
    assert all(m == {"message_type": "input_audio_chunk", "audio_base_64": m["audio_base_64"], "commit": False,
                     "sample_rate": 16000} for m in msgs)
    sizes = [len(base64.b64decode(m["audio_base_64"])) for m in msgs]
    assert sizes == [2, 16000, 16000, 2] and all(s % 2 == 0 for s in sizes)


def test_mulaw_chunks_are_bytes_not_pairs():
    a = make(encoding="pcm_mulaw", sample_rate=8000)
    a.send_audio(b"\xff" * 4001, 0.0)
    sizes = [len(base64.b64decode(m["audio_base_64"])) for m in sent(a)]
    assert sizes == [4000, 1]


def test_finalize_is_a_manual_commit_and_keepalive_an_empty_chunk():
    a = make()
    a.send_finalize()  # nothing sent yet: no commit (ElevenLabs throttles commits)
    a.send_keepalive()
    a.send_audio(SECOND[:3200], 0.0)
    a.send_finalize()
    a.send_finalize()  # nothing new since the last commit
    msgs = sent(a)
    assert msgs[0] == {"message_type": "input_audio_chunk", "audio_base_64": "", "commit": False, "sample_rate": 16000}
    assert msgs[2] == {"message_type": "input_audio_chunk", "audio_base_64": "", "commit": True, "sample_rate": 16000}
    assert len(msgs) == 3


def test_close_commits_then_waits_and_nothing_follows():
    a = make()
    a.send_audio(SECOND[:3200], 0.0)
    a.send_close()
    assert a.state is State.CLOSING and not a.done
    a.send_audio(SECOND, 1.0)
    a.send_keepalive()
    a.send_finalize()
    a.send_close()
    msgs = sent(a)
    assert [m["commit"] for m in msgs] == [False, True]


def test_close_with_nothing_to_commit_is_done_at_once():
    a = make()
    a.send_close()
    assert a.done and a.state is State.CLOSED and a.data_to_send() == []


def test_close_before_open_stays_closing():
    a = ElevenLabsAdapter(ListenParams.from_query({"provider": "elevenlabs", "encoding": "pcm_s16le",
                                                   "sample_rate": "16000"}), "k")
    a.send_audio(b"\x00\x00", 0.0)
    a.send_close()
    a.receive_open()
    assert a.state is State.CLOSING
    assert [json.loads(f)["commit"] for f in a.data_to_send()] == [False, True]


# -- the twins: one final per segment ---------------------------------------------------------------
FINAL_HELLO = Transcript("elevenlabs", "Hello, world.", 0.3, 1.1, False,
                         (Word("Hello,", 0.3, 0.6), Word("world.", 0.65, 1.1)))


def test_plain_then_timestamps_is_one_final_with_words():
    a = make(endpointing=0)
    assert feed(a, plain("Hello, world.")) == []  # held for its twin
    assert a.next_deadline() == ASAP
    assert feed(a, stamped("Hello, world.", HELLO)) == [FINAL_HELLO]
    assert a.next_deadline() is None


def test_timestamps_then_plain_is_one_final():
    a = make(endpointing=0)
    assert feed(a, stamped("Hello, world.", HELLO)) == [FINAL_HELLO]
    assert feed(a, plain("Hello, world.")) == []
    # a repeated utterance is still a new segment
    ev = feed(a, stamped("Hello, world.", HELLO), plain("Hello, world."))
    assert ev == [FINAL_HELLO]


def test_a_missing_twin_delays_the_final_by_at_most_the_twin_wait():
    a = make(endpointing=0)
    a.send_audio(SECOND * 2, 0.0)
    assert feed(a, plain("Hello, world.")) == []
    assert tick(a, 10.0) == []  # learns the time: deadline 10.5
    assert a.next_deadline() == pytest.approx(10.0 + TWIN_WAIT_S)
    (t,) = tick(a, 10.0 + TWIN_WAIT_S)
    assert t == Transcript("elevenlabs", "Hello, world.", 0.0, 2.0, False, None)  # words: None, none given
    assert feed(a, stamped("Hello, world.", HELLO)) == []  # the late twin is not a second final
    assert feed(a, stamped("Hello, world.", HELLO)) == [FINAL_HELLO]  # ...but a new segment is


def test_next_plain_does_not_steal_an_earlier_twin():
    a = make(endpointing=0)
    ev = feed(a, plain("Hello, world."), plain("Bye."), stamped("Hello, world.", HELLO), stamped("Bye.", BYE))
    assert [e.transcript for e in ev] == ["Hello, world.", "Bye."] and all(e.words for e in ev)


def test_empty_commits_give_nothing():
    a = make()
    assert feed(a, plain(""), stamped("", []), plain("  "), stamped("  ", [])) == []
    assert a.next_deadline() is None


# -- partials and turns ---------------------------------------------------------------------------
def test_partials_only_when_asked_and_behind_held_finals():
    a = make(partial_results=True)
    a.send_audio(SECOND, 0.0)
    ev = feed(a, partial("Hello"), partial("Hello"), partial("Hello, world"), plain("Hello, world."),
              partial("Bye"), stamped("Hello, world.", HELLO))
    assert [(type(e).__name__, getattr(e, "transcript", None), getattr(e, "is_partial", None)) for e in ev] == [
        ("Transcript", "Hello", True), ("Transcript", "Hello, world", True),
        ("Transcript", "Hello, world.", False), ("TurnEnd", None, None), ("Transcript", "Bye", True)]
    assert ev[0].words is None and (ev[0].start_time, ev[0].end_time) == (0.0, 1.0)
    assert ev[-1].start_time == 1.1  # after the last final
    b = make()
    assert feed(b, partial("Hello"), plain("Hi."), stamped("Hi.", HELLO[:1])) == [
        Transcript("elevenlabs", "Hi.", 0.3, 0.6, False, (Word("Hello,", 0.3, 0.6),)), TurnEnd("elevenlabs", 0.6)]


def test_vad_commits_end_turns_finalize_answers_do_not():
    a = make()
    a.send_audio(SECOND * 3, 0.0)
    a.send_finalize()  # at 3.0 s
    ev = feed(a, plain("Hello, world."), stamped("Hello, world.", HELLO),  # VAD: 1.1 + 0.5 < 3.0 - 0.25
              plain("Bye."), stamped("Bye.", [w("Bye.", 2.0, 2.9)]))  # the finalize's answer
    assert [type(e) for e in ev] == [Transcript, TurnEnd, Transcript]
    assert ev[1] == TurnEnd("elevenlabs", 1.1)


def test_manual_mode_has_no_turn_ends():
    a = make(endpointing=0)
    ev = feed(a, plain("Hello, world."), stamped("Hello, world.", HELLO))
    assert ev == [FINAL_HELLO]


# -- the end of the stream ------------------------------------------------------------------------
def test_close_is_done_at_the_answer_of_the_close_commit():
    a = make()
    a.send_audio(SECOND * 3, 0.0)
    a.send_close()
    ev = feed(a, plain("Bye."), stamped("Bye.", [w("Bye.", 2.5, 2.9)]))
    assert a.done and a.error is None and a.state is State.CLOSED
    assert ev == [Transcript("elevenlabs", "Bye.", 2.5, 2.9, False, (Word("Bye.", 2.5, 2.9),))]
    assert feed(a, plain("late")) == []
    a.receive_close(1000, "")
    assert a.error is None


def test_close_waits_for_a_pending_finalize_and_the_close_answer():
    a = make(endpointing=0)
    a.send_audio(SECOND, 0.0)
    a.send_finalize()
    a.send_audio(SECOND, 1.0)
    a.send_close()
    feed(a, plain("Hello, world."), stamped("Hello, world.", HELLO))
    assert not a.done  # that answered the finalize
    feed(a, plain(""), stamped("", []))
    assert a.done and a.error is None


def test_vad_segment_racing_the_close_answer():
    a = make()
    a.send_audio(SECOND * 4, 0.0)
    a.send_close()  # at 4.0 s
    ev = feed(a, plain("Hello, world."), stamped("Hello, world.", HELLO))  # a VAD commit still in flight
    assert [type(e) for e in ev] == [Transcript, TurnEnd] and not a.done
    assert a.next_deadline() == ASAP
    tick(a, 50.0)
    assert a.next_deadline() == pytest.approx(50.0 + CLOSE_SETTLE_S)
    feed(a, plain(""), stamped("", []))  # the close commit's answer
    assert a.done and a.error is None


def test_close_answer_that_looks_like_vad_ends_after_the_settle_time():
    a = make()
    a.send_audio(SECOND * 6, 0.0)  # "Hello, world." then noise the VAD never committed
    a.send_close()
    feed(a, plain("Hello, world."), stamped("Hello, world.", HELLO))
    assert not a.done
    tick(a, 1.0)
    tick(a, 1.0 + CLOSE_SETTLE_S)
    assert a.done and a.error is None


def test_clean_close_releases_held_segments_first():
    a = make(endpointing=0)
    a.send_audio(SECOND, 0.0)
    a.send_close()
    feed(a, plain("Hello, world."))
    a.receive_close(1000, "")
    assert a.events_received() == [Transcript("elevenlabs", "Hello, world.", 0.0, 1.0, False, None)]
    assert a.done and a.error is None


# -- diarization ----------------------------------------------------------------------------------
def diarized(text, words, index=0):
    return {"message_type": "diarized_transcript", "segment_index": index, "text": text, "words": words}


def test_diarized_speakers_and_merges():
    a = make(diarize=True, endpointing=0)
    assert feed(a, plain("Hello, world."), stamped("Hello, world.", [w("Hello,", 0.3, 0.6, "speaker_0"),
                                                                      w("world.", 0.65, 1.1, "speaker_0")])) == []
    (t,) = feed(a, diarized("Hello, world.", [w("Hello,", 0.3, 0.6, "speaker_0"), w("world.", 0.65, 1.1, "speaker_1")]))
    assert [x.speaker for x in t.words] == ["0", "1"]
    feed(a, {"message_type": "speakers_merged", "from_speaker_id": "speaker_1", "to_speaker_id": "speaker_0"})
    (t2,) = feed(a, stamped("Bye.", [w("Bye.", 2.0, 2.4, "speaker_1")]), plain("Bye."),
                 diarized("Bye.", [w("Bye.", 2.0, 2.4, "speaker_1")], 1))
    assert t2.words[0].speaker == "0"


def test_diarization_that_never_comes_times_out():
    a = make(diarize=True, endpointing=0)
    feed(a, plain("Hello, world."), stamped("Hello, world.", [w("Hello,", 0.3, 0.6, "speaker_2"),
                                                             w("world.", 0.65, 1.1)]))
    tick(a, 5.0)
    assert a.events_received() == []
    (t,) = tick(a, 9.0)
    assert [x.speaker for x in t.words] == ["2", None]  # the with-timestamps speakers are kept
    assert feed(a, diarized("Hello, world.", HELLO)) == []


def test_speaker_labels_and_words():
    assert speaker_label("speaker_12") == "12" and speaker_label("S1") == "S1" and speaker_label(None) is None
    assert speaker_label("speaker_3", {"speaker_3": "speaker_1", "speaker_1": "speaker_3"}) in ("1", "3")
    assert words_from([w("hi", 0, 1), w(" ", 1, 2, kind="spacing"), w("(laughs)", 2, 3, kind="audio_event")],
                      False) == (Word("hi", 0.0, 1.0),)
    assert words_from([{"text": "hi", "type": "word"}], False) is None
    assert words_from(None, False) is None


# -- errors, raw mode, garbage --------------------------------------------------------------------
@pytest.mark.parametrize("kind,hint", [
    ("auth_error", "API key"), ("quota_exceeded", "quota"), ("commit_throttled", "finalize"),
    ("transcriber_error", "retry"), ("insufficient_audio_activity", "without audio"),
    ("unaccepted_terms_error", "terms"), ("session_time_limit_exceeded", "time limit"),
    ("brand_new_error", "reported an error"), ("error", "reported an error")])
def test_error_messages_fail_with_the_kind_and_text(kind, hint):
    a = make(endpointing=0)
    feed(a, plain("Hello, world."))  # held: still delivered before the error
    ev = feed(a, {"message_type": kind, "error": "details here"})
    assert [e.transcript for e in ev] == ["Hello, world."]
    assert type(a.error) is ProviderError and a.state is State.CLOSED and a.done
    assert (a.error.provider_code, a.error.provider_message) == (kind, "details here")
    assert hint in str(a.error) and "details here" in str(a.error)


def test_error_text_in_message_field():
    a = make()
    feed(a, {"message_type": "input_error", "message": "bad audio"})
    assert a.error.provider_message == "bad audio"


@pytest.mark.parametrize("state", ["open", "closing"])
def test_unexpected_close(state):
    a = make()
    if state == "closing":
        a.send_audio(SECOND, 0.0)
        a.send_close()
    a.receive_close(1008, "invalid_request")
    assert isinstance(a.error, ProviderError) and a.error.provider_code == 1008
    assert a.error.provider_message == "invalid_request" and "1008" in str(a.error)


def test_raw_mode_forwards_frames_and_still_ends():
    a = make(parse_json=False, partial_results=True)
    a.send_audio(SECOND, 0.0)
    frames = [json.dumps(f) for f in (
        {"message_type": "session_started", "session_id": "s", "config": {}}, partial("Hi"), plain("Hi."),
        stamped("Hi.", HELLO[:1]), {"message_type": "something_new"})]
    assert feed(a, *frames) == [Raw(f) for f in frames]
    a.send_close()
    end = [json.dumps(plain("")), json.dumps(stamped("", []))]
    assert feed(a, *end) == [Raw(f) for f in end] and a.done and a.error is None


@pytest.mark.parametrize("frame", [
    "not json", "[1]", "null", '{"text": "x"}', '{"message_type": 3}', b"\x00binary",
    json.dumps({"message_type": "committed_transcript"}),
    json.dumps({"message_type": "partial_transcript", "text": 5}),
    json.dumps(stamped("x", [{"text": "x", "start": "0", "end": 1}])),
    json.dumps({"message_type": "committed_transcript_with_timestamps", "text": "x", "words": {"a": 1}}),
    json.dumps({"message_type": "speakers_merged", "from_speaker_id": 1, "to_speaker_id": "speaker_0"}),
])
def test_garbage_is_a_protocol_error_never_an_exception(frame):
    a = make(partial_results=True)
    a.receive_frame(frame)
    assert isinstance(a.error, UpstreamProtocolError) and a.state is State.CLOSED and a.done
    assert a.events_received() == []
    a.receive_frame(json.dumps(plain("x")))
    a.receive_close(1000, "")
    assert a.events_received() == []


@pytest.mark.parametrize("msg", [
    {"message_type": "session_started", "session_id": "s", "config": {"sample_rate": 16000}},
    {"message_type": "warning", "warning": "slow down"},
    {"message_type": "committed_transcript_entities", "text": "x", "entities": []},
    {"message_type": "final_transcript", "text": "legacy"},
    {"message_type": "turn_started"},
])
def test_informational_and_unknown_types_are_ignored(msg):
    a = make()
    assert feed(a, msg) == [] and a.error is None and a.state is State.OPEN


# -- replaying simulated sessions -----------------------------------------------------------------
SCRIPT = Script.from_text("Hello, how are you today? I am calling about my order. It was supposed to "
                          "arrive on Monday.", speakers=2)


def simulate(a: ElevenLabsAdapter, seconds: float, finalize_at: float | None = None, chunk_s: float = 0.1):
    """Drive the simulator's engine with the adapter's own query; feed what it says back."""
    engine = ScribeEngine(parse_options(query_of(a)), SCRIPT)
    events, t = [], 0.0
    while t < seconds - 1e-9:
        t = round(min(seconds, t + chunk_s), 6)
        a.send_audio(b"\0\0" * int(chunk_s * 16000), t)
        for m in sent(a):
            if m["commit"]:
                events += feed(a, *engine.commit())
        events += feed(a, *engine.advance(t))
        if finalize_at is not None and abs(t - finalize_at) < 1e-6:
            a.send_finalize()
            events += feed(a, *engine.commit())
            a.data_to_send()
    a.send_close()
    assert any(m["commit"] for m in sent(a))
    events += feed(a, *engine.commit())
    return events


@pytest.mark.parametrize("partials", [False, True])
@pytest.mark.parametrize("diarize", [False, True])
def test_simulated_session(partials, diarize):
    a = make(partial_results=partials, diarize=diarize)
    ev = simulate(a, 12.0)
    assert a.done and a.error is None
    finals = [e for e in ev if isinstance(e, Transcript) and not e.is_partial]
    assert " ".join(f.transcript for f in finals) == " ".join(x.text for x in SCRIPT)
    for f1, f2 in zip(finals, finals[1:]):
        assert f1.end_time <= f2.start_time
    assert bool([e for e in ev if isinstance(e, Transcript) and e.is_partial]) == partials
    assert sum(isinstance(e, TurnEnd) for e in ev) == 3
    words = [x for f in finals for x in f.words]
    assert [(x.text, x.start_time, x.end_time, x.speaker) for x in words] == [
        (s.text, s.start, s.end, str(s.speaker) if diarize else None) for s in SCRIPT]


def test_simulated_manual_session_finalize_and_close():
    a = make(endpointing=0)
    ev = simulate(a, 12.0, finalize_at=1.6)  # mid-sentence: "are" ended at 1.52
    assert [e.transcript for e in ev] == ["Hello, how are", " ".join(x.text for x in SCRIPT.words[3:])]
    assert not any(isinstance(e, TurnEnd) for e in ev) and a.done
