"""GradiumAdapter: Gradium frames in, unified events out (no sockets).

Frames come from two places: hand-written messages shaped like Gradium's documented ones, and the
simulator's engine (``routeraudio.testing.gradium.GradiumEngine``) driven offline by ``Wire``, which
answers the adapter's flushes as the simulator does and runs its timers on a fake clock.
"""

from __future__ import annotations

import base64
import json

import pytest

from routeraudio.config import ListenParams
from routeraudio.errors import ProviderError, UpstreamProtocolError
from routeraudio.events import Raw, Transcript, TurnEnd, Word
from routeraudio.providers.base import State
from routeraudio.providers.gradium import (GradiumAdapter, gradium_language, longest_horizon_inactivity,
                                           segment_transcript, strip_punctuation)
from routeraudio.testing.base import Script, ScriptWord
from routeraudio.testing.gradium import GradiumEngine, parse_setup

BASE = "ws://127.0.0.1:9/api/speech/asr"


def make(open_: bool = True, **kw) -> GradiumAdapter:
    q = {"provider": "gradium", "encoding": "pcm_s16le", "sample_rate": "16000"}
    q.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in kw.items()})
    a = GradiumAdapter(ListenParams.from_query(q), "gr-secret", BASE)
    if open_:
        a.receive_open()
    return a


def sent(a: GradiumAdapter) -> list[dict]:
    return [json.loads(f) for f in a.data_to_send()]


def feed(a: GradiumAdapter, *frames) -> list:
    for f in frames:
        a.receive_frame(f if isinstance(f, (str, bytes)) else json.dumps(f))
    return a.events_received()


def text(t, start):
    return {"type": "text", "text": t, "start_s": start, "stream_id": 0}


def end_text(stop):
    return {"type": "end_text", "stop_s": stop, "stream_id": 0}


def step(total, p2, p05=None):
    p05 = p2 if p05 is None else p05
    return {"type": "step", "vad": [{"horizon_s": 0.5, "inactivity_prob": p05},
                                    {"horizon_s": 1.0, "inactivity_prob": p2},
                                    {"horizon_s": 2.0, "inactivity_prob": p2}],
            "step_idx": round(total / 0.08) - 1, "step_duration_s": 0.08, "total_duration_s": total}


def flushed(fid):
    return {"type": "flushed", "flush_id": fid}


def run_timer(a: GradiumAdapter, now: float) -> list:
    """What the driver does: fire the adapter's timer whenever its deadline has come, up to ``now``."""
    for _ in range(5):
        deadline = a.next_deadline()
        if deadline is None or deadline > now:
            break
        a.receive_timer(now)
    return a.events_received()


HELLO = [text("Hello,", 0.3), end_text(0.6), text("world.", 0.64), end_text(1.2)]


# -- request and setup -----------------------------------------------------------------------------
@pytest.mark.parametrize("encoding,rate,channels,fmt", [
    ("pcm_s16le", 16000, 1, "pcm_16000"),
    ("pcm_s16le", 24000, 1, "pcm_24000"),
    ("pcm_s16le", 44100, 2, "pcm_44100"),  # downmixed, not resampled
    ("pcm_s16le", 22050, 1, "pcm_22050"),
    ("pcm_mulaw", 8000, 1, "ulaw_8000"),
    ("pcm_mulaw", 16000, 1, "pcm_16000"),  # mu-law only at 8 kHz: decoded
    ("pcm_mulaw", 8000, 2, "pcm_8000"),
    ("ogg_opus", 48000, 2, "opus"),  # Ogg Opus goes up as it is
    ("webm", 48000, 1, "pcm_24000"),
    ("mp3", 44100, 1, "pcm_24000"),
])
def test_setup_per_encoding_plan(encoding, rate, channels, fmt):
    a = make(encoding=encoding, sample_rate=rate, channels=channels)
    req = a.connect_request()
    assert req.url == BASE and req.subprotocols == ()
    assert ("x-api-key", "gr-secret") in req.headers
    (setup,) = sent(a)
    assert setup == {"type": "setup", "model_name": "default", "input_format": fmt, "json_config": {"language": "en"}}
    assert parse_setup(setup)["input_format"] == fmt  # the simulator (Gradium's rules) accepts it


@pytest.mark.parametrize("language,expect", [("en", "en"), ("pt-BR", "pt"), ("FR", "fr"), ("de_AT", "de"),
                                             ("es", "es"), ("ja", None), ("english", None)])
def test_language_is_sent_only_when_gradium_takes_it(language, expect):
    assert gradium_language(language) == expect
    setup = make(language=language, model="stt-2").setup()
    assert setup["model_name"] == "stt-2"
    assert setup.get("json_config") == ({"language": expect} if expect else None)
    parse_setup(setup)


def test_default_url_and_registration():
    from routeraudio.providers import adapter_class

    assert adapter_class("gradium") is GradiumAdapter
    a = GradiumAdapter(ListenParams.from_query({"provider": "gradium", "encoding": "pcm_s16le",
                                                "sample_rate": "24000"}), "k")
    assert a.connect_request().url == "wss://api.gradium.ai/api/speech/asr"


def test_audio_finalize_and_close_frames():
    a = make()
    sent(a)
    a.send_audio(b"", 1.0)  # never an empty audio message
    a.send_audio(memoryview(b"\x01\x02\x03\x04"), 1.0)
    a.send_keepalive()  # Gradium has none
    a.send_finalize()
    assert sent(a) == [{"type": "audio", "audio": base64.b64encode(b"\x01\x02\x03\x04").decode()},
                       {"type": "flush", "flush_id": 1}]
    a.send_close()
    assert a.state is State.CLOSING and not a.done
    a.send_close()
    a.send_audio(b"\x00\x00", 2.0)
    a.send_finalize()
    assert sent(a) == [{"type": "flush", "flush_id": 2}, {"type": "end_of_stream"}]


def test_setup_goes_first_even_when_audio_was_queued_while_connecting():
    a = make(open_=False)
    a.send_audio(b"\x00\x00", 0.0)
    a.send_close()
    a.receive_open()
    assert a.state is State.CLOSING
    assert [m["type"] for m in sent(a)] == ["setup", "audio", "flush", "end_of_stream"]
    a.receive_open()
    assert sent(a) == []  # one setup only


# -- finals, turns, flush ------------------------------------------------------------------------------
def test_vad_endpoint_flushes_then_final_and_turn_end_after_the_trailing_wait():
    a = make()  # endpointing 500 ms: 7 steps of 80 ms
    sent(a)
    assert feed(a, step(0.16, 0.9), *HELLO[:1], step(0.8, 0.05), *HELLO[1:]) == []
    for i in range(6):
        feed(a, step(round(1.36 + 0.08 * i, 2), 0.8))  # the run starts at 1.28
    assert sent(a) == []
    feed(a, step(1.84, 0.8))  # 7th step: 560 ms >= 500 ms
    assert sent(a) == [{"type": "flush", "flush_id": 1}]
    feed(a, step(1.92, 0.8))
    assert sent(a) == []  # one flush per segment
    assert feed(a, flushed(1)) == []
    assert a.next_deadline() == 0.0  # an immediate timer: the adapter learns the clock
    assert run_timer(a, 50.0) == []
    assert a.next_deadline() == pytest.approx(50.1)
    ev = run_timer(a, 50.1)
    assert ev == [Transcript("gradium", "Hello, world.", 0.3, 1.2, False,
                             (Word("Hello,", 0.3, 0.6), Word("world.", 0.64, 1.2))),
                  TurnEnd("gradium", 1.2)]
    assert a.next_deadline() is None and a.error is None


def test_flushed_followed_by_trailing_text_is_part_of_the_final():
    a = make(partial_results=True)
    sent(a)
    feed(a, text("one", 0.1), end_text(0.4), step(1.2, 0.1))
    a.send_finalize()
    assert sent(a) == [{"type": "flush", "flush_id": 1}]
    ev = feed(a, text("two", 0.5), end_text(0.8), flushed(1), text("three", 0.9), end_text(1.1))
    assert [e.transcript for e in ev] == ["one two", "one two three"] and all(e.is_partial for e in ev)
    run_timer(a, 10.0)
    ev = run_timer(a, 10.1)
    assert ev == [Transcript("gradium", "one two three", 0.1, 1.1, False,
                             (Word("one", 0.1, 0.4), Word("two", 0.5, 0.8), Word("three", 0.9, 1.1)))]
    # finalize is not a turn end; the next words start a new segment
    ev = feed(a, text("four", 2.0))
    assert ev == [Transcript("gradium", "four", 2.0, 2.0, True, (Word("four", 2.0, 2.0),))]


def test_text_spoken_after_the_flushed_audio_starts_the_next_segment():
    a = make()
    sent(a)
    feed(a, text("one", 0.1), end_text(0.4), step(1.2, 0.1))
    a.send_finalize()
    sent(a)
    ev = feed(a, flushed(1), text("two", 0.5), end_text(0.8),  # trails: spoken before 1.2
              text("next", 1.3))  # spoken after what Gradium had processed: ends the wait at once
    assert ev == [Transcript("gradium", "one two", 0.1, 0.8, False, (Word("one", 0.1, 0.4), Word("two", 0.5, 0.8)))]
    assert a.next_deadline() is None
    a.send_close()
    ev = feed(a, end_text(1.6), flushed(2), end_text(1.6), {"type": "end_of_stream"})
    assert ev == [Transcript("gradium", "next", 1.3, 1.6, False, (Word("next", 1.3, 1.6),))]
    assert a.done and a.state is State.CLOSED and a.error is None


def test_vad_run_must_follow_the_last_word():
    a = make(endpointing=80)  # one step
    sent(a)
    feed(a, step(0.08, 0.9), step(0.16, 0.9))  # leading silence, nothing said
    feed(a, text("hi", 0.3))  # spoken inside the run that began at 0.0: no endpoint from it
    feed(a, step(0.24, 0.9))
    assert sent(a) == []
    feed(a, step(0.32, 0.1), step(0.40, 0.9))
    assert sent(a) == [{"type": "flush", "flush_id": 1}]


@pytest.mark.parametrize("endpointing,steps", [(1, 1), (80, 1), (81, 2), (500, 7), (1000, 13), (60000, 750)])
def test_endpointing_is_counted_in_whole_steps(endpointing, steps):
    a = make(endpointing=endpointing)
    assert a.endpointing_steps == steps
    sent(a)
    feed(a, text("hi", 0.0), end_text(0.1))
    for i in range(steps):
        assert sent(a) == []
        feed(a, step(round(0.16 + 0.08 * i, 2), 0.51))
    assert sent(a) == [{"type": "flush", "flush_id": 1}]


def test_endpointing_zero_never_ends_turns():
    a = make(endpointing=0)
    sent(a)
    feed(a, *HELLO, *[step(round(1.28 + 0.08 * i, 2), 0.97) for i in range(100)])
    assert sent(a) == []
    a.send_close()
    assert sent(a) == [{"type": "flush", "flush_id": 1}, {"type": "end_of_stream"}]
    ev = feed(a, flushed(1), {"type": "end_of_stream"})
    assert [type(e) for e in ev] == [Transcript] and a.done


def test_longest_horizon_is_used():
    assert longest_horizon_inactivity(step(0.4, 0.2, p05=0.9)) == (0.2, 0.4)
    assert longest_horizon_inactivity({**step(0.4, 0.2), "vad": []}) == (None, 0.4)
    a = make(endpointing=80)
    sent(a)
    feed(a, text("hi", 0.0), step(0.4, 0.2, p05=0.99))  # short horizon high, 2 s horizon low
    assert sent(a) == []


def test_close_delivers_everything_before_end_of_stream():
    a = make()
    sent(a)
    feed(a, text("one", 0.1))
    a.send_close()
    sent(a)
    ev = feed(a, end_text(0.4), flushed(1), text("two", 0.5), end_text(0.9), step(1.0, 0.2))
    assert ev == [] and not a.done
    ev = feed(a, {"type": "end_of_stream"})
    assert ev == [Transcript("gradium", "one two", 0.1, 0.9, False, (Word("one", 0.1, 0.4), Word("two", 0.5, 0.9)))]
    assert a.done and a.error is None
    a.receive_close(1000, "")
    assert a.error is None and feed(a, text("late", 3.0)) == []


@pytest.mark.parametrize("code", [1000, 1005])
def test_clean_close_after_close_stream_without_end_of_stream(code):
    a = make()
    feed(a, text("one", 0.1))
    a.send_close()
    a.receive_close(code, "")
    assert a.done and a.error is None
    assert a.events_received() == [Transcript("gradium", "one", 0.1, 0.1, False, (Word("one", 0.1, 0.1),))]


def test_turn_end_is_due_with_a_pending_vad_flush_at_the_end():
    a = make(endpointing=80)
    sent(a)
    feed(a, *HELLO, step(1.36, 0.9))
    assert sent(a) == [{"type": "flush", "flush_id": 1}]
    a.send_close()
    ev = feed(a, flushed(1), flushed(2), {"type": "end_of_stream"})
    assert [type(e) for e in ev] == [Transcript, TurnEnd] and ev[1].end_time == 1.2


def test_partials_replace_and_punctuation_can_be_stripped():
    a = make(partial_results=True, punctuate=False)
    ev = feed(a, text("¿Hola,", 0.1), text(",", 0.3), text("don't", 0.4), text("U.S.!", 0.6))
    assert [e.transcript for e in ev] == ["Hola", "Hola don't", "Hola don't U.S"]
    assert strip_punctuation("  «Quoted» text... ") == "Quoted text"
    assert feed(make(partial_results=True), text(" Hi! ", 0.1))[0].transcript == "Hi!"  # kept by default


def test_fragment_without_end_text_ends_where_the_next_starts():
    t = segment_transcript([["a", 0.1, None], ["b", 0.5, 0.7], ["c", 0.9, None]], "gradium", partial=False)
    assert [(w.start_time, w.end_time) for w in t.words] == [(0.1, 0.5), (0.5, 0.7), (0.9, 0.9)]
    assert (t.start_time, t.end_time) == (0.1, 0.9)


def test_unknown_flush_ids_and_informational_types_are_ignored():
    a = make()
    ev = feed(a, {"type": "ready", "request_id": "r-1", "model_name": "default", "sample_rate": 24000,
                  "frame_size": 1920, "delay_in_frames": 16, "text_stream_names": []},
              flushed(7), flushed("x"), {"type": "something_new", "x": 1}, {"type": "end_of_stream"})
    assert ev == [] and a.error is None and a.state is State.OPEN and a.request_id == "r-1"
    assert a.next_deadline() is None


def test_flush_ids_may_come_back_as_strings():
    a = make()
    feed(a, text("one", 0.1))
    a.send_finalize()
    feed(a, flushed("1"))
    assert a.next_deadline() == 0.0


# -- raw mode, errors ---------------------------------------------------------------------------------
def test_raw_mode_forwards_every_frame_and_still_ends():
    a = make(parse_json=False, partial_results=True)
    sent(a)
    frames = [json.dumps(f) for f in (*HELLO, step(1.3, 0.99), flushed(1), {"type": "new_kind"})]
    assert feed(a, *frames) == [Raw(f) for f in frames]
    a.send_close()
    assert sent(a) == [{"type": "end_of_stream"}]  # no flush of its own in raw mode
    eos = '{"type":"end_of_stream"}'
    assert feed(a, eos) == [Raw(eos)] and a.done and a.error is None


def test_raw_mode_error_frame_is_forwarded_then_fails():
    a = make(parse_json=False)
    err = '{"type":"error","message":"bad audio","code":1008}'
    assert feed(a, err) == [Raw(err)]
    assert isinstance(a.error, ProviderError) and a.state is State.CLOSED


@pytest.mark.parametrize("msg,code,message,hint", [
    ({"type": "error", "message": "API key is revoked or expired", "code": 1008}, 1008,
     "API key is revoked or expired", "check the API key"),
    ({"type": "error", "message": "boom", "code": 1011}, 1011, "boom", "retry"),
    ({"type": "error", "message": "odd", "code": 4321}, 4321, "odd", "reported an error"),
    ({"type": "error"}, None, None, "no message"),
    ({"type": "error", "message": 5, "code": [1]}, None, None, "reported an error"),
])
def test_error_frames(msg, code, message, hint):
    a = make()
    feed(a, text("one", 0.1), msg)
    assert a.state is State.CLOSED and a.done
    assert type(a.error) is ProviderError
    assert (a.error.provider_code, a.error.provider_message) == (code, message)
    assert hint in str(a.error)
    assert a.events_received() == []


@pytest.mark.parametrize("code,reason,hint", [
    (1008, "policy", "check the API key"), (1011, "", "retry"), (1000, "", "unexpectedly"),
    (1006, "", "unexpectedly")])
def test_unexpected_closes(code, reason, hint):
    a = make()
    a.receive_close(code, reason)
    assert isinstance(a.error, ProviderError) and a.error.provider_code == code
    assert a.error.provider_message == (reason or None) and hint in str(a.error)


def test_close_with_an_error_code_while_closing_is_an_error():
    a = make()
    a.send_close()
    a.receive_close(1011, "internal")
    assert a.error is not None and a.error.provider_code == 1011


@pytest.mark.parametrize("frame", [
    "not json", "", "[1, 2]", "null", '"text"', '{"no_type": 1}', '{"type": 5}', b"\x00binary", b"",
    json.dumps({"type": "text", "text": "x"}),
    json.dumps({"type": "text", "text": 5, "start_s": 0.1}),
    json.dumps({"type": "text", "text": "x", "start_s": "0.1"}),
    json.dumps({"type": "text", "text": "x", "start_s": True}),
    json.dumps({"type": "end_text"}),
    json.dumps({"type": "step", "vad": {}, "step_idx": 0, "step_duration_s": 0.08, "total_duration_s": 0.08}),
    json.dumps({"type": "step", "vad": [1], "step_idx": 0, "step_duration_s": 0.08, "total_duration_s": 0.08}),
    json.dumps({"type": "step", "vad": [{"horizon_s": 2.0}], "step_idx": 0, "step_duration_s": 0.08,
                "total_duration_s": 0.08}),
    json.dumps({"type": "step", "vad": [], "step_idx": 0, "step_duration_s": 0.08}),
    json.dumps({"type": "flushed"}),
    json.dumps({"type": "flushed", "flush_id": [1]}),
])
def test_garbage_is_a_protocol_error_never_an_exception(frame):
    a = make(partial_results=True)
    a.receive_frame(frame)
    assert isinstance(a.error, UpstreamProtocolError)
    assert a.state is State.CLOSED and a.done
    assert a.events_received() == []
    a.receive_frame(json.dumps(text("x", 0.1)))  # after CLOSED: ignored
    a.receive_close(1000, "")
    assert a.events_received() == []


# -- replaying simulated sessions -----------------------------------------------------------------
SCRIPT = Script.from_text("Hello, how are you today? I am calling about my order. It was supposed to "
                          "arrive on Monday.")


class Wire:
    """The adapter against the simulator's engine, offline: audio time advances in ``chunk_s``
    steps, the wall clock with it; flushes are answered as ``GradiumSimulator`` answers them."""

    def __init__(self, a: GradiumAdapter, script: Script = SCRIPT, trailing_words: int = 1) -> None:
        self.a = a
        setup = parse_setup(sent(a)[0])
        self.engine = GradiumEngine(script, setup["delay_in_frames"])
        self.trailing = trailing_words
        self.events: list = []
        self.now = 100.0
        self.flushes: list[int] = []

    def _deliver(self, msgs) -> None:
        for m in msgs:
            self.a.receive_frame(json.dumps(m))
            self._answer()

    def _answer(self) -> None:
        for frame in self.a.data_to_send():
            msg = json.loads(frame)
            if msg["type"] == "flush":
                self.flushes.append(msg["flush_id"])
                groups = self.engine.flush()
                keep = min(len(groups), self.trailing)
                self._deliver([m for g in groups[:len(groups) - keep] for m in g])
                self._deliver([{"type": "flushed", "flush_id": msg["flush_id"]}])
                self._deliver([m for g in groups[len(groups) - keep:] for m in g])
            elif msg["type"] == "end_of_stream":
                self._deliver([m for g in self.engine.flush() for m in g] + [{"type": "end_of_stream"}])
        self.events += self.a.events_received()

    def run(self, seconds: float, chunk_s: float = 0.04, finalize_at: float | None = None) -> list:
        t = 0.0
        while t < seconds - 1e-9:
            t = round(min(seconds, t + chunk_s), 6)
            self.now += chunk_s
            self._deliver(self.engine.advance(t))
            self.events += run_timer(self.a, self.now)
            if finalize_at is not None and abs(t - finalize_at) < 1e-6:
                self.a.send_finalize()
                self._answer()
        self.a.send_close()
        self._answer()
        return self.events


@pytest.mark.parametrize("partials", [False, True])
@pytest.mark.parametrize("trailing", [0, 1, 2])
def test_simulated_session(partials, trailing):
    a = make(partial_results=partials)
    ev = Wire(a, trailing_words=trailing).run(12.0)
    assert a.done and a.error is None
    finals = [e for e in ev if isinstance(e, Transcript) and not e.is_partial]
    assert " ".join(f.transcript for f in finals) == " ".join(w.text for w in SCRIPT)
    assert [f.transcript for f in finals] == ["Hello, how are you today?", "I am calling about my order.",
                                              "It was supposed to arrive on Monday."]
    for f1, f2 in zip(finals, finals[1:]):
        assert f1.end_time <= f2.start_time  # non-overlapping segments
    assert bool([e for e in ev if isinstance(e, Transcript) and e.is_partial]) == partials
    turn_ends = [e for e in ev if isinstance(e, TurnEnd)]
    assert len(turn_ends) == 3  # one per sentence: the VAD endpoint of each
    for i, e in enumerate(ev):
        if isinstance(e, TurnEnd):
            before = [x for x in ev[:i] if isinstance(x, Transcript) and not x.is_partial]
            assert before[-1].end_time == e.end_time


def test_script_word_times_survive_translation():
    a = make()
    ev = Wire(a).run(12.0)
    words = [w for e in ev if isinstance(e, Transcript) for w in e.words]
    assert [(w.text, w.start_time, w.end_time) for w in words] == [(s.text, s.start, s.end) for s in SCRIPT]


def test_simulated_session_without_endpointing_has_no_turn_ends():
    a = make(endpointing=0)
    ev = Wire(a).run(12.0)
    assert not any(isinstance(e, TurnEnd) for e in ev)
    assert [e.transcript for e in ev] == [" ".join(w.text for w in SCRIPT)]  # one final, at the end


def test_finalize_mid_sentence_flushes_the_words_heard_so_far():
    a = make()
    ev = Wire(a).run(12.0, finalize_at=1.6)  # "are" ends at 1.52
    assert isinstance(ev[0], Transcript) and ev[0].transcript == "Hello, how are"
    assert not isinstance(ev[1], TurnEnd)
    finals = [e.transcript for e in ev if isinstance(e, Transcript)]
    assert " ".join(finals) == " ".join(w.text for w in SCRIPT)


def test_unpunctuated_script_ends_turns_on_longer_silence():
    script = Script([ScriptWord("one", 0.1, 0.4), ScriptWord("two", 0.5, 0.8), ScriptWord("three", 2.5, 2.8)])
    ev = Wire(make(), script).run(5.0)
    assert [(type(e).__name__, getattr(e, "transcript", None)) for e in ev] == [
        ("Transcript", "one two"), ("TurnEnd", None), ("Transcript", "three"), ("TurnEnd", None)]


def test_turns_are_cut_by_audio_time_whatever_the_arrival_timing():
    """All audio sent and the stream closed before Gradium answers anything (a client far faster than
    real time): no VAD flush goes out any more, yet the turns come out as when paced."""
    a = make(partial_results=True)
    sent(a)
    a.send_close()
    assert sent(a) == [{"type": "flush", "flush_id": 1}, {"type": "end_of_stream"}]
    engine = GradiumEngine(SCRIPT, parse_setup(make().setup())["delay_in_frames"])
    msgs = engine.advance(12.0) + [m for g in engine.flush() for m in g]
    ev = feed(a, *msgs, flushed(1), {"type": "end_of_stream"})
    finals = [e for e in ev if isinstance(e, Transcript) and not e.is_partial]
    assert [f.transcript for f in finals] == ["Hello, how are you today?", "I am calling about my order.",
                                              "It was supposed to arrive on Monday."]
    assert [type(e) for e in ev if not (isinstance(e, Transcript) and e.is_partial)] == [Transcript, TurnEnd] * 3
    assert a.done and a.error is None


def test_a_late_vad_flush_still_splits_turns_by_audio_time():
    """The VAD flush reaches Gradium late, after the next turn's words were heard: those words come
    before ``flushed`` but start after the turn end, so they open the next segment."""
    a = make()
    sent(a)
    feed(a, step(0.08, 0.1), text("one", 0.1), end_text(0.4), step(0.48, 0.1))
    feed(a, *[step(round(0.56 + 0.08 * i, 2), 0.9) for i in range(7)])  # run from 0.48, 7 steps
    assert sent(a) == [{"type": "flush", "flush_id": 1}]
    ev = feed(a, step(1.2, 0.1), text("two", 1.1), end_text(1.3), flushed(1))
    assert ev == [Transcript("gradium", "one", 0.1, 0.4, False, (Word("one", 0.1, 0.4),)), TurnEnd("gradium", 0.4)]
    run_timer(a, 5.0)
    assert run_timer(a, 5.1) == []  # "two" waits for its own turn end
    a.send_close()
    ev = feed(a, flushed(2), {"type": "end_of_stream"})
    assert [e.transcript for e in ev] == ["two"]
