"""SpeechmaticsAdapter: Speechmatics frames in, unified events out (no sockets).

Frames come from two places: hand-written sessions shaped like the documented messages (AsyncAPI spec
``spec/realtime.yaml`` of ``speechmatics/docs``), and the simulator's transcript engine
(``routeraudio.testing.speechmatics.SpeechmaticsEngine``) driven offline.
"""

from __future__ import annotations

import json

import pytest

from routeraudio.config import ListenParams
from routeraudio.errors import ProviderError, UpstreamProtocolError, UpstreamTimeoutError
from routeraudio.events import Raw, Transcript, TurnEnd, Word
from routeraudio.providers.base import State
from routeraudio.providers.speechmatics import (MAX_HELD_AUDIO_S, START_TIMEOUT, SpeechmaticsAdapter,
                                                eou_trigger_s, max_delay_s, transcript_from_results)
from routeraudio.testing.base import Script
from routeraudio.testing.speechmatics import SpeechmaticsEngine, parse_start_recognition

BASE = "ws://127.0.0.1:9/v2"
STARTED = {"message": "RecognitionStarted", "id": "0f0e", "orchestrator_version": "2026.08.0",
           "language_pack_info": {"adapted": False, "itn": True, "language_description": "English",
                                  "word_delimiter": " ", "writing_direction": "left-to-right"}}
INFO = {"message": "Info", "type": "recognition_quality", "reason": "broadcast model", "quality": "broadcast"}
EOT = {"message": "EndOfTranscript"}


def params(**kw) -> ListenParams:
    q = {"provider": "speechmatics", "encoding": "pcm_s16le", "sample_rate": "16000"}
    q.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in kw.items()})
    return ListenParams.from_query(q)


def make(*, started: bool = True, **kw) -> SpeechmaticsAdapter:
    a = SpeechmaticsAdapter(params(**kw), "sm-secret", BASE)
    a.receive_open()
    if started:
        feed(a, STARTED)
        a.data_to_send()
    return a


def feed(a: SpeechmaticsAdapter, *frames) -> list:
    for f in frames:
        a.receive_frame(f if isinstance(f, (str, bytes)) else json.dumps(f))
    return a.events_received()


def sent(a: SpeechmaticsAdapter) -> list:
    """What the adapter queued, JSON decoded (audio stays bytes)."""
    return [f if isinstance(f, bytes) else json.loads(f) for f in a.data_to_send()]


def word(content, s, e, speaker=None, kind="word"):
    alt = {"content": content, "confidence": 0.9, "language": "en"}
    if speaker is not None:
        alt["speaker"] = speaker
    return {"type": kind, "start_time": s, "end_time": e, "alternatives": [alt]}


def mark(content, t, attaches="previous", eos=False):
    return {"type": "punctuation", "start_time": t, "end_time": t, "attaches_to": attaches, "is_eos": eos,
            "alternatives": [{"content": content, "confidence": 1.0}]}


def transcript(results, start=None, end=None, partial=False, **extra):
    start = results[0]["start_time"] if start is None else start
    end = results[-1]["end_time"] if end is None else end
    msg = {"message": "AddPartialTranscript" if partial else "AddTranscript", "format": "2.1",
           "metadata": {"start_time": start, "end_time": end, "transcript": "(not used)"}, "results": results}
    msg.update(extra)
    return msg


def eou(t, **extra):
    return {"message": "EndOfUtterance", "metadata": {"start_time": t, "end_time": t}, **extra}


# -- the request and StartRecognition --------------------------------------------------------------
def test_connect_request_uses_bearer_and_the_base_url():
    a = SpeechmaticsAdapter(params(), "sm-secret", None)
    req = a.connect_request()
    assert req.url == "wss://eu.rt.speechmatics.com/v2" == SpeechmaticsAdapter.DEFAULT_URL
    assert req.headers == (("Authorization", "Bearer sm-secret"),) and req.subprotocols == ()
    assert SpeechmaticsAdapter(params(), "k", BASE).connect_request().url == BASE
    assert a.data_to_send() == [] and a.state is State.CONNECTING


@pytest.mark.parametrize("encoding,rate,channels,expect", [
    ("pcm_s16le", 16000, 1, ("pcm_s16le", 16000)),
    ("pcm_s16le", 44100, 2, ("pcm_s16le", 44100)),
    ("pcm_mulaw", 8000, 1, ("mulaw", 8000)),
    ("pcm_mulaw", 48000, 1, ("mulaw", 48000)),
    ("pcm_mulaw", 8000, 2, ("pcm_s16le", 8000)),
    ("ogg_opus", 48000, 1, ("pcm_s16le", 16000)),
    ("webm", 48000, 2, ("pcm_s16le", 16000)),
    ("mp3", 44100, 1, ("pcm_s16le", 16000)),
])
def test_start_recognition_is_the_first_message_and_follows_the_plan(encoding, rate, channels, expect):
    a = SpeechmaticsAdapter(params(encoding=encoding, sample_rate=rate, channels=channels), "k", BASE)
    a.receive_open()
    (msg,) = sent(a)
    assert msg["message"] == "StartRecognition"
    assert msg["audio_format"] == {"type": "raw", "encoding": expect[0], "sample_rate": expect[1]}
    assert a.plan.convert == (expect != (encoding if encoding != "pcm_mulaw" else "mulaw", rate) or channels > 1)
    opts = parse_start_recognition(msg)  # the simulator (Speechmatics' rules) accepts it
    assert (opts.encoding, opts.sample_rate, opts.model) == (expect[0], expect[1], "enhanced")
    a.receive_open()
    assert sent(a) == [], "StartRecognition is sent once"


@pytest.mark.parametrize("kw,expect", [
    ({}, {"language": "en", "model": "enhanced", "enable_partials": False, "max_delay": 1.0, "diarization": "none",
          "conversation_config": {"end_of_utterance_silence_trigger": 0.5}}),
    ({"partial_results": True, "diarize": True, "model": "standard", "language": "de"},
     {"language": "de", "model": "standard", "enable_partials": True, "max_delay": 1.0, "diarization": "speaker",
      "conversation_config": {"end_of_utterance_silence_trigger": 0.5}}),
    ({"endpointing": 0}, {"max_delay": 1.0, "conversation_config": {"end_of_utterance_silence_trigger": 0.0}}),
    ({"endpointing": 1500}, {"max_delay": 2.0, "conversation_config": {"end_of_utterance_silence_trigger": 1.5}}),
    ({"endpointing": 60000}, {"max_delay": 2.5, "conversation_config": {"end_of_utterance_silence_trigger": 2.0}}),
    ({"punctuate": False}, {"punctuation_overrides": {"permitted_marks": []}}),
])
def test_options_map_to_transcription_config(kw, expect):
    a = make(started=False, **kw)
    cfg = a.start_message()["transcription_config"]
    for key, value in expect.items():
        assert cfg[key] == value, key
    assert ("punctuation_overrides" in cfg) == (kw.get("punctuate") is False)
    parse_start_recognition(a.start_message())


@pytest.mark.parametrize("ms,trigger,delay", [(0, 0.0, 1.0), (1, 0.001, 1.0), (500, 0.5, 1.0), (700, 0.7, 1.2),
                                              (2000, 2.0, 2.5), (2001, 2.0, 2.5), (60000, 2.0, 2.5)])
def test_endpointing_clamp(ms, trigger, delay):
    assert eou_trigger_s(ms) == trigger and max_delay_s(trigger) == delay
    assert 0.7 <= max_delay_s(trigger) <= 4.0


# -- the quirk: nothing before RecognitionStarted, acks and last_seq_no -------------------------------
def test_audio_finalize_and_close_wait_for_recognition_started_in_order():
    a = make(started=False)
    assert [m["message"] for m in sent(a)] == ["StartRecognition"]
    chunks = [bytes([i]) * 640 for i in range(1, 5)]
    for c in chunks[:3]:
        a.send_audio(c, 0.0)
    a.send_audio(b"", 0.0)  # never an empty frame
    a.send_finalize()
    a.send_audio(chunks[3], 0.1)
    a.send_close()
    assert a.state is State.CLOSING and sent(a) == []
    assert a.next_deadline() == pytest.approx(START_TIMEOUT)
    assert feed(a, INFO, {"message": "Warning", "type": "idle_timeout", "reason": "soon"}) == []
    assert sent(a) == [] and not a.started
    feed(a, STARTED)
    out = sent(a)
    assert out[:3] == chunks[:3]
    assert out[3] == {"message": "ForceEndOfUtterance", "timestamp": 0.06}  # 3 x 640 bytes of 16 kHz s16le
    assert out[4] == chunks[3]
    assert out[5] == {"message": "EndOfStream", "last_seq_no": 4}
    assert a.next_deadline() is None and a.chunks_sent == 4
    feed(a, *({"message": "AudioAdded", "seq_no": n} for n in range(1, 5)))
    assert a.chunks_acked == 4 and not a.done
    feed(a, EOT)
    assert a.done and a.error is None and a.state is State.CLOSED


def test_last_seq_no_counts_every_chunk_sent_after_start():
    a = make()
    for i in range(7):
        a.send_audio(b"\x01\x00" * (80 + i), 0.0)
    a.send_finalize()
    a.send_close()
    out = sent(a)
    assert sum(isinstance(f, bytes) for f in out) == 7
    seconds = round(sum(2 * (80 + i) for i in range(7)) / 32000, 3)
    assert out[-2] == {"message": "ForceEndOfUtterance", "timestamp": seconds}
    assert out[-1] == {"message": "EndOfStream", "last_seq_no": 7}
    a.send_audio(b"\x00\x00", 0.0)  # after close: dropped
    a.send_finalize()
    a.send_close()
    assert sent(a) == []


def test_mulaw_finalize_timestamp_counts_one_byte_per_sample():
    a = make(encoding="pcm_mulaw", sample_rate=8000)
    a.send_audio(b"\xff" * 4000, 0.0)
    a.send_finalize()
    assert sent(a)[-1] == {"message": "ForceEndOfUtterance", "timestamp": 0.5}


def test_recognition_started_never_arriving_times_out():
    a = make(started=False)
    a.send_audio(b"\x00\x00" * 160, 100.0)
    a.send_audio(b"\x00\x00" * 160, 101.0)
    assert a.next_deadline() == 100.0 + START_TIMEOUT
    a.receive_timer(100.0 + START_TIMEOUT - 0.1)
    assert a.error is None
    a.receive_timer(100.0 + START_TIMEOUT)
    assert isinstance(a.error, UpstreamTimeoutError) and "RecognitionStarted" in str(a.error)
    assert a.done and sent(a)[-1]["message"] == "StartRecognition"


def test_held_audio_is_bounded():
    a = make(started=False)
    second = b"\x00\x00" * 16000
    for _ in range(int(MAX_HELD_AUDIO_S)):
        a.send_audio(second, 0.0)
    assert a.error is None
    a.send_audio(b"\x00\x00", 0.0)
    assert isinstance(a.error, UpstreamTimeoutError) and "30 s of audio" in str(a.error)


def test_close_before_open_still_starts_then_ends():
    a = SpeechmaticsAdapter(params(), "k", BASE)
    a.send_audio(b"\x00\x00" * 10, 0.0)
    a.send_close()
    assert a.state is State.CLOSING and a.data_to_send() == []
    a.receive_open()
    assert [m["message"] for m in sent(a)] == ["StartRecognition"] and a.state is State.CLOSING
    feed(a, STARTED)
    assert sent(a) == [b"\x00\x00" * 10, {"message": "EndOfStream", "last_seq_no": 1}]
    feed(a, {"message": "AudioAdded", "seq_no": 1}, EOT)
    assert a.done and a.error is None


@pytest.mark.parametrize("seq", [0, 3, -1, "1", True, None, 1.0])
def test_audio_added_must_name_a_chunk_sent(seq):
    a = make()
    a.send_audio(b"\x00\x00", 0.0)
    a.send_audio(b"\x00\x00", 0.0)
    feed(a, {"message": "AudioAdded", "seq_no": seq})
    assert isinstance(a.error, UpstreamProtocolError) and "seq_no" in str(a.error)


# -- text building ---------------------------------------------------------------------------------
def t_of(results, **kw) -> Transcript | None:
    diarize = kw.pop("diarize", True)
    return transcript_from_results(transcript(results), "speechmatics", partial=False, diarize=diarize, **kw)


def test_punctuation_attaches_as_speechmatics_says():
    t = t_of([mark("“", 0.1, "next"), word("Hello", 0.1, 0.4, "S1"), mark(",", 0.4), word("well", 0.5, 0.7, "S1"),
              mark("-", 0.7, "both"), word("known", 0.7, 0.9, "S2"), mark("—", 0.9, "none"),
              word("I", 1.0, 1.1, "UU"), word("am", 1.1, 1.2, "S1"), word("35", 1.2, 1.5, "S1", kind="entity"),
              mark(".", 1.5, eos=True), mark("”", 1.5)])
    assert t.transcript == "“Hello, well-known — I am 35.”"
    assert [w.text for w in t.words] == ["“Hello,", "well-", "known", "I", "am", "35.”"]
    assert [w.speaker for w in t.words] == ["S1", "S1", "S2", None, "S1", "S1"]
    assert (t.start_time, t.end_time, t.is_partial) == (0.1, 1.5, False)


def test_word_delimiter_from_the_language_pack():
    t = t_of([word("今日", 0.0, 0.3), word("は", 0.3, 0.4), mark("。", 0.4)], delimiter="")
    assert t.transcript == "今日は。" and [w.text for w in t.words] == ["今日", "は。"]


def test_speakers_only_with_diarize_and_results_without_alternatives_skipped():
    t = t_of([word("a", 0.0, 0.1, "S1"), {"type": "word", "start_time": 0.1, "end_time": 0.2, "alternatives": []},
              {"type": "audio_event", "start_time": 0.2, "end_time": 0.3,
               "alternatives": [{"content": "x", "confidence": 1}]},
              word("b", 0.3, 0.4, "S2")], diarize=False)
    assert t.transcript == "a b" and [w.speaker for w in t.words] == [None, None]


def test_punctuation_only_segment_keeps_its_text_without_words():
    t = t_of([mark(".", 2.0, eos=True)])
    assert t.transcript == "." and t.words == () and (t.start_time, t.end_time) == (2.0, 2.0)
    assert transcript_from_results(transcript([], start=1.0, end=3.0), "speechmatics", partial=False,
                                   diarize=False) is None
    assert transcript_from_results(transcript([], start=1.0, end=3.0), "speechmatics", partial=True,
                                   diarize=False) is None


@pytest.mark.parametrize("msg", [
    {"message": "AddTranscript", "results": []},
    {"message": "AddTranscript", "metadata": {"start_time": 0, "end_time": 1, "transcript": ""}},
    {"message": "AddTranscript", "metadata": {"start_time": "0", "end_time": 1}, "results": []},
    transcript([{"start_time": 0, "end_time": 1, "alternatives": [{"content": "x"}]}], start=0, end=1),
    transcript([{"type": "word", "end_time": 1, "alternatives": [{"content": "x"}]}], start=0, end=1),
    transcript([{"type": "word", "start_time": 0, "end_time": 1, "alternatives": {"content": "x"}}]),
    transcript([{"type": "word", "start_time": 0, "end_time": 1, "alternatives": [{"content": 5}]}]),
    transcript(["word"], start=0, end=1),
])
def test_malformed_transcripts_are_protocol_errors(msg):
    a = make(partial_results=True)
    feed(a, msg)
    assert isinstance(a.error, UpstreamProtocolError) and a.done


# -- a whole session ----------------------------------------------------------------------------------
SESSION = [
    INFO,
    STARTED,
    {"message": "AudioAdded", "seq_no": 1},
    transcript([word("Hello", 0.3, 0.6, "S1")], partial=True),
    transcript([word("Hello", 0.3, 0.6, "S1")], partial=True),  # a verbatim repeat: dropped
    transcript([word("Hello", 0.3, 0.6, "S1"), word("world", 0.65, 1.0, "S1")], partial=True),
    transcript([word("Hello", 0.3, 0.6, "S1"), mark(",", 0.6)]),
    transcript([word("world", 0.65, 1.0, "S1")], partial=True),  # the rest, right after the final
    {"message": "AudioAdded", "seq_no": 2},
    transcript([word("world", 0.65, 1.0, "S1"), mark(".", 1.0, eos=True)]),
    transcript([], start=1.0, end=1.0, partial=True),  # empty partial: dropped
    eou(1.5),
    eou(1.5),  # a second EndOfUtterance with no final words between: one turn_end only
    transcript([], start=1.0, end=3.0),  # a silence final: dropped
    {"message": "AudioEventStarted", "event": {"type": "music", "start_time": 3.0, "confidence": 0.8}},
    {"message": "SomethingNew", "x": 1},
    transcript([word("Bye", 3.2, 3.5, "S2"), mark(".", 3.5, eos=True)], forced=True),
    eou(3.5, forced=True),
]


def _expected(partials: bool) -> list:
    hello = Word("Hello,", 0.3, 0.6, "S1")
    world = Word("world.", 0.65, 1.0, "S1")
    out = []
    if partials:
        out += [Transcript("speechmatics", "Hello", 0.3, 0.6, True, (Word("Hello", 0.3, 0.6, "S1"),)),
                Transcript("speechmatics", "Hello world", 0.3, 1.0, True,
                           (Word("Hello", 0.3, 0.6, "S1"), Word("world", 0.65, 1.0, "S1")))]
    out.append(Transcript("speechmatics", "Hello,", 0.3, 0.6, False, (hello,)))
    if partials:
        out.append(Transcript("speechmatics", "world", 0.65, 1.0, True, (Word("world", 0.65, 1.0, "S1"),)))
    out += [Transcript("speechmatics", "world.", 0.65, 1.0, False, (world,)),
            TurnEnd("speechmatics", 1.0),
            Transcript("speechmatics", "Bye.", 3.2, 3.5, False, (Word("Bye.", 3.2, 3.5, "S2"),)),
            TurnEnd("speechmatics", 3.5)]
    return out


@pytest.mark.parametrize("partials", [False, True])
def test_recorded_style_session(partials):
    a = make(started=False, partial_results=partials, diarize=True)
    a.send_audio(b"\x00\x00" * 1600, 0.0)
    a.send_audio(b"\x00\x00" * 1600, 0.0)
    events = feed(a, *SESSION)
    assert events == _expected(partials)
    a.send_close()
    assert sent(a)[-1] == {"message": "EndOfStream", "last_seq_no": 2}
    assert feed(a, EOT) == [] and a.done and a.error is None


def test_raw_mode_forwards_every_frame_and_keeps_the_protocol():
    a = make(started=False, parse_json=False, partial_results=True)
    a.send_audio(b"\x00\x00" * 1600, 0.0)
    a.send_audio(b"\x01\x00" * 1600, 0.0)
    frames = [json.dumps(m) for m in SESSION]
    events = feed(a, *frames)
    assert events == [Raw(f) for f in frames] and a.error is None
    assert sent(a)[-2:] == [b"\x00\x00" * 1600, b"\x01\x00" * 1600]  # RecognitionStarted released them
    a.send_close()
    assert feed(a, json.dumps(EOT)) == [Raw(json.dumps(EOT))] and a.done and a.error is None


@pytest.mark.parametrize("partials", [False, True])
def test_engine_driven_session(partials):
    """Frames from the simulator's engine: every scripted word once, in order, as finals."""
    text = "Hello, how are you today? I am calling about my order. It was supposed to arrive on Monday."
    a = make(partial_results=partials, diarize=True)
    engine = SpeechmaticsEngine(parse_start_recognition(a.start_message()), Script.from_text(text, speakers=2))
    events = feed(a, *engine.advance(6.0), *engine.force(), *engine.advance(11.0))
    a.send_close()
    events += feed(a, *engine.end(), EOT)
    assert a.done and a.error is None
    finals = [e for e in events if isinstance(e, Transcript) and not e.is_partial]
    assert " ".join(f.transcript for f in finals) == text
    for x, y in zip(finals, finals[1:]):
        assert x.end_time <= y.start_time
    assert bool([e for e in events if isinstance(e, Transcript) and e.is_partial]) == partials
    assert sum(isinstance(e, TurnEnd) for e in events) == 3  # sentence 1 and 3 by EndOfUtterance, 2 by the finalize
    assert {w.speaker for f in finals for w in f.words} == {"S1", "S2"}
    ends = [e for e in events if isinstance(e, TurnEnd)]
    assert all(isinstance(e.end_time, float) for e in ends)


# -- errors ----------------------------------------------------------------------------------------
def test_error_message_becomes_a_provider_error():
    a = make()
    feed(a, {"message": "Error", "type": "quota_exceeded", "reason": "Concurrent Quota Exceeded", "code": 4005})
    assert isinstance(a.error, ProviderError) and not isinstance(a.error, UpstreamProtocolError)
    assert (a.error.provider_code, a.error.provider_message) == ("quota_exceeded", "Concurrent Quota Exceeded")
    assert "retry" in str(a.error) and a.done
    a.receive_close(4005, "quota_exceeded")
    assert a.error.provider_code == "quota_exceeded", "the first error is the one reported"


def test_error_before_recognition_started_drops_held_audio():
    a = make(started=False, model="nonexistent")
    a.send_audio(b"\x00\x00", 0.0)
    feed(a, {"message": "Error", "type": "invalid_model", "reason": "unknown model"})
    assert a.error.provider_code == "invalid_model" and a.next_deadline() is None
    feed(a, STARTED)
    assert [m["message"] for m in sent(a)] == ["StartRecognition"]


@pytest.mark.parametrize("code,reason,words", [
    (1003, "protocol_error", "protocol_error"), (1008, "policy_violation", "idle"),
    (1011, "internal_error", "retry"), (4001, "not_authorised", "API key"), (4004, "invalid_model", "model"),
    (4005, "quota_exceeded", "retry"), (4013, "job_error", "retry"), (1006, "", "unexpectedly"),
])
def test_close_codes(code, reason, words):
    a = make()
    a.receive_close(code, reason)
    assert isinstance(a.error, ProviderError) and a.error.provider_code == code
    assert a.error.provider_message == (reason or None) and words in str(a.error)


def test_close_1000_is_normal_only_after_end_of_stream():
    a = make()
    a.receive_close(1000, "")
    assert isinstance(a.error, ProviderError)
    b = make()
    b.send_close()
    b.receive_close(1000, "")
    assert b.done and b.error is None


def test_end_of_transcript_before_close_stream_is_an_error_naming_the_last_warning():
    a = make()
    feed(a, {"message": "Warning", "type": "duration_limit_exceeded", "reason": "Duration limit exceeded",
             "duration_limit": 7200})
    assert a.error is None
    feed(a, EOT)
    assert isinstance(a.error, ProviderError) and "Duration limit exceeded" in str(a.error)


@pytest.mark.parametrize("frame", [b"\x00\x01", "not json", "[]", '{"type":"AddTranscript"}', '{"message":5}'])
def test_garbage_is_a_protocol_error(frame):
    a = make()
    feed(a, frame)
    assert isinstance(a.error, UpstreamProtocolError) and a.state is State.CLOSED


def test_second_recognition_started_and_keepalive_change_nothing():
    a = make()
    a.send_keepalive()
    feed(a, STARTED)
    assert sent(a) == [] and a.error is None
